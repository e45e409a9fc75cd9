"""Published honeypot detectors against ``twistd smtplatrine``: none may
tell it apart from the Postfix it claims to be.

Each signature below is written from its published form (probe sent, and
what in the reply gives a honeypot away), with where it comes from; each
test sends the probe to a honeypot with the default configuration, over
TCP, and checks that the reply does not match.  Every probe is sent as a
command line (CRLF-terminated), as an SMTP server reads one.
"""

import re
import socket
import time
from pathlib import Path

from tests.test_e2e import HoneypotTestCase
from tests.test_persona import PROBES

# (name, source, [(line sent, text whose presence in the reply is the tell)]).
SIGNATURES = [
    ("Mailoney, nuclei",
     "projectdiscovery/nuclei-templates network/honeypot/mailoney-honeypot-detect.yaml",
     [("HELP", 'Error: command "HELP" not implemented')]),
    ("Mailoney, honeydet 13", "referefref/honeydet signatures.yaml, id 13",
     [("HELP", "Error: cmomand")]),
    ("Mailoney, honeydet 28", "referefref/honeydet signatures.yaml, id 28",
     [('"', "not implementedd")]),
    ("Mail::SMTP::Honeypot, honeydet 29", "referefref/honeydet signatures.yaml, id 29",
     [("DATA", "421 Service not available, closing transmission channel")]),
    ("Spamhole, honeydet 30", "referefref/honeydet signatures.yaml, id 30",
     [("starttls", "502 Nope we use cleartext")]),
    ("Spamhole-C, honeydet 31", "referefref/honeydet signatures.yaml, id 31",
     [("EHLO honeypot.net.au", None), ("NOOP", "502 unimplemented (#5.5.1)"),
      ("starttls", "502 unimplemented (#5.5.1)"),
      ("MAIL FROM:<test@honeypot.net.au>", "250 ok"),
      ("RCPT TO:<test@honeypot.net.au>", "250 ok"), ("DATA", "354 go ahead")]),
    ("imap-honey as SMTP, honeydet 7", "referefref/honeydet signatures.yaml, id 7",
     [("HELP", "334 UGFzc3dvcmQ6")]),
]
NMAP_PROBES = Path("/usr/share/nmap/nmap-service-probes")


def read_reply(sock):
    """One whole reply (its last line has a space after the code), or what
    came before the server closed."""
    data = b""
    sock.settimeout(30)
    while not re.search(rb"(?:\A|\n)\d{3}(?: [^\n]*)?\r?\n\Z", data):
        chunk = sock.recv(4096)
        if not chunk:
            break
        data += chunk
    return data.decode("latin-1")


class DetectorTests(HoneypotTestCase):

    def converse(self, lines):
        """The banner, then the reply to each of *lines*, on one connection."""
        with socket.create_connection(("127.0.0.1", self.honeypot.port), timeout=30) as sock:
            replies = [read_reply(sock)]
            for line in lines:
                try:
                    sock.sendall(line.encode("latin-1") + b"\r\n")
                except OSError:
                    break
                replies.append(read_reply(sock))
        return replies

    def test_published_signatures_do_not_match(self):
        """No reply of the honeypot holds what a published SMTP honeypot
        signature looks for."""
        for name, source, steps in SIGNATURES:
            replies = self.converse([sent for sent, _ in steps])
            for (sent, tell), reply in zip(steps, replies[1:]):
                if tell is not None:
                    self.assertNotIn(tell.lower(), reply.lower(), (name, source, sent))

    def test_help_as_postfix(self):
        """HELP, which both Mailoney signatures send, is answered as Postfix
        3.7.11 answered it (recorded: help)."""
        [probe] = [p for p in PROBES if p["name"] == "help"]
        self.assertEqual(self.converse(["EHLO x", "HELP"])[2], probe["exchange"][2][1])

    def test_nmap_get_request_says_postfix(self):
        """nmap's GetRequest probe (GET / HTTP/1.0, sent by -sV) gets the
        reply that nmap-service-probes' Postfix match line looks for, the
        one Postfix 3.7.11 gave (recorded: http_get)."""
        with socket.create_connection(("127.0.0.1", self.honeypot.port), timeout=30) as sock:
            sock.sendall(b"GET / HTTP/1.0\r\n\r\n")
            data, deadline = b"", time.monotonic() + 30
            while time.monotonic() < deadline:
                chunk = sock.recv(4096)
                if not chunk:
                    break
                data += chunk
        [probe] = [p for p in PROBES if p["name"] == "http_get"]
        self.assertEqual(data.decode("latin-1"),
                         probe["exchange"][0][1] + probe["exchange"][1][1])
        [line] = [line for line in NMAP_PROBES.read_text("latin-1").splitlines()
                  if line.startswith("match smtp m|^220 .*\\r\\n221 2\\.7\\.0")]
        self.assertRegex(data.decode("latin-1"), line.split("|")[1])
        self.assertIn("p/Postfix smtpd/", line)
