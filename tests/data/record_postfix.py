#!/usr/bin/env python3
"""Record a real Postfix smtpd's replies to a fixed list of SMTP probes.

Stdlib only.  Each probe is a fresh TCP connection: the banner is read first,
then every step is sent and the reply read back exactly as received.

Output: a JSON list of objects
    {"name": ..., "port_variant": "A"|"B"|"C"|"D"|"R"|"E",
     "exchange": [[sent, reply], ...],      # sent/reply decoded latin-1
     "times": [t, ...],                      # seconds since first send, one per
                                             # exchange entry (reply complete; for
                                             # drained steps: last byte received)
     "server_closed": bool, "closed_after": index-or-null,
     "notes": [...]}
The first exchange entry is ["", banner] (nothing sent).  Strings are stored
verbatim (CRLF, NUL, 8-bit bytes included), JSON-escaped with ensure_ascii.

Variants (ports are configurable on the command line):
  A  stock Debian-like smtpd                        (default 127.0.0.1:10025)
  B  as A plus smtpd_helo_required=yes              (default 127.0.0.1:10026)
  C  as A plus Dovecot SASL (PLAIN LOGIN CRAM-MD5)  (default 127.0.0.1:10027)
     test credentials testuser / testpass
  D  as A plus message_size_limit = 1000            (default 127.0.0.1:10028)
     (in master.cf: ``-o message_size_limit=1000`` on its smtpd line)
  R  as A, but the client may relay (mynetworks = 127.0.0.0/8): the
     persona's reference, answering as the honeypot answers a relay
     attempt                                        (default 127.0.0.1:10029)
  E  as R plus Dovecot SASL set up as Postfix's SASL_README shows it
     (auth_mechanisms = plain login): the persona's AUTH
                                                    (default 127.0.0.1:10030)
tests/data/postfix_instance.sh starts them all (and Dovecot) from Debian's
main.cf: myhostname = mail.example.com, mydestination = $myhostname,
localhost.localdomain, , localhost (Debian's), recipient_delimiter = +,
aliases with only postmaster: root, mynetworks = a range that does not hold
the client, inet_interfaces = loopback-only, smtpd_tls_cert_file/key_file
set with smtpd_tls_security_level = may, and default_transport =
relay_transport = local_transport = virtual_transport = discard:.  (Probes
recorded before R and E ran on an A whose mydestination was
mail.example.com, localhost; none of them names localhost.localdomain.)
Run it, then this with --only NAME,... to record a few probes; the file
written holds only those, to be appended to postfix_replies.json.
Probes that fill the queue file system (FILL steps) run only with --fill
DIR, DIR a directory on that file system (queue_directory on a small tmpfs:
``mount -t tmpfs -o size=64m tmpfs QUEUE_DIR`` before ``postfix start``);
the filler file is removed when the probe ends.
"""
import argparse
import base64
import hashlib
import hmac
import json
import os
import socket
import ssl
import time

REPLY_TIMEOUT = 8.0   # max wait for one complete reply (error sleep is 1s,
                      # dovecot auth_failure_delay is 2s)
DRAIN_IDLE = 3.0      # "drain" mode: stop after this much silence
BANNER_TIMEOUT = 8.0

USER, PASSWORD = "testuser", "testpass"


def b64(s):
    return base64.b64encode(s.encode("latin-1")).decode("ascii")


PLAIN_OK = b64("\0%s\0%s" % (USER, PASSWORD))
PLAIN_BAD = b64("\0%s\0%s" % (USER, "wrongpass"))

# ---------------------------------------------------------------------------
# Step constructors
#   L(text)           send text + CRLF, read one complete reply
#   R(bytes, n)       send raw bytes, read n complete replies (n=None: drain
#                     until DRAIN_IDLE seconds of silence or EOF; n=0: no read)
#   CRAM()            answer the last 334 CRAM-MD5 challenge, read reply
#   TLS()             do a TLS handshake on the socket (after a 220 to STARTTLS)
#   DRAIN()           send nothing, drain whatever arrives
#   SLEEP(s)          send nothing, read nothing, for s seconds
#   SHUT()            shutdown(SHUT_WR), then read until the server closes
#   FILL()            fill the queue file system (--fill) to its last byte
# ---------------------------------------------------------------------------


def L(text):
    if isinstance(text, str):
        text = text.encode("latin-1")
    return ("raw", text + b"\r\n", 1)


def R(data, n=1):
    if isinstance(data, str):
        data = data.encode("latin-1")
    return ("raw", data, n)


def CRAM():
    return ("cram",)


def TLS():
    return ("tls",)


def DRAIN():
    return ("raw", b"", None)


def SLEEP(seconds):
    return ("sleep", seconds)


def SHUT():
    return ("shut",)


def FILL():
    return ("fill",)


E = L("EHLO client.example.org")
Q = L("QUIT")
M = L("MAIL FROM:<a@b.example>")
RC_OK = L("RCPT TO:<postmaster@mail.example.com>")

MSG3 = (b"Subject: test\r\n"
        b"\r\n"
        b"Hello world.\r\n"
        b".\r\n")


def nmap_relay_steps(domain, srvname, ip, frm="antispam", to="relaytest"):
    """The 16 MAIL FROM/RCPT TO pairs from nmap's smtp-open-relay.nse,
    in the order the script sends them (EHLO domain; per test RSET, MAIL,
    RCPT; final QUIT)."""
    tests = [
        ("", "%s@%s" % (to, domain)),
        ("%s@%s" % (frm, domain), "%s@%s" % (to, domain)),
        ("%s@%s" % (frm, srvname), "%s@%s" % (to, domain)),
        ("%s@[%s]" % (frm, ip), "%s@%s" % (to, domain)),
        ("%s@[%s]" % (frm, ip), "%s%%%s@[%s]" % (to, domain, ip)),
        ("%s@[%s]" % (frm, ip), "%s%%%s@%s" % (to, domain, srvname)),
        ("%s@[%s]" % (frm, ip), "\"%s@%s\"" % (to, domain)),
        ("%s@[%s]" % (frm, ip), "\"%s%%%s\"" % (to, domain)),
        ("%s@[%s]" % (frm, ip), "%s@%s@[%s]" % (to, domain, ip)),
        ("%s@[%s]" % (frm, ip), "\"%s@%s\"@[%s]" % (to, domain, ip)),
        ("%s@[%s]" % (frm, ip), "%s@%s@%s" % (to, domain, srvname)),
        ("%s@[%s]" % (frm, ip), "@[%s]:%s@%s" % (ip, to, domain)),
        ("%s@[%s]" % (frm, ip), "@%s:%s@%s" % (srvname, to, domain)),
        ("%s@[%s]" % (frm, ip), "%s!%s" % (domain, to)),
        ("%s@[%s]" % (frm, ip), "%s!%s@[%s]" % (domain, to, ip)),
        ("%s@[%s]" % (frm, ip), "%s!%s@%s" % (domain, to, srvname)),
    ]
    steps = [L("EHLO " + domain)]
    for f, t in tests:
        steps += [L("RSET"), L("MAIL FROM:<%s>" % f), L("RCPT TO:<%s>" % t)]
    steps.append(Q)
    return steps


def probes():
    P = []

    def add(name, variant, steps, note=None):
        P.append({"name": name, "port_variant": variant, "steps": steps,
                  "note": note})

    # --- greeting / HELO / EHLO -------------------------------------------
    add("banner_only", "A", [])
    add("ehlo", "A", [E, Q])
    add("ehlo_no_arg", "A", [L("EHLO"), Q])
    add("helo", "A", [L("HELO client.example.org"), Q])
    add("helo_no_arg", "A", [L("HELO"), Q])
    add("ehlo_twice", "A", [E, E, Q])
    add("ehlo_lowercase", "A", [L("ehlo x"), Q])
    add("ehlo_variant_B", "B", [E, Q])
    add("ehlo_variant_C", "C", [E, Q])

    # --- full transaction --------------------------------------------------
    add("full_session", "A", [
        E, M,
        L("RCPT TO:<c@d.example>"),
        RC_OK,
        L("RCPT TO:<nosuchuser@mail.example.com>"),
        L("RCPT TO:<postmaster>"),
        L("RCPT TO:<root@localhost>"),
        L("DATA"),
        R(MSG3, 1),
        L("RSET"), L("NOOP"), Q])
    add("helo_session", "A", [
        L("HELO client.example.org"), M, RC_OK, L("DATA"), R(MSG3, 1), Q],
        "same as full_session but HELO instead of EHLO (no ESMTP)")

    # --- sequencing errors ---------------------------------------------------
    add("mail_before_helo_A", "A", [M, RC_OK, Q])
    add("mail_before_helo_B", "B", [M, RC_OK, Q])
    add("rcpt_before_mail", "A", [E, RC_OK, Q])
    add("data_before_mail", "A", [E, L("DATA"), Q])
    add("data_after_mail_no_rcpt", "A", [E, M, L("DATA"), Q])
    add("data_after_rejected_rcpt_only", "A",
        [E, M, L("RCPT TO:<c@d.example>"), L("DATA"), Q])
    add("nested_mail", "A", [E, M, M, Q])

    # --- MAIL FROM syntax / parameters (after EHLO) -----------------------
    mails = [
        ("mail_from_no_colon", "MAIL FROM x@y"),
        ("mail_from_null", "MAIL FROM:<>"),
        ("mail_size_too_big", "MAIL FROM:<a@b> SIZE=99999999999"),
        ("mail_size_abc", "MAIL FROM:<a@b> SIZE=abc"),
        ("mail_body_8bitmime", "MAIL FROM:<a@b> BODY=8BITMIME"),
        ("mail_body_foo", "MAIL FROM:<a@b> BODY=FOO"),
        ("mail_smtputf8", "MAIL FROM:<a@b> SMTPUTF8"),
        ("mail_foo_bar", "MAIL FROM:<a@b> FOO=BAR"),
        ("mail_auth_empty_A", "MAIL FROM:<a@b> AUTH=<>"),
        ("mail_antispam_ip_literal", "MAIL FROM:<antispam@[127.0.0.1]>"),
        ("mail_from_space", "MAIL FROM: <a@b>"),
        ("mail_from_no_brackets", "MAIL FROM:a@b"),
        ("mail_from_space_in_addr", "MAIL FROM:<a b>"),
        ("mail_from_empty", "MAIL FROM:"),
        ("mail_bare", "MAIL"),
    ]
    for name, line in mails:
        add(name, "A", [E, L(line), Q])
    add("mail_size_too_big_helo", "A",
        [L("HELO client.example.org"), L("MAIL FROM:<a@b> SIZE=99999999999"),
         Q], "ESMTP parameter after HELO (not EHLO)")

    # --- RCPT syntax --------------------------------------------------------
    add("rcpt_no_brackets", "A", [E, M, L("RCPT TO:postmaster@mail.example.com"), Q])
    add("rcpt_no_colon", "A", [E, M, L("RCPT TO postmaster@mail.example.com"), Q])
    add("rcpt_bare", "A", [E, M, L("RCPT"), Q])

    # --- VRFY / EXPN / HELP / ETRN / unknown ---------------------------------
    add("vrfy_postmaster", "A", [E, L("VRFY postmaster"), Q])
    add("vrfy_unknown_user", "A", [E, L("VRFY nosuchuser"), Q])
    add("vrfy_outside", "A", [E, L("VRFY c@d.example"), Q])
    add("vrfy_no_arg", "A", [E, L("VRFY"), Q])
    add("vrfy_before_helo", "A", [L("VRFY root"), Q])
    add("expn_postmaster", "A", [E, L("EXPN postmaster"), Q])
    add("help", "A", [E, L("HELP"), Q])
    add("etrn_arg", "A", [E, L("ETRN example.com"), Q])
    add("etrn_no_arg", "A", [E, L("ETRN"), Q])
    add("etrn_before_helo", "A", [L("ETRN example.com"), Q])
    add("unknown_foo", "A", [E, L("FOO"), Q])
    add("unknown_foo_before_helo", "A", [L("FOO"), Q])
    add("rset_noop_with_args", "A", [L("RSET x"), L("NOOP x"), L("QUIT x")])
    add("empty_line", "A", [L(""), Q])
    add("whitespace_only_line", "A", [L("   "), Q])

    # --- smtpd_forbidden_commands (CONNECT GET POST regexp:{{/^[^A-Z]/ Bogus}})
    # and header-like commands -> 221 + disconnect
    add("http_get", "A", [R(b"GET / HTTP/1.0\r\n\r\n", None)])
    add("http_post_after_ehlo", "A",
        [E, R(b"POST / HTTP/1.1\r\nHost: x\r\n\r\n", None)])
    add("http_connect", "A", [R(b"CONNECT 1.2.3.4:25 HTTP/1.0\r\n\r\n", None)])
    add("header_as_command", "A", [E, L("Subject: test"), Q])
    add("from_header_as_command", "A", [E, L("From: a@b.example"), Q])
    add("dot_as_command", "A", [E, L("."), Q])
    add("digit_command", "A", [E, L("123"), Q])
    add("tls_clienthello_on_plain_port", "A",
        [R(b"\x16\x03\x01\x00\x05\x01\x00\x00\x01\x00", None)],
        "first bytes of a TLS record sent without STARTTLS (no newline)")

    # --- AUTH without SASL ----------------------------------------------------
    add("auth_bare_A", "A", [E, L("AUTH"), Q])
    add("auth_plain_A", "A", [E, L("AUTH PLAIN " + PLAIN_OK), Q])
    add("auth_login_A_before_ehlo", "A", [L("AUTH LOGIN"), Q])

    # --- AUTH with SASL (variant C) ---------------------------------------
    add("auth_bare_C", "C", [E, L("AUTH"), Q])
    add("auth_plain_ir_ok", "C", [E, L("AUTH PLAIN " + PLAIN_OK), Q])
    add("auth_plain_ir_badpass", "C", [E, L("AUTH PLAIN " + PLAIN_BAD), Q])
    add("auth_plain_no_ir_ok", "C", [E, L("AUTH PLAIN"), L(PLAIN_OK), Q])
    add("auth_plain_lowercase", "C", [E, L("auth plain " + PLAIN_OK), Q])
    add("auth_plain_ir_equals", "C", [E, L("AUTH PLAIN ="), Q],
        "RFC 4954 '=' means empty initial response")
    add("auth_login_ok", "C", [E, L("AUTH LOGIN"), L(b64(USER)),
                               L(b64(PASSWORD)), Q])
    add("auth_login_badpass", "C", [E, L("AUTH LOGIN"), L(b64(USER)),
                                    L(b64("wrongpass")), Q])
    add("auth_login_ir_ok", "C", [E, L("AUTH LOGIN " + b64(USER)),
                                  L(b64(PASSWORD)), Q])
    add("auth_cram_md5_ok", "C", [E, L("AUTH CRAM-MD5"), CRAM(), Q],
        "challenge is random per session")
    add("auth_cancel_login", "C", [E, L("AUTH LOGIN"), L("*"), Q])
    add("auth_cancel_plain", "C", [E, L("AUTH PLAIN"), L("*"), Q])
    add("auth_bad_base64_ir", "C", [E, L("AUTH PLAIN !!!notbase64!!!"), Q])
    add("auth_bad_base64_response", "C", [E, L("AUTH LOGIN"), L("%%%%"), Q])
    add("auth_unknown_mech", "C", [E, L("AUTH FOO"), Q])
    add("auth_twice", "C", [E, L("AUTH PLAIN " + PLAIN_OK),
                            L("AUTH PLAIN " + PLAIN_OK), Q])
    add("auth_before_ehlo", "C", [L("AUTH PLAIN " + PLAIN_OK), Q])
    add("auth_after_helo", "C", [L("HELO client.example.org"),
                                 L("AUTH PLAIN " + PLAIN_OK), Q])
    add("auth_in_mail_transaction", "C", [E, M, L("AUTH PLAIN " + PLAIN_OK), Q])
    add("auth_then_relay", "C", [E, L("AUTH PLAIN " + PLAIN_OK), M,
                                 L("RCPT TO:<c@d.example>"), L("RSET"), Q],
        "relay permitted after auth (transport is discard; no DATA sent)")
    add("mail_auth_empty_C", "C", [E, L("MAIL FROM:<a@b> AUTH=<>"), Q])
    add("unauth_relay_C", "C", [E, M, L("RCPT TO:<c@d.example>"), Q])

    # --- STARTTLS --------------------------------------------------------------
    add("starttls_with_arg", "A", [E, L("STARTTLS foo"), Q])
    add("starttls_before_ehlo", "A", [L("STARTTLS"), TLS(), E, Q])
    add("starttls_then_plaintext_quit", "A", [E, L("STARTTLS"), Q],
        "client never does the handshake; plaintext QUIT after the 220")
    add("starttls_ok_then_ehlo", "A", [E, L("STARTTLS"), TLS(), E, L("STARTTLS"), Q],
        "after TLS handshake: EHLO list and second STARTTLS")
    add("starttls_pipelined_plaintext", "A",
        [E, R(b"STARTTLS\r\nNOOP\r\n", None), TLS(), DRAIN(), E, Q],
        "'STARTTLS\\r\\nNOOP\\r\\n' in one write; drain before handshake; "
        "after handshake drain (would show a reply to the injected NOOP), "
        "then EHLO over TLS")
    add("starttls_ok_C", "C", [E, L("STARTTLS"), TLS(), E, Q],
        "variant C: EHLO keyword list after TLS")

    # --- odd input ---------------------------------------------------------------
    add("long_line_5000", "A",
        [R(b"NOOP " + b"A" * 4995 + b"\r\n", None), L("NOOP"), Q],
        "5000-byte command line (line_length_limit=2048)")
    add("long_line_5000_unknown", "A",
        [R(b"FOO " + b"A" * 4996 + b"\r\n", None), L("NOOP"), Q])
    add("long_line_5000_helo", "A",
        [R(b"HELO " + b"a" * 4995 + b"\r\n", None), L("NOOP"), Q])
    add("nul_byte", "A", [R(b"NOOP\x00x\r\n", None), L("NOOP"), Q])
    add("nul_byte_helo", "A", [R(b"HELO a\x00b\r\n", None), L("NOOP"), Q])
    add("eight_bit_helo", "A", [R(b"HELO \xff\xfe\r\n", None), L("NOOP"), Q])
    add("eight_bit_ehlo", "A", [R(b"EHLO \xff\xfe\r\n", None), L("NOOP"), Q])
    add("bare_lf_command", "A", [R(b"NOOP\n", None), R(b"EHLO x\n", None), Q])
    add("error_limit_25_unknown", "A", [L("FOO")] * 25 + [Q],
        "soft limit 10 (1s sleep), hard limit 20 (421 + close)")
    add("error_limit_20_then_wait", "A", [L("FOO")] * 20 + [DRAIN()],
        "after the 20th error send nothing: is the 421 sent unsolicited?")
    add("error_sleep_applies_to_250", "A",
        [L("FOO")] * 10 + [L("NOOP"), L("HELO client.example.org"), L("NOOP"), Q],
        "after 10 errors, are successful replies delayed too?")
    add("error_sleep_after_delivery", "A",
        [L("FOO")] * 10 + [M, RC_OK, L("DATA"), R(MSG3, 1), L("NOOP"), L("FOO"), Q],
        "does a delivered message reset the error counter / sleep?")

    # --- control bytes in fields, SQL, many recipients (tests/test_hostile.py) ---
    add("nul_then_8bit", "A", [R(b"NOOP\x00\xff\r\n", 1), L("NOOP"), Q],
        "is the UTF-8 check applied past the NUL?")
    add("ehlo_control_chars", "A", [R(b"EHLO a\x1b[31m\rb\x00c\r\n", 1), Q])
    add("mail_control_chars", "A",
        [E, R(b"MAIL FROM:<a\x1b\x01\x0b\x7fb@b.example>\r\n", 1), Q])
    add("mail_tab_in_addr", "A", [E, R(b"MAIL FROM:<a\tb@b.example>\r\n", 1), Q])
    add("mail_cr_in_addr", "A", [E, R(b"MAIL FROM:<a\rb@b.example>\r\n", 1), Q])
    add("mail_nul_tail", "A", [E, R(b"MAIL FROM:<a@b.example>\x00\x1b[31m\r\n", 1), Q])
    add("rcpt_nul_then_8bit", "A",
        [E, M, R(b"RCPT TO:<postmaster@mail.example.com>\x00\xff\r\n", 1), Q])
    add("sql_in_helo_and_mail", "A",
        [L("EHLO x'); DROP TABLE honeypot_emails;--"),
         L("MAIL FROM:<x'OR'1'='1@b.example>"), Q])
    add("tab_separators", "A",
        [E, L("MAIL\tFROM:\t<a@b.example>"), L("RCPT\tTO:<postmaster@mail.example.com>"),
         L("RSET\tx"), L("VRFY\tpostmaster"), L("HELO\tclient.example.org"), Q])
    add("data_with_arg", "A", [E, M, RC_OK, L("DATA x"), Q])
    add("mail_size_superscript", "A", [E, R("MAIL FROM:<a@b> SIZE=\u00b2\r\n".encode(), 1), Q],
        "a Unicode digit, sent as UTF-8")
    add("mail_size_overflow", "A", [E, L("MAIL FROM:<a@b> SIZE=9223372036854775808"), Q])
    add("bdat_superscript", "A", [E, M, RC_OK, R("BDAT \u00b2\r\n".encode(), None), L("NOOP"), Q])
    add("bdat_leading_zeros", "A",
        [E, M, RC_OK, R(b"BDAT 00000000000000000000007 LAST\r\nhello\r\n", 1), Q])
    add("bdat_overflow", "A", [E, M, RC_OK, R(b"BDAT 99999999999999999999999\r\n", None),
                               L("NOOP"), Q])
    add("dsn_mail_params", "A", [E] + [L("MAIL FROM:<a@b> " + params) for params in (
        "RET=FULL RET=HDRS", "RET=xx", "RET", "RET=", "ENVID=", "ENVID=a+zz",
        "ENVID=\x01", "ENVID=a ENVID=b", "ret=hdrs ENVID=a+2b=c")] + [Q])
    rcpt = "RCPT TO:<postmaster@mail.example.com> "
    add("dsn_notify", "A", [E, M] + [L(rcpt + params) for params in (
        "NOTIFY=NEVER,SUCCESS", "NOTIFY=FOO", "NOTIFY", "NOTIFY=",
        "NOTIFY=SUCCESS NOTIFY=DELAY", "NOTIFY=never", "NOTIFY=,delay,SUCCESS,")] + [Q])
    add("dsn_orcpt", "A", [E, M] + [L(rcpt + params) for params in (
        "ORCPT=junk", "ORCPT=;x", "ORCPT=rfc822;x+zz", "ORCPT=rfc822;a ORCPT=rfc822;b",
        "ORCPT", "ORCPT=rfc822;", "orcpt=foo;\x01+2B")] + [Q])
    add("etrn_arguments", "A", [E] + [L("ETRN " + arg) for arg in (
        "@example.com", "#x", "a b", "a..b", "1.2.3.4", "[1.2.3.4]", "[IPv6:::1]",
        "[junk]", "\x1b", "a_b-c.1")] + [Q])
    add("vrfy_words", "A", [E, L("VRFY a b"), L("VRFY <a> x"), L("VRFY\tpostmaster"), Q])
    add("bdat_line_ends", "A",
        [E, M, RC_OK, R(b"BDAT 5 LAST\r\nhello", 1), M, RC_OK, R(b"BDAT 6 LAST\r\nhello\r", 1),
         M, RC_OK, R(b"BDAT 3\r\nab\r", 1), R(b"BDAT 4 LAST\r\n\ncd\n", 1), Q],
        "the size in the queued reply, for messages not in CRLF lines")
    add("rcpt_1500", "A",
        [E, M, R(b"".join(b"RCPT TO:<postmaster+%d@mail.example.com>\r\n" % i
                          for i in range(1500)), 1500),
         L("DATA"), R(MSG3, 1), Q],
        "smtpd_recipient_limit and smtpd_recipient_overshoot_limit are 1000")

    # --- BDAT / CHUNKING ---------------------------------------------------------
    add("bdat_10_last", "A", [E, M, RC_OK, R(b"BDAT 10 LAST\r\nHi there\r\n", 1), Q])
    add("bdat_5_then_5_last", "A",
        [E, M, RC_OK, R(b"BDAT 5\r\nHi th", 1), R(b"BDAT 5 LAST\r\nere\r\n", 1), Q])
    add("bdat_before_mail", "A", [E, R(b"BDAT 10 LAST\r\nHi there\r\n", None),
                                  L("NOOP"), Q])
    add("bdat_abc", "A", [E, M, RC_OK, R(b"BDAT abc\r\n", None), L("NOOP"), Q])
    add("bdat_0_last", "A", [E, M, RC_OK, L("BDAT 0 LAST"), Q])
    add("bdat_0_last_after_chunk", "A",
        [E, M, RC_OK, R(b"BDAT 10\r\nHi there\r\n", 1), L("BDAT 0 LAST"), Q])
    add("data_after_bdat_chunk", "A",
        [E, M, RC_OK, R(b"BDAT 5\r\nHi th", 1), L("DATA"), Q])
    add("bdat_no_arg", "A", [E, M, RC_OK, R(b"BDAT\r\n", None), L("NOOP"), Q])
    add("bdat_rset_between_chunks", "A",
        [E, M, RC_OK, R(b"BDAT 5\r\nHello", 1), L("RSET"), M, RC_OK,
         R(b"BDAT 7 LAST\r\nWorld\r\n", 1), Q],
        "RSET between two chunks, then a new transaction")
    add("bdat_after_helo", "A",
        [L("HELO client.example.org"), M, RC_OK,
         R(b"BDAT 10 LAST\r\nHi there\r\n", None), Q])

    # --- size limits at their edges (D: message_size_limit = 1000) -------------
    line = b"x" * 98 + b"\r\n"
    add("mail_size_at_limit", "A", [E, L("MAIL FROM:<a@b> SIZE=10240000"), Q])
    add("mail_size_edges_D", "D", [E, L("MAIL FROM:<a@b> SIZE=1000"), L("RSET"),
                                   L("MAIL FROM:<a@b> SIZE=1001"), Q])
    add("data_at_limit_D", "D", [E, M, RC_OK, L("DATA"), R(line * 10 + b".\r\n", 1), Q],
        "a message of exactly message_size_limit bytes")
    add("data_over_limit_D", "D",
        [E, M, RC_OK, L("DATA"), R(line * 9 + b"y" * 99 + b"\r\n.\r\n", 1), L("NOOP"), M, Q],
        "one byte over the limit")
    add("bdat_at_limit_D", "D", [E, M, RC_OK, R(b"BDAT 1000 LAST\r\n" + line * 10, 1), Q])
    add("bdat_partial_line_at_limit_D", "D",
        [E, M, RC_OK, R(b"BDAT 1000 LAST\r\n" + b"z" * 1000, 1), L("NOOP"), Q],
        "1000 bytes without a line end: Postfix counts the last line with its CRLF")
    add("bdat_chunk_over_limit_D", "D",
        [E, M, RC_OK, R(b"BDAT 500\r\n" + line * 5, 1), R(b"BDAT 501\r\n" + line * 5 + b"z", 1),
         R(b"BDAT 5\r\nzzzzz", 1), M, R(b"BDAT 0 LAST\r\n", 1), M, Q],
        "a chunk that is not the last takes the message over the limit")
    add("bdat_last_chunk_over_limit_D", "D",
        [E, M, RC_OK, R(b"BDAT 1001 LAST\r\n" + line * 10 + b"z", 1), M, Q])

    # --- pipelining ---------------------------------------------------------------
    add("pipelined_mail_rcpt_rcpt_data", "A",
        [E, R(b"MAIL FROM:<a@b.example>\r\nRCPT TO:<postmaster@mail.example.com>\r\n"
              b"RCPT TO:<c@d.example>\r\nDATA\r\n", 4),
         R(MSG3, 1), Q])
    add("pipelined_no_valid_rcpt", "A",
        [E, R(b"MAIL FROM:<a@b.example>\r\nRCPT TO:<c@d.example>\r\n"
              b"RCPT TO:<nosuchuser@mail.example.com>\r\nDATA\r\n", 4),
         R(MSG3, None), Q])
    add("pipelined_ehlo_quit", "A",
        [R(b"EHLO client.example.org\r\nQUIT\r\n", None)],
        "EHLO+QUIT in one write (banner already read)")

    # --- DATA bodies ----------------------------------------------------------------
    add("data_60000_byte_line", "A",
        [E, M, RC_OK, L("DATA"),
         R(b"Subject: long\r\n\r\n" + b"B" * 60000 + b"\r\n.\r\n", 1), Q])
    add("data_smuggling_combined", "A",
        [E, M, RC_OK, L("DATA"),
         R(b"Subject: smuggle\r\n\r\nline1\n.\nNOOP\r\nline2\r\n.\nNOOP\r\n"
           b"line3\r\n.\r\n", None), Q],
        "body has <LF>.<LF> then <CR><LF>.<LF>, each followed by NOOP, "
        "then proper <CR><LF>.<CR><LF>")
    add("data_smuggling_lf_dot_lf", "A",
        [E, M, RC_OK, L("DATA"),
         R(b"Subject: s\r\n\r\nline1\n.\nNOOP\r\nline2\r\n.\r\n", None), Q])
    add("data_smuggling_crlf_dot_lf", "A",
        [E, M, RC_OK, L("DATA"),
         R(b"Subject: s\r\n\r\nline1\r\n.\nNOOP\r\nline2\r\n.\r\n", None), Q])
    add("data_smuggling_lf_dot_crlf", "A",
        [E, M, RC_OK, L("DATA"),
         R(b"Subject: s\r\n\r\nline1\n.\r\nNOOP\r\nline2\r\n.\r\n", None), Q])
    add("data_smuggling_cr_dot_cr", "A",
        [E, M, RC_OK, L("DATA"),
         R(b"Subject: s\r\n\r\nline1\r.\rNOOP\r\nline2\r\n.\r\n", None), Q])
    add("data_dot_stuffing", "A",
        [E, M, RC_OK, L("DATA"),
         R(b"Subject: s\r\n\r\n..leading dot\r\n.\r\n", 1), Q])
    add("data_empty_message", "A", [E, M, RC_OK, L("DATA"), R(b".\r\n", 1), Q])
    add("data_too_big_declared", "A",
        [E, L("MAIL FROM:<a@b> SIZE=10240001"), Q])

    # --- nmap smtp-open-relay.nse -------------------------------------------------
    add("nmap_open_relay_default_domain", "A",
        nmap_relay_steps("nmap.scanme.org", "mail.example.com", "127.0.0.1"),
        "script defaults: domain=nmap.scanme.org (smtp.get_domain()), "
        "srvname from banner=mail.example.com, ip=127.0.0.1")
    add("nmap_open_relay_domain_mail.example.com", "A",
        nmap_relay_steps("mail.example.com", "mail.example.com", "127.0.0.1"),
        "as run with --script-args smtp-open-relay.domain=mail.example.com")

    # --- issue 19: what hurt the SMTP side (tests/test_hostile.py) ----------------
    add("ehlo_junk_limit", "A", [R(b"EHLO x\r\n" * 121, None)],
        "121 EHLO in one write: HELO and EHLO count as junk commands too;"
        " past the soft error limit each line of a reply waits a second")
    long_from = "MAIL FROM:<%s@b.example>" % ("m" * 2000)
    long_rcpts = b"".join(b"RCPT TO:<postmaster+%04d%s@mail.example.com>\r\n"
                          % (i, b"r" * 1980) for i in range(10))
    add("envelope_loop_2kb", "A",
        [E] + [L(long_from), R(long_rcpts, 10), L("RSET")] * 2 + [Q],
        "MAIL with a 2 KB address, RCPTs of 2 KB, RSET; twice (the attack"
        " sends 1000 RCPTs a round)")
    add("starttls_injection_error_sleep", "A",
        [E] + [L("FOO")] * 10
        + [R(b"STARTTLS\r\n", 0), SLEEP(0.3),
           R(b"EHLO injectedhelo\r\nMAIL FROM:<injected@b.example>\r\n", 1),
           TLS(), DRAIN(), E, M, Q],
        "ten errors, so the 220 waits out the error sleep; plaintext sent"
        " 0.3 s after STARTTLS, before the 220")
    add("mail_queue_full", "A", [E, FILL(), M, Q],
        "queue file system full before MAIL")
    add("data_queue_full", "A",
        [E, M, RC_OK, FILL(), L("DATA"),
         R(b"Subject: full\r\n\r\n" + (b"x" * 998 + b"\r\n") * 20 + b".\r\n", 1),
         L("NOOP"), M, Q],
        "queue file system filled after RCPT: a 20 KB message")
    add("bdat_queue_full", "A",
        [E, M, RC_OK, FILL(), R(b"BDAT 10000\r\n" + b"x" * 10000, 1),
         R(b"BDAT 10000 LAST\r\n" + b"y" * 10000, 1), L("NOOP"), Q],
        "queue file system filled after RCPT: two BDAT chunks of 10 KB")
    add("half_close_transaction", "A",
        [R(b"EHLO client.example.org\r\nMAIL FROM:<a@b.example>\r\n"
           b"RCPT TO:<postmaster@mail.example.com>\r\nDATA\r\n" + MSG3
           + b"QUIT\r\n", 0), SHUT()],
        "a whole pipelined transaction and QUIT in one write, then SHUT_WR")
    add("half_close_without_quit", "A",
        [R(b"EHLO client.example.org\r\nNOOP\r\nNOO", 0), SHUT()],
        "two commands and a partial line, then SHUT_WR")
    add("half_close_in_data", "A",
        [E, M, RC_OK, L("DATA"), R(b"Subject: half\r\n\r\npartial\r\n", 0), SHUT()],
        "SHUT_WR in the middle of DATA")
    add("cr_cr_lf_session", "A",
        [R(line + b"\r\r\n", 1) for line in (
            b"EHLO client.example.org", b"NOOP", b"RSET", b"MAIL FROM:<a@b.example>",
            b"RCPT TO:<postmaster@mail.example.com>", b"VRFY postmaster", b"DATA")]
        + [R(b"Subject: cr\r\r\n\r\r\nhello\r\r\n.\r\r\n", 1),
           R(b"HELO client.example.org\r\r\r\n", 1), R(b"QUIT\r\r\n", 1)],
        "every line ends in CR CR LF, the end of data too")
    add("cr_cr_lf_bare", "A",
        [R(b"\r\r\n", 1), R(b"EHLO x\r\r\n", 1), R(b"\r\n", 1), Q],
        "an empty line ending in CR CR LF; EHLO x ending so")
    add("data_dot_cr_cr_lf", "A",
        [E, M, RC_OK, L("DATA"),
         R(b"Subject: s\r\n\r\nhi\r\n.\r\r\nNOOP\r\n", None), Q],
        "does <CR><LF>.<CR><CR><LF> end DATA in a CRLF message?")
    add("long_line_cr_at_limit", "A",
        [E, R(b"RSET" + b" " * 2043 + b"\r\n", 1), R(b"RSET" + b" " * 2043 + b"\r\r\n", 1),
         L("NOOP"), Q],
        "a command whose 2048th byte is a CR: before its LF (one line), "
        "before another CR (cut at 2048, the rest skipped)")
    add("data_dot_crs_at_limit", "A",
        [E, M, RC_OK, L("DATA"),
         R(b"Subject: s\r\n\r\nhi\r\n." + b"\r" * 2047 + b"\nNOOP\r\n", 2), Q],
        "does a dot, 2047 CRs and an LF (a line of 2048 bytes and its LF) end DATA?")
    add("data_dot_crs_past_limit", "A",
        [E, M, RC_OK, L("DATA"),
         R(b"Subject: s\r\n\r\nhi\r\n." + b"\r" * 2048 + b"\nNOOP\r\n.\r\n", 1), Q],
        "does a dot, 2048 CRs and an LF end DATA?")
    add("noop_300", "A", [R(b"NOOP\r\n" * 300, None)],
        "smtpd_junk_command_limit = 100; drained until the 421")
    add("junk_commands_mixed", "A",
        [E, R(b"RSET\r\nVRFY postmaster\r\nETRN example.com\r\nNOOP\r\n" * 30, None)],
        "RSET, VRFY, ETRN, NOOP, 30 times each, one write")
    add("junk_then_delivery", "A",
        [E, R(b"NOOP\r\n" * 100, 100), M, RC_OK, L("DATA"), R(MSG3, 1),
         R(b"NOOP\r\n" * 110, None)],
        "does a delivered message reset the junk command count?")
    # --- issue 14: the reference of the persona, R (the client may relay) ----
    R_ = "R"
    add("full_session_R", R_, [
        E, M, L("RCPT TO:<c@d.example>"), RC_OK,
        L("RCPT TO:<nosuchuser@mail.example.com>"), L("RCPT TO:<postmaster>"),
        L("RCPT TO:<root@localhost>"), L("DATA"), R(MSG3, 1),
        L("RSET"), L("NOOP"), Q], "full_session where the client may relay")
    add("nmap_open_relay_default_domain_R", R_,
        nmap_relay_steps("nmap.scanme.org", "mail.example.com", "127.0.0.1"))
    add("nmap_open_relay_domain_mail.example.com_R", R_,
        nmap_relay_steps("mail.example.com", "mail.example.com", "127.0.0.1"))
    add("vrfy_outside_R", R_, [E, L("VRFY c@d.example"), Q])
    add("pipelined_no_valid_rcpt_R", R_,
        [E, R(b"MAIL FROM:<a@b.example>\r\nRCPT TO:<nosuchuser@mail.example.com>\r\n"
              b"RCPT TO:<nosuchuser>\r\nDATA\r\n", 4), R(MSG3, None), Q])
    # Local recipients: Debian's system users and aliases, at the host
    # name, localhost, localhost.localdomain and [the server's address].
    add("local_recipients_R", R_, [E, M] + [L("RCPT TO:<%s>" % a) for a in (
        "nosuchuser@mail.example.com", "nosuchuser", "victim@[127.0.0.1]",
        "root@[127.0.0.1]", "nosuchuser@localhost", "nosuchuser@localhost.localdomain",
        "root@localhost.localdomain", "NoSuchUser@MAIL.EXAMPLE.COM",
        "ROOT@Mail.Example.Com", "root+tag@mail.example.com",
        "nosuchuser+tag@mail.example.com", "postmaster+a+b@localhost", "+tag@mail.example.com",
        "root+@mail.example.com", "\"root\"@mail.example.com", "\"no such\"@mail.example.com",
        "daemon", "www-data@localhost", "nobody", "mail", "postfix", "_apt",
        "nosuchuser@mail.example.com.", "nosuchuser@sub.mail.example.com",
        "victim@[127.0.0.2]", "victim@[IPv6:::1]", "c@d.example")]
        + [L("DATA"), R(MSG3, 1), Q])
    add("local_no_valid_rcpt_R", R_,
        [E, M, L("RCPT TO:<nosuchuser>"), L("RCPT TO:<victim@[127.0.0.1]>"),
         L("DATA"), R(b"BDAT 5 LAST\r\nhello", None), L("NOOP"), Q])
    add("local_unknown_error_limit_R", R_,
        [E, M] + [L("RCPT TO:<nosuchuser%d@mail.example.com>" % i) for i in range(22)],
        "unknown local users count as errors: sleep past 10, 421 at 20")
    add("vrfy_local_R", R_, [E] + [L("VRFY " + a) for a in (
        "nosuchuser", "root", "root+tag", "nosuchuser@[127.0.0.1]", "<nosuchuser@localhost>",
        "NOSUCHUSER@MAIL.EXAMPLE.COM", "postmaster@localhost.localdomain",
        "root SMTPUTF8", "root smtputf8", "root FOO", "<root> SMTPUTF8", "<>",
        "nosuchuser SMTPUTF8")] + [Q])
    add("rcpt_local_before_ehlo_R", R_,
        [M, L("RCPT TO:<nosuchuser>"), L("RCPT TO:<root>"), Q])
    add("mail_local_sender_R", R_,
        [E, L("MAIL FROM:<nosuchuser@mail.example.com>"), L("RCPT TO:<c@d.example>"),
         L("RSET"), L("MAIL FROM:<nosuchuser>"), Q],
        "a sender at a local domain that is no user")

    # HELO is not required (smtpd_helo_required = no): neither at first nor
    # after a failed EHLO.
    add("mail_after_failed_ehlo_R", R_,
        [L("EHLO"), M, L("RCPT TO:<c@d.example>"), L("DATA"), R(MSG3, 1), Q])
    add("mail_after_failed_ehlo_B", "B",
        [L("EHLO"), M, L("RCPT TO:<c@d.example>"), L("DATA"), R(MSG3, 1), Q],
        "as mail_after_failed_ehlo_R, with smtpd_helo_required = yes")
    add("mail_after_bad_helo_R", R_,
        [L("HELO"), L("HELO a b"), M, RC_OK, Q])
    add("starttls_then_mail_R", R_,
        [E, L("STARTTLS"), TLS(), M, RC_OK, L("EHLO client.example.org"), Q],
        "MAIL right after the TLS handshake, no EHLO again")

    # Address syntax as Postfix 3.7 checks it.
    utf8 = lambda text: R(text.encode() + b"\r\n", 1)
    add("mail_utf8_R", R_,
        [E, utf8("MAIL FROM:<j\u00f6rg@b.example>"), utf8("RCPT TO:<\u00fcser@d.example>"),
         utf8("RCPT TO:<c@d\u00e9.example>"), utf8("RCPT TO:<\u00fcser>"),
         L("RSET"), utf8("MAIL FROM:<a@b\u00e9.example>"),
         utf8("MAIL FROM:<a@b\u00e9.example> SMTPUTF8"),
         utf8("RCPT TO:<c@d\u00e9.example>"), L("RSET"),
         utf8("VRFY j\u00f6rg@d\u00e9.example"), utf8("VRFY j\u00f6rg@d\u00e9.example SMTPUTF8"),
         utf8("VRFY n\u00f6suchuser"), Q],
        "UTF-8 addresses with and without SMTPUTF8 on MAIL")
    add("rcpt_null_R", R_, [E, M, L("RCPT TO:<>"), L("RCPT TO: <>"), L("RCPT TO:"), Q])
    long_addr = "l" * 1500 + "@d.example"
    add("long_addresses_R", R_,
        [E, L("MAIL FROM:<%s>" % long_addr), L("RSET"), M, L("RCPT TO:<%s>" % long_addr),
         L("VRFY " + long_addr), L("RCPT TO:<%s@d.example>" % ("x" * 64)),
         L("RCPT TO:<%s@d.example>" % ("x" * 65)),
         L("RCPT TO:<c@%s.example>" % ("d" * 250)), Q],
        "a 1,510-character address; local parts and domains at their RFC bounds")
    mail_lines = ["MAIL FROM:<a@b.example>junk", "MAIL FROM:<a@b.example>  ",
                  "MAIL FROM:<<a@b.example>>", "MAIL FROM:<a@b.example",
                  "MAIL FROM:a@b.example>", "MAIL FROM:<a@b.example> <x>",
                  "MAIL FROM:<a@b.example>>", "MAIL FROM:<<a@b.example>",
                  "MAIL FROM:<\"a b\"@b.example>", "MAIL FROM:<a@b..example>",
                  "MAIL FROM:<a@[999.1.1.1]>", "MAIL FROM:<@>", "MAIL FROM:<a@>"]
    add("mail_address_junk_R", R_, [E] + [x for line in mail_lines
                                         for x in (L(line), L("RSET"))] + [Q])
    add("rcpt_address_junk_R", R_,
        [E, M] + [L("RCPT TO:" + a) for a in (
            "<c@d.example>junk", "<<c@d.example>>", "<c@d.example", "<c@d.example>>",
            "<<c@d.example>", "<@>", "<c@>", "<@d.example>", "<c@d..example>",
            "<c@[1.2.3.4]>", "<c@[999.1.1.1]>", "<\"a b\"@d.example>", "<c@d.example >",
            "< c@d.example>", "<c@-d.example>", "<<nosuchuser>>", "<nosuchuser>junk")] + [Q])

    # Order and state.
    add("etrn_in_transaction_R", R_,
        [E, M, L("ETRN example.com"), L("RSET"), L("ETRN example.com"), Q])
    add("mail_after_size_rejection_R", R_,
        [E, L("MAIL FROM:<a@b> SIZE=99999999999"), M, M, L("MAIL FROM:<a@b> SIZE=10"),
         L("RSET"), M, L("RSET"), E, M, L("RSET"), L("HELO client.example.org"), M, Q],
        "a refused SIZE=, then MAIL without it; what makes MAIL work again")
    add("mail_after_size_rejection_reset_R", R_,
        [E, L("MAIL FROM:<a@b> SIZE=99999999999"), L("RSET"), M, L("RSET"), L("MAIL FROM:<a@b> SIZE=99999999999"), E, M, L("RSET"), L("MAIL FROM:<a@b> SIZE=99999999999"),
         L("HELO client.example.org"), M, L("RSET"), L("MAIL FROM:<a@b> SIZE=99999999999"), L("NOOP"), M,
         L("MAIL FROM:<a@b> SIZE=abc"), L("RSET"), L("MAIL FROM:<a@b> SIZE=99999999999"), L("MAIL FROM:<a@b> SIZE=abc"), M,
         L("MAIL FROM:<a@b> BODY=FOO"), L("MAIL FROM:<a@b> SIZE=99999999999"), L("MAIL FROM:<a@b> BODY=FOO"), M, Q],
        "what forgets the refused SIZE=")
    add("mail_after_size_rejection_D", "D",
        [E, L("MAIL FROM:<a@b> SIZE=1001"), M, L("MAIL FROM:<a@b> SIZE=999"), RC_OK,
         L("DATA"), R(MSG3, 1), Q])
    add("xclient_xforward_R", R_,
        [L("XCLIENT NAME=spike.example ADDR=192.0.2.1"), E,
         L("XCLIENT NAME=spike.example ADDR=192.0.2.1"), L("XFORWARD NAME=spike.example"),
         L("XCLIENT"), L("XFORWARD"), M, L("XCLIENT ADDR=1.2.3.4"), Q])
    add("noop_cr_cr_lf_R", R_, [R(b"NOOP\r\r\n", 1), R(b"EHLO x\r\r\n", 1), Q])

    # Limits and ends.
    add("noop_125_R", R_, [R(b"NOOP\r\n" * 125, None)],
        "125 accepted commands in one write: junk past 100 counts as errors")
    add("mixed_125_R", R_,
        [E, M, R(b"".join(b"RCPT TO:<u%d@d.example>\r\nNOOP\r\nVRFY root\r\n" % i
                          for i in range(65)), None)],
        "RCPT, NOOP and VRFY 65 times each in one write")
    add("data_bare_lf_end_R", R_,
        [E, M, RC_OK, L("DATA"), R(b"Subject: s\n\nhello\n.\n", 1), L("NOOP"), Q],
        "a message in bare LF lines, ended by LF . LF")
    add("data_bare_lf_variants_R", R_,
        [E, M, RC_OK, L("DATA"), R(b"Subject: s\r\n\r\nhello\r\n.\n", 1),
         M, RC_OK, L("DATA"), R(b"Subject: s\r\n\r\nhello\n.\r\n", 1),
         M, RC_OK, L("DATA"), R(b"Subject: s\n\n..stuffed\n.\r\r\n", 1),
         M, RC_OK, L("DATA"), R(b"Subject: s\r\n\r\nhello\r.\r\nNOOP\r\n.\r\n", 2), Q])
    add("data_over_limit_R", R_,
        [E, M, RC_OK, L("DATA"),
         R(b"Subject: big\r\n\r\n" + (b"x" * 998 + b"\r\n") * 10300 + b".\r\n", 1),
         L("NOOP"), M, RC_OK, R(b"BDAT 10240001 LAST\r\n" + b"y" * 10240001, 1), Q],
        "DATA and BDAT one line past message_size_limit = 10240000")

    # --- issue 14: AUTH with Dovecot as Postfix's SASL_README sets it up (E)
    E_ = "E"
    add("ehlo_E", E_, [E, L("HELO client.example.org"), Q])
    add("starttls_ok_E", E_, [E, L("STARTTLS"), TLS(), E, Q])
    add("auth_plain_ir_ok_E", E_, [E, L("AUTH PLAIN " + PLAIN_OK), M,
                                   L("RCPT TO:<c@d.example>"), Q])
    add("auth_plain_ir_badpass_E", E_, [E, L("AUTH PLAIN " + PLAIN_BAD), Q])
    add("auth_login_ok_E", E_, [E, L("AUTH LOGIN"), L(b64(USER)), L(b64(PASSWORD)), Q])
    add("auth_login_badpass_E", E_, [E, L("AUTH LOGIN"), L(b64(USER)),
                                     L(b64("wrongpass")), Q])
    add("auth_cram_md5_E", E_, [E, L("AUTH CRAM-MD5"), L("AUTH DIGEST-MD5"), Q])
    add("auth_bare_E", E_, [E, L("AUTH"), L("AUTH PLAIN ="), L("AUTH LOGIN *"), Q])
    add("auth_before_ehlo_E", E_, [L("AUTH PLAIN " + PLAIN_OK), Q])
    add("auth_after_helo_E", E_, [L("HELO client.example.org"), L("AUTH PLAIN " + PLAIN_OK), Q])
    add("auth_cancel_E", E_, [E, L("AUTH LOGIN"), L("*"), L("AUTH PLAIN"), L("*"), Q])
    add("auth_bad_base64_E", E_, [E, L("AUTH PLAIN !!!"), L("AUTH LOGIN"), L("%%%"), Q])
    add("auth_in_transaction_E", E_, [E, M, L("AUTH PLAIN " + PLAIN_OK), Q])
    add("mail_auth_param_E", E_, [E, L("MAIL FROM:<a@b> AUTH=<>"), L("RSET"),
                                  L("MAIL FROM:<a@b> AUTH=a+40b"), Q])
    return P


# ---------------------------------------------------------------------------
class Conn:
    def __init__(self, host, port):
        self.sock = socket.create_connection((host, port), timeout=10)
        self.buf = b""
        self.eof = False
        self.last_rx = None   # monotonic time of the last byte received

    def _recv(self, timeout):
        if self.eof:
            return False
        self.sock.settimeout(timeout)
        try:
            data = self.sock.recv(65536)
        except (socket.timeout, ssl.SSLWantReadError):
            return False
        except (ConnectionResetError, ssl.SSLError, OSError):
            self.eof = True
            return False
        if not data:
            self.eof = True
            return False
        self.buf += data
        self.last_rx = time.monotonic()
        return True

    def _take_reply(self):
        """Remove one complete reply from buf, or return None."""
        pos = 0
        while True:
            nl = self.buf.find(b"\n", pos)
            if nl < 0:
                return None
            line = self.buf[pos:nl + 1]
            pos = nl + 1
            if len(line) < 4 or line[3:4] != b"-":
                r, self.buf = self.buf[:pos], self.buf[pos:]
                return r

    def read_reply(self, timeout=REPLY_TIMEOUT):
        deadline = time.monotonic() + timeout
        while True:
            r = self._take_reply()
            if r is not None:
                return r, True
            left = deadline - time.monotonic()
            if left <= 0 or self.eof:
                r, self.buf = self.buf, b""
                return r, False
            self._recv(left)

    def drain(self, idle=DRAIN_IDLE):
        out = self.buf
        self.buf = b""
        while not self.eof:
            if not self._recv(idle):
                break
            out += self.buf
            self.buf = b""
        return out

    def send(self, data):
        self.sock.sendall(data)


def fill(path):
    """Write *path* until its file system has not a byte left."""
    with open(path, "ab", buffering=0) as f:
        for size in (1 << 20, 4096, 1):
            try:
                while True:
                    f.write(b"\0" * size)
            except OSError:
                pass


def run_probe(host, port, probe, filler=None):
    rec = {"name": probe["name"], "port_variant": probe["port_variant"],
           "exchange": [], "times": [], "server_closed": False,
           "closed_after": None, "notes": []}
    if probe.get("note"):
        rec["notes"].append(probe["note"])
    c = Conn(host, port)
    t0 = None
    banner, ok = c.read_reply(BANNER_TIMEOUT)
    rec["exchange"].append(["", banner.decode("latin-1")])
    rec["times"].append(0.0)
    if not ok:
        rec["notes"].append("banner incomplete/timeout")
    steps = probe["steps"]
    for i, step in enumerate(steps):
        if c.eof:
            rec["notes"].append("connection closed by server; %d step(s) not sent"
                                % (len(steps) - i))
            break
        kind = step[0]
        if kind == "tls":
            ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
            ctx.check_hostname = False
            ctx.verify_mode = ssl.CERT_NONE
            leftover = c.buf
            try:
                c.sock = ctx.wrap_socket(c.sock, server_hostname="mail.example.com")
                info = "%s %s" % (c.sock.version(), c.sock.cipher()[0])
            except (ssl.SSLError, OSError) as e:
                info = "TLS handshake failed: %r" % (e,)
                c.eof = True
            rec["exchange"].append(["<TLS handshake>", ""])
            rec["times"].append(round(time.monotonic() - (t0 or time.monotonic()), 3))
            rec["notes"].append("step %d TLS: %s; plaintext bytes buffered before "
                                "handshake: %r" % (len(rec["exchange"]) - 1, info,
                                                   leftover))
            c.buf = b""
            continue
        if kind == "sleep":
            time.sleep(step[1])
            continue
        if kind == "fill":
            fill(filler)
            rec["exchange"].append(["<queue file system filled>", ""])
            rec["times"].append(round(time.monotonic() - (t0 or time.monotonic()), 3))
            continue
        if kind == "shut":
            c.sock.shutdown(socket.SHUT_WR)
            reply = c.drain(idle=REPLY_TIMEOUT)
            rec["exchange"].append(["<SHUT_WR>", reply.decode("latin-1")])
            rec["times"].append(round(time.monotonic() - (t0 or time.monotonic()), 3))
            if c.eof and rec["closed_after"] is None:
                rec["server_closed"] = True
                rec["closed_after"] = len(rec["exchange"]) - 1
            continue
        if kind == "cram":
            prev = rec["exchange"][-1][1]
            chal = base64.b64decode(prev.strip()[4:])
            digest = hmac.new(PASSWORD.encode(), chal, hashlib.md5).hexdigest()
            data = (b64("%s %s" % (USER, digest))).encode() + b"\r\n"
            n = 1
        else:
            data, n = step[1], step[2]
        if t0 is None:
            t0 = time.monotonic()
        try:
            if data:
                c.send(data)
        except OSError as e:
            rec["notes"].append("send failed at step %d: %r" % (i, e))
            c.eof = True
            break
        if n is None:
            reply = c.drain()
        else:
            reply = b""
            for _ in range(n):
                r, ok = c.read_reply()
                reply += r
                if not ok:
                    rec["notes"].append("step %d: reply incomplete (timeout or EOF)"
                                        % (len(rec["exchange"])))
                    break
        rec["exchange"].append([data.decode("latin-1"), reply.decode("latin-1")])
        # time the reply was complete (drain: last byte seen, not end of idle wait)
        t_end = c.last_rx if (n is None and reply) else time.monotonic()
        rec["times"].append(round(t_end - t0, 3))
        if c.eof and rec["closed_after"] is None:
            rec["server_closed"] = True
            rec["closed_after"] = len(rec["exchange"]) - 1
    # final check: does the server close / send anything more?
    if not c.eof:
        extra = c.drain(idle=1.0)
        if extra:
            rec["exchange"].append(["", extra.decode("latin-1")])
            rec["times"].append(round(time.monotonic() - (t0 or time.monotonic()), 3))
            rec["notes"].append("unsolicited data after last step")
    if c.eof and rec["closed_after"] is None:
        rec["server_closed"] = True
        rec["closed_after"] = len(rec["exchange"]) - 1
    try:
        c.sock.close()
    except OSError:
        pass
    if filler is not None and os.path.exists(filler):
        os.unlink(filler)
    return rec


def main():
    ap = argparse.ArgumentParser(description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--host", default="127.0.0.1")
    ap.add_argument("--port-a", type=int, default=10025)
    ap.add_argument("--port-b", type=int, default=10026)
    ap.add_argument("--port-c", type=int, default=10027)
    ap.add_argument("--port-d", type=int, default=10028)
    ap.add_argument("--port-r", type=int, default=10029)
    ap.add_argument("--port-e", type=int, default=10030)
    ap.add_argument("--skip-c", action="store_true", help="no SASL instance")
    ap.add_argument("--only", help="comma-separated probe names")
    ap.add_argument("--fill", metavar="DIR",
                    help="a directory on the queue file system, for FILL probes")
    ap.add_argument("--out", required=True, help="the JSON file to write")
    a = ap.parse_args()
    ports = {"A": a.port_a, "B": a.port_b, "C": a.port_c, "D": a.port_d,
             "R": a.port_r, "E": a.port_e}
    results = []
    only = set(a.only.split(",")) if a.only else None
    filler = os.path.join(a.fill, "filler") if a.fill else None
    for p in probes():
        if a.skip_c and p["port_variant"] == "C":
            continue
        if only and p["name"] not in only:
            continue
        if filler is None and ("fill",) in p["steps"]:
            continue
        rec = run_probe(a.host, ports[p["port_variant"]], p, filler)
        results.append(rec)
        print("%-45s %s %d exchanges%s" % (rec["name"], rec["port_variant"],
                                          len(rec["exchange"]),
                                          " (closed)" if rec["server_closed"] else ""),
              flush=True)
    with open(a.out, "w") as f:
        json.dump(results, f, ensure_ascii=True, indent=1)
        f.write("\n")


if __name__ == "__main__":
    main()
