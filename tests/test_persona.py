"""The Postfix persona against a real Postfix: every recorded probe replayed.

``data/postfix_replies.json`` was recorded by ``data/record_postfix.py`` from
a private Postfix 3.7.11 (Debian 12) on loopback: variant A is a stock
smtpd, B has ``smtpd_helo_required = yes``, C has Dovecot SASL, D has
``message_size_limit = 1000``, R lets the client relay (the persona's
reference: the honeypot relays for everyone) and E is R with Dovecot SASL
as Postfix's SASL_README sets it up (the persona's AUTH).  Each probe is replayed to the honeypot in
memory and its replies must be Postfix's, byte for byte.  Where the
honeypot answers otherwise on purpose (``DELIBERATE``), the test asserts
the reply it gives instead; no probe is skipped.  A probe that filled the
queue file system gets a spool that has no room and message files on
/dev/full (tests/test_hostile_postfix.py fills a real one).
"""

import json
import re
from pathlib import Path

from twisted.trial import unittest

from smtplatrine import spool as spool_module
from smtplatrine.testing import connect, make_config, make_factory, settle

PROBES = json.loads((Path(__file__).parent / "data" / "postfix_replies.json").read_text())

# Postfix's own replies to what it accepts, recorded in other probes
# (helo_session, vrfy_postmaster, data_empty_message).
RCPT_OK = "250 2.1.5 Ok\r\n"
DATA_GO = "354 End data with <CR><LF>.<CR><LF>\r\n"
# (With a queue id of the usual length: the replay reads as many bytes.)
QUEUED = "250 2.0.0 Ok: queued as 0123456789A\r\n"
NEED_HELO = "503 5.5.1 Error: send HELO/EHLO first\r\n"
NEED_MAIL = "503 5.5.1 Error: need MAIL command\r\n"
# How Postfix refused to relay (variants A to D: the client may not).
REFUSED_RCPT = re.compile(r"^454 4\.7\.1 <[^>]*>: Relay access denied\r\n", re.M)
RELAY = "relays for every client (scanners conclude: open relay; variant R shows it)"


def accept_recipients(exchange, **replies):
    """Postfix's *exchange* with every recipient it would not relay to
    accepted, and the replies of some steps (``step_N=reply``) replaced."""
    exchange = [[sent, REFUSED_RCPT.sub(RCPT_OK, reply)] for sent, reply in exchange]
    return replace(exchange, **replies)


def replace(exchange, **replies):
    """*exchange* with the reply of step N replaced by ``step_N=reply``."""
    exchange = [list(step) for step in exchange]
    for key, reply in replies.items():
        exchange[int(key.removeprefix("step_"))][1] = reply
    return exchange


# Probes the honeypot answers otherwise on purpose: why, its exchange made
# from Postfix's, and whether it has closed the connection at the end.
DELIBERATE = {
    "full_session": (RELAY, accept_recipients, True),
    "unauth_relay_C": (RELAY, accept_recipients, True),
    "pipelined_mail_rcpt_rcpt_data": (RELAY, accept_recipients, True),
    "nmap_open_relay_default_domain": (RELAY, accept_recipients, True),
    "nmap_open_relay_domain_mail.example.com": (RELAY, accept_recipients, True),
    # DATA is taken, so the QUIT after it is message text.
    "data_after_rejected_rcpt_only": (
        RELAY, lambda ex: accept_recipients(ex, step_4=DATA_GO, step_5=""), False),
    # DATA is taken (one recipient is), so the message is queued (Postfix
    # read its first line as a forbidden command and hung up).
    "pipelined_no_valid_rcpt": (
        RELAY, lambda ex: accept_recipients(
            ex, step_2=REFUSED_RCPT.sub(RCPT_OK, ex[2][1]).replace(
                "554 5.5.1 Error: no valid recipients\r\n", DATA_GO),
            step_3=QUEUED), False),
    "vrfy_outside": (RELAY, lambda ex: replace(ex, step_2="252 2.0.0 c@d.example\r\n"), True),
}

# Stock Postfix takes MAIL and AUTH before HELO, as the honeypot does by
# default; with helo_required = true it wants HELO first, as
# smtpd_helo_required = yes does (variant B).  These probes are replayed in
# that mode too, where the replies are variant B's.
HELO_FIRST = {
    "mail_before_helo_A": lambda ex: replace(ex, step_1=NEED_HELO, step_2=NEED_MAIL),
    "auth_before_ehlo": lambda ex: replace(ex, step_1=NEED_HELO),
    "auth_before_ehlo_E": lambda ex: replace(ex, step_1=NEED_HELO),
}

# Variant C probes where Dovecot refused the credentials: the honeypot
# checks no password, smtp_auth_accept = false refuses them all.
REFUSED_LOGINS = {"auth_plain_ir_badpass", "auth_login_badpass", "auth_plain_ir_equals",
                  "auth_plain_ir_badpass_E", "auth_login_badpass_E", "auth_bare_E"}

_DYNAMIC = [
    (re.compile(r"queued as [0-9A-F]{10,12}"), "queued as QUEUEID"),
    (re.compile(r"^334 (?!VXNlcm5hbWU6|UGFzc3dvcmQ6)\S+", re.M), "334 CHALLENGE"),
]


def normalise(text):
    for pattern, replacement in _DYNAMIC:
        text = pattern.sub(replacement, text)
    return text


def config_for(probe, helo_required=None):
    """The honeypot settings that match the probe's Postfix variant
    (*helo_required* as B's, unless given)."""
    variant = probe["port_variant"]
    auth = variant in "CE"
    smtp = {"helo_required": variant == "B" if helo_required is None else helo_required,
            "smtp_auth_accept": auth and probe["name"] not in REFUSED_LOGINS}
    features = {"auth": auth}
    if variant == "C":
        features["auth_mechanisms"] = ("PLAIN", "LOGIN", "CRAM-MD5")
    if variant == "D":
        smtp["message_size_limit"] = 1000
    return make_config(smtp=smtp, smtp_features=features)


# The steps of a probe that sent nothing but did something.
FILLED, SHUT = "<queue file system filled>", "<SHUT_WR>"


def converse(factory, exchange, fill):
    """Send *exchange*'s client side to a session of *factory*, reading
    after each step, as the recorder did, as many bytes as *exchange* has
    for it (what a step does not read, the next one does), error sleeps
    let pass until they have come; *fill* fills the spool's file system.

    Returns the replies read, the banner's first, what was left unread,
    and whether the session closed; it stops at a TLS handshake (that is
    for the end-to-end tests)."""
    clock = factory.clock
    # The server's address is the recorder's: [127.0.0.1] is local to it.
    protocol, transport = connect(factory, server=("127.0.0.1", 25))
    replies = [transport.value().decode("latin-1")]
    transport.clear()
    unread = b""
    for sent, expected in exchange[1:]:
        if sent == SHUT:
            protocol.readConnectionLost()
        elif sent == FILLED:
            fill(factory.spool)
        else:
            protocol.dataReceived(sent.encode("latin-1"))
        settle(clock)
        while (len(unread) + len(transport.value()) < len(expected)
               and any(c.getTime() <= clock.seconds() + 1 for c in clock.getDelayedCalls())):
            clock.advance(1)
            settle(clock)
        unread += transport.value()
        transport.clear()
        got, unread = unread[:len(expected)], unread[len(expected):]
        replies.append(got.decode("latin-1"))
        if transport.tls is not None:
            return replies, None, None
    return replies, unread, transport.disconnecting


def replay(testcase, probe, exchange, closed, helo_required=None):
    """Replay *probe*'s client side (see :func:`converse`); the replies
    must be *exchange*'s and the connection closed at the end if
    *closed*."""
    factory = make_factory(testcase.mktemp(), config_for(probe, helo_required),
                           tls_options=object())
    replies, unread, disconnecting = converse(
        factory, exchange, lambda spool: fill(testcase, spool))
    for (sent, expected), got in zip(exchange, replies):
        testcase.assertEqual(normalise(got), normalise(expected), (probe["name"], sent))
    if unread is not None:
        testcase.assertEqual(unread, b"", probe["name"])
        testcase.assertEqual(disconnecting, closed, probe["name"])


def fill(testcase, spool):
    """*spool*'s file system as full as it gets: no free space, and the
    message files it opens from now on on /dev/full."""
    testcase.patch(spool_module, "free_space", lambda path: 0)
    opened = spool.open

    def full(limit):
        spool_file = opened(limit)
        spool_file._file.close()
        spool_file._file = open("/dev/full", "wb")
        return spool_file

    testcase.patch(spool, "open", full)


class PostfixPersonaTests(unittest.TestCase):
    """One test per probe recorded from the real Postfix."""


def _make_tests(probe):
    """The tests of *probe*: {name suffix: test}."""
    name, variant = probe["name"], probe["port_variant"]
    exchange, closed = probe["exchange"], bool(probe["server_closed"])
    if name in DELIBERATE:
        why, ours, closed = DELIBERATE[name]

        def test(self):
            replay(self, probe, ours(exchange), closed)
        test.__doc__ = f"Probe {name} (variant {variant}) as Postfix, except: {why}."
        return {"": test}
    tests = {}
    if name in HELO_FIRST:
        def test_helo_required(self):
            replay(self, probe, HELO_FIRST[name](exchange), closed, helo_required=True)
        test_helo_required.__doc__ = (f"Probe {name} (variant {variant}) with helo_required"
                                      f" = true: HELO first, as variant B.")
        tests["_helo_required"] = test_helo_required

    def test(self):
        replay(self, probe, exchange, closed)
    test.__doc__ = f"Probe {name} (variant {variant}) as Postfix."
    tests[""] = test
    return tests


for _probe in PROBES:
    for _suffix, _test in _make_tests(_probe).items():
        setattr(PostfixPersonaTests, "test_" + re.sub(r"\W", "_", _probe["name"]) + _suffix,
                _test)
