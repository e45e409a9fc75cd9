"""The Postfix persona against a real Postfix: every recorded probe replayed.

``data/postfix_replies.json`` was recorded by ``data/record_postfix.py`` from
a private Postfix 3.7.11 (Debian 12) on loopback: variant A is a stock
smtpd, B has ``smtpd_helo_required = yes``, C has Dovecot SASL.  Each probe
is replayed to the honeypot in memory and its replies must be Postfix's,
byte for byte, except where the honeypot differs on purpose (``DIFFERENT``).
"""

import json
import re
from pathlib import Path

from twisted.trial import unittest

from smtplatrine.testing import connect, make_config, make_factory, settle

PROBES = json.loads((Path(__file__).parent / "data" / "postfix_replies.json").read_text())

# Probes where the honeypot answers otherwise on purpose, and why.
DIFFERENT = {
    # An open relay: every recipient is accepted where Postfix refused.
    "full_session": "accepts every recipient",
    "data_after_rejected_rcpt_only": "accepts every recipient",
    "vrfy_unknown_user": "VRFY confirms every address",
    "vrfy_outside": "VRFY confirms every address",
    "unauth_relay_C": "accepts every recipient",
    "pipelined_mail_rcpt_rcpt_data": "accepts every recipient",
    "pipelined_no_valid_rcpt": "accepts every recipient",
    "nmap_open_relay_default_domain": "accepts every recipient",
    "nmap_open_relay_domain_mail.example.com": "accepts every recipient",
    # smtp_compliant = true wants HELO/EHLO first, like variant B.
    "mail_before_helo_A": "compliant mode wants HELO first",
    "auth_before_ehlo": "compliant mode wants HELO first",
    "error_sleep_after_delivery": "compliant mode wants HELO first",
    # Only CRLF.CRLF ends DATA: no SMTP smuggling (Postfix 3.7 takes bare LF).
    "data_smuggling_combined": "only CRLF.CRLF ends DATA",
    "data_smuggling_lf_dot_lf": "only CRLF.CRLF ends DATA",
    "data_smuggling_crlf_dot_lf": "only CRLF.CRLF ends DATA",
    "data_smuggling_lf_dot_crlf": "only CRLF.CRLF ends DATA",
    "bare_lf_command": "recorded with a bare LF that the probe tool drained oddly",
    # Dovecot delays failures and checks passwords; the honeypot does neither.
    "auth_plain_ir_equals": "smtp_auth_accept decides, not a password",
}
# Probes that need a real file system filled: tests/test_hostile_postfix.py
# replays them over TCP.
FILLED = "<queue file system filled>"

_DYNAMIC = [
    (re.compile(r"queued as [0-9A-F]{10,12}"), "queued as QUEUEID"),
    (re.compile(r"^334 (?!VXNlcm5hbWU6|UGFzc3dvcmQ6)\S+", re.M), "334 CHALLENGE"),
]


def normalise(text):
    for pattern, replacement in _DYNAMIC:
        text = pattern.sub(replacement, text)
    return text


def config_for(probe):
    """The honeypot settings that match the probe's Postfix variant."""
    variant = probe["port_variant"]
    auth = variant == "C"
    accept = auth and "badpass" not in probe["name"]
    return make_config(smtp={"smtp_compliant": True, "smtp_auth_accept": accept},
                       smtp_features={"auth": auth})


def replay(testcase, probe):
    """Send each step of *probe* and read, as the recorder did, as many
    bytes as Postfix answered (what a step did not read is read by the
    next), letting error sleeps pass until they have come."""
    factory = make_factory(testcase.mktemp(), config_for(probe), tls_options=object())
    clock = factory.clock
    protocol, transport = connect(factory)
    exchange = probe["exchange"]
    testcase.assertEqual(transport.value().decode("latin-1"), exchange[0][1])
    transport.clear()
    unread = b""
    for sent, expected in exchange[1:]:
        if sent == "<SHUT_WR>":
            protocol.readConnectionLost()
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
        testcase.assertEqual(normalise(got.decode("latin-1")), normalise(expected),
                             (probe["name"], sent))
        if transport.tls is not None:
            return  # The TLS handshake is for the end-to-end tests.
    testcase.assertEqual(unread, b"", probe["name"])
    testcase.assertEqual(transport.disconnecting, bool(probe["server_closed"]),
                         probe["name"])


class PostfixPersonaTests(unittest.TestCase):
    """One test per probe recorded from the real Postfix."""


def _make_test(probe):
    def test(self):
        replay(self, probe)
    test.__doc__ = f"Probe {probe['name']} (variant {probe['port_variant']}) as Postfix."
    if probe["name"] in DIFFERENT:
        test.skip = "differs on purpose: " + DIFFERENT[probe["name"]]
    elif any(sent == FILLED for sent, _ in probe["exchange"]):
        test.skip = "needs a full file system: see tests/test_hostile_postfix.py"
    return test


for _probe in PROBES:
    _name = "test_" + re.sub(r"\W", "_", _probe["name"])
    setattr(PostfixPersonaTests, _name, _make_test(_probe))
