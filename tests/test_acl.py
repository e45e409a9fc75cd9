"""The gate at connect time: block list, per-client limits, smart bans."""

import json
from pathlib import Path

from twisted.trial import unittest

from smtplatrine import acl, geoip
from smtplatrine.testing import connect, make_config, make_factory
from tests.mmdb import city_database, city_record

# Replies of a real Postfix 3.7 to a blocked client and to one connection
# over smtpd_client_connection_count_limit (see the file for its settings).
POSTFIX = json.loads((Path(__file__).parent / "data" / "postfix_limits.json")
                     .read_text())["replies"]
BANNER = b"220 mail.example.com ESMTP Postfix (Debian/GNU)\r\n"
HTTP = b"GET / HTTP/1.1\r\nHost: x\r\n\r\n"


class GateTestCase(unittest.TestCase):

    def make(self, **sections):
        self.factory = make_factory(Path(self.mktemp()), make_config(**sections))
        self.clock = self.factory.clock
        self.guard = self.factory.guard
        return self.factory

    def connect(self, ip="192.0.2.7", port=40000):
        protocol, transport = connect(self.factory, peer=(ip, port))
        return protocol, transport

    def refusals(self):
        return [(e["src_ip"], e["reason"], e["entry"]) for e in self.factory.output.events
                if e["eventid"] == "smtplatrine.acl.refused"]


class ClientLimitTests(GateTestCase):

    def test_count_limit_reply(self):
        """One connection over the per-client limit gets Postfix's 421 and a close."""
        self.make(protection={"max_connections_per_client": 2})
        for port in (1, 2):
            _, transport = self.connect("127.0.0.1", port)
            self.assertEqual(transport.value(), BANNER)
        _, transport = self.connect("127.0.0.1", 3)
        self.assertEqual(transport.value().decode(), POSTFIX["too_many_connections_from"])
        self.assertTrue(transport.disconnecting)
        self.assertEqual(self.refusals(), [("127.0.0.1", "client_limit", "2")])

    def test_other_client_and_freed_slot(self):
        """The limit is per client, and a closed connection frees its place."""
        self.make(protection={"max_connections_per_client": 1})
        first, _ = self.connect("192.0.2.7")
        _, other = self.connect("192.0.2.8")
        self.assertEqual(other.value(), BANNER)
        self.assertNotEqual(self.connect("192.0.2.7")[1].value(), BANNER)
        first.connectionLost(None)
        self.assertEqual(self.connect("192.0.2.7")[1].value(), BANNER)

    def test_two_places_freed_one_at_a_time(self):
        """With two places per client, closing one of two connections frees
        one place, not both."""
        guard = self.make(protection={"max_connections_per_client": 2}).guard
        for _ in range(2):
            self.assertIsNone(guard.admit("192.0.2.7"))
        guard.closed("192.0.2.7")
        self.assertIsNone(guard.admit("192.0.2.7"))
        self.assertEqual(guard.admit("192.0.2.7").reason, acl.CLIENT_LIMIT)
        guard.closed("192.0.2.7")
        guard.closed("192.0.2.7")
        for _ in range(2):
            self.assertIsNone(guard.admit("192.0.2.7"))

    def test_ipv6_prefix(self):
        """IPv6 addresses in one /64 are one client; another /64 is another."""
        self.make(protection={"max_connections_per_client": 1})
        self.assertEqual(self.connect("2001:db8:0:1::1")[1].value(), BANNER)
        self.assertEqual(self.connect("2001:db8:0:1::ffff")[1].value(),
                         b"421 4.7.0 mail.example.com Error: too many connections"
                         b" from 2001:db8:0:1::ffff\r\n")
        self.assertEqual(self.connect("2001:db8:0:2::1")[1].value(), BANNER)

    def test_rate(self):
        """Past max_connection_rate in one window the client gets 421, and
        again may connect in the next window."""
        self.make(protection={"max_connection_rate": 3, "rate_window": 60})
        for port in (1, 2, 3):
            self.connect(port=port)[0].connectionLost(None)
        _, transport = self.connect(port=4)
        self.assertEqual(transport.value(), b"421 4.7.0 mail.example.com Error: too many"
                                            b" connections from 192.0.2.7\r\n")
        self.clock.advance(60)
        self.assertEqual(self.connect(port=5)[1].value(), BANNER)
        self.assertEqual(self.refusals(), [("192.0.2.7", "client_rate", "3")])

    def test_rate_kept_across_many_clients(self):
        """A client's count in the current window survives the forgetting
        of old windows that many other clients cause, up to its last
        second; it is forgotten when the window is over."""
        guard = self.make(protection={"max_connection_rate": 2, "rate_window": 60},
                          smart_acl={"enabled": False}).guard
        for _ in range(2):
            self.assertIsNone(guard.admit("192.0.2.7"))
            guard.closed("192.0.2.7")
        self.clock.advance(59)
        for n in range(3000):
            ip = f"10.0.{n // 256}.{n % 256}"
            guard.admit(ip)
            guard.closed(ip)
        self.assertIsNotNone(guard.admit("192.0.2.7"))
        self.clock.advance(1)
        self.assertIsNone(guard.admit("192.0.2.7"))

    def test_refused_aborted(self):
        """A refused connection that cannot be closed (a TLS port that gets
        no hello) is aborted after five seconds; one closed is left alone."""
        self.make(protection={"max_connections_per_client": 1})
        self.connect()
        aborts = []
        for port in (2, 3):
            protocol, transport = self.connect(port=port)
            transport.abortConnection = lambda port=port: aborts.append(port)
        protocol.connectionLost(None)
        self.clock.advance(4.9)
        self.assertEqual(aborts, [])
        self.clock.advance(0.1)
        self.assertEqual(aborts, [2])

    def test_zero_is_no_limit(self):
        """0 turns the per-client limit and rate off."""
        self.make(protection={"max_connections_per_client": 0, "max_connection_rate": 0},
                  smart_acl={"enabled": False})
        for port in range(200):
            self.assertEqual(self.connect(port=port)[1].value(), BANNER)

    def test_clients_forgotten(self):
        """Clients whose window has ended do not pile up in memory."""
        guard = self.make(smart_acl={"enabled": False}).guard
        for window in range(10):
            for n in range(3000):
                ip = f"10.{window}.{n // 256}.{n % 256}"
                self.assertIsNone(guard.admit(ip))
                guard.closed(ip)
            self.clock.advance(60)
        self.assertLessEqual(len(guard._rate), 2 * 3000)

    def test_global_limit_event(self):
        """A connection over max_connections is an event too."""
        self.make(protection={"max_connections": 1})
        self.connect()
        self.connect("192.0.2.8")
        self.assertEqual(self.refusals(), [("192.0.2.8", "busy", "1")])


class BlockListTests(GateTestCase):

    def test_reject(self):
        """A client on the list gets Postfix's 554 instead of the banner and
        is closed; the hit is counted for the database."""
        self.make()
        self.guard.replace(["127.0.0.0/30"], [])
        self.clock.advance(5)
        protocol, transport = self.connect("127.0.0.2")
        self.assertEqual(transport.value().decode(), POSTFIX["client_rejected"])
        self.assertTrue(transport.disconnecting)
        self.assertEqual(self.refusals(), [("127.0.0.2", "acl_ip", "127.0.0.0/30")])
        self.assertEqual(self.guard.take_hits(), {("ip", "127.0.0.0/30"): [1, 5]})
        self.assertEqual(self.guard.take_hits(), {})

    def test_close(self):
        """With acl_action = close the client is closed without a word."""
        self.make(protection={"acl_action": "close"})
        self.guard.replace(["2001:db8::/32"], [])
        _, transport = self.connect("2001:db8:1::7")
        self.assertEqual(transport.value(), b"")
        self.assertTrue(transport.disconnecting)

    def test_entries(self):
        """Addresses, networks of either family and IPv4-mapped clients match;
        neighbours do not."""
        guard = self.make().guard
        guard.replace(["192.0.2.7/32", "198.51.100.0/24", "2001:db8::1/128"], [])
        self.assertEqual(str(acl.network("::ffff:203.0.113.0/120")), "203.0.113.0/24")
        for ip in ("192.0.2.7", "198.51.100.255", "::ffff:198.51.100.1", "2001:db8::1"):
            self.assertIsNotNone(guard.blocked(ip), ip)
        for ip in ("192.0.2.6", "198.51.101.0", "2001:db8::2", "unix", ""):
            self.assertIsNone(guard.blocked(ip), ip)

    def test_entry_errors(self):
        """An entry that is no network is refused with the entry named; a
        country is two ASCII letters, in either case."""
        for text in ("10.0.0.1/8", "example.com"):
            with self.assertRaises(ValueError) as caught:
                acl.network(text)
            self.assertIn(repr(text), str(caught.exception))
        self.assertEqual([acl.country(text) for text in ("cn", " Fr ", "CHN", "C", "1A", "\u00c4T")],
                         ["CN", "FR", None, None, None, None])

    def test_entry_typed_by_a_person(self):
        """What a person types for the block list is a country (two letters)
        or a network (an address alone is its /32 or /128); anything else
        is refused, saying what to give instead."""
        self.assertEqual(
            [acl.entry(text) for text in (" de ", "192.0.2.7", "2001:db8::/32",
                                          "::ffff:192.0.2.0/120")],
            [("country", "DE"), ("ip", "192.0.2.7/32"), ("ip", "2001:db8::/32"),
             ("ip", "192.0.2.0/24")])
        with self.assertRaises(ValueError) as caught:
            acl.entry("example.com")
        self.assertIn("'example.com'", str(caught.exception))
        self.assertIn("give an address, a network such as 192.0.2.0/24 or 2001:db8::/32,"
                      " or a two-letter country code", str(caught.exception))

    def test_ipv4_mapped_edges(self):
        """An IPv4-mapped entry (RFC 4291 2.5.5.2: 96 bits, then the IPv4
        address) is the IPv4 network of its last prefix bits, and matches
        clients of either form up to its edges and not past them."""
        for entry, network in (("::ffff:0.0.0.0/96", "0.0.0.0/0"),
                               ("::ffff:192.0.2.128/121", "192.0.2.128/25"),
                               ("::ffff:192.0.2.6/127", "192.0.2.6/31"),
                               ("::ffff:192.0.2.7", "192.0.2.7/32")):
            self.assertEqual(str(acl.network(entry)), network, entry)
        guard = self.make().guard
        guard.replace(["::ffff:192.0.2.128/121", "::ffff:198.51.100.7"], [])
        for ip in ("192.0.2.128", "192.0.2.255", "::ffff:192.0.2.128", "::ffff:192.0.2.255",
                   "198.51.100.7", "::ffff:198.51.100.7"):
            self.assertIsNotNone(guard.blocked(ip), ip)
        for ip in ("192.0.2.127", "192.0.3.0", "::ffff:192.0.2.127", "198.51.100.6",
                   "198.51.100.8", "::192.0.2.128", "::ffff:0:c000:280"):
            self.assertIsNone(guard.blocked(ip), ip)
        guard.replace(["::ffff:0.0.0.0/96"], [])
        for ip in ("0.0.0.0", "255.255.255.255", "::ffff:255.255.255.255"):
            self.assertIsNotNone(guard.blocked(ip), ip)
        self.assertIsNone(guard.blocked("::1"))

    def test_replace(self):
        """A new list takes the place of the old one."""
        guard = self.make().guard
        guard.replace(["192.0.2.0/24"], [])
        guard.replace(["198.51.100.0/24"], [])
        self.assertIsNone(guard.blocked("192.0.2.7"))
        self.assertEqual(guard.blocked("198.51.100.7"), ("ip", "198.51.100.0/24"))

    def test_country(self):
        """A country on the list blocks the addresses the City database puts there."""
        path = city_database(Path(self.mktemp()), {
            "203.0.113.0/24": city_record("CN", "China", "AS", "Asia", eu=False),
            "192.0.2.0/24": city_record("FR", "France")})
        reader = geoip.open_database(str(path), "geoip_main_file")
        self.addCleanup(reader.close)
        self.make()
        self.guard.reader = reader
        self.guard.replace([], ["CN"])
        _, transport = self.connect("203.0.113.9")
        self.assertEqual(transport.value(), b"554 5.7.1 <unknown[203.0.113.9]>: Client"
                                            b" host rejected: Access denied\r\n")
        self.assertEqual(self.connect("192.0.2.9")[1].value(), BANNER)
        self.assertEqual(self.guard.take_hits(), {("geo", "CN"): [1, 0]})


class SmartBanTests(GateTestCase):

    def test_connection_flood(self):
        """A client opening more connections than the window allows is
        banned: an event, refused from then on, the ban kept for the database."""
        self.make(protection={"max_connection_rate": 0, "max_connections_per_client": 0},
                  smart_acl={"max_connections": 5, "ban_time": 600})
        for port in range(5):
            self.assertEqual(self.connect(port=port)[1].value(), BANNER)
        _, transport = self.connect(port=6)
        self.assertEqual(transport.value(), b"554 5.7.1 <unknown[192.0.2.7]>: Client"
                                            b" host rejected: Access denied\r\n")
        [ban] = [e for e in self.factory.output.events
                 if e["eventid"] == "smtplatrine.acl.banned"]
        self.assertEqual((ban["network"], ban["seconds"], ban["reason"], ban["src_ip"]),
                         ("192.0.2.7/32", 600, "connection_flood", "192.0.2.7"))
        self.clock.advance(61)
        self.assertNotEqual(self.connect(port=7)[1].value(), BANNER)
        self.assertEqual(self.guard.take_bans(), [acl.Ban(
            network="192.0.2.7/32", seconds=600, reason="connection_flood", time=0)])

    def test_protocol_mismatch(self):
        """Sessions that speak HTTP to the SMTP port get the client banned,
        flagged on the record of the session that tipped it."""
        self.make(smart_acl={"max_mismatches": 2})
        for port in (1, 2):
            protocol, _ = self.connect("2001:db8::5", port)
            protocol.dataReceived(HTTP)
            protocol.connectionLost(None)
        records = [json.loads(p.read_text())
                   for p in (self.factory.spool.root / "sessions").glob("*.json")]
        self.assertEqual(sorted("banned" in r["flags"] for r in records), [False, True])
        self.assertEqual([b.network for b in self.guard.take_bans()],
                         ["2001:db8::/64"])
        self.assertIsNotNone(self.guard.blocked("2001:db8::6"))

    def test_tls_on_plaintext(self):
        """A TLS ClientHello on the plaintext port (no line end: the session
        would only time out) counts as a mismatch when the client gives up."""
        self.make(smart_acl={"max_mismatches": 1})
        protocol, _ = self.connect()
        protocol.dataReceived(bytes.fromhex("160301020001") + bytes(range(0x20, 0x80)))
        protocol.connectionLost(None)
        self.assertEqual([b.reason for b in self.guard.take_bans()],
                         ["protocol_mismatch"])

    def test_mismatch(self):
        """TLS, HTTP and binary starts are mismatches; SMTP, nothing or a
        blank line are not."""
        for first in (b"\x16\x03\x01\x02\x00\x01", b"GET / HTTP/1.1\r\n",
                      b"post /x HTTP/1.0", b"PRI * HTTP/2.0\r\n", b"\x00\x00\x00\x85",
                      b"\x1b[31m"):
            self.assertTrue(acl.mismatch(first, "client"), first)
        self.assertTrue(acl.mismatch(b"\x0cEHLO x\r\n", "client"))
        for first in (b"EHLO client.example\r\n", b"  helo x\r\n", b"", b"\r\n",
                      b"QUIT\r\n", b"\t\r\nNOOP\r\n", b"Q\r\n", b"X-Mailer: x\r\n"):
            self.assertFalse(acl.mismatch(first, "client"), first)
        self.assertTrue(acl.mismatch(b"EHLO x\r\n", "too_many_errors"))

    def test_error_storm(self):
        """A session closed for too many errors counts as a mismatch."""
        self.make(smart_acl={"max_mismatches": 1}, smtp={"error_sleep_time": 0})
        protocol, transport = self.connect()
        protocol.dataReceived(b"FOO\r\n" * 20)
        self.assertIn(b"421 4.7.0 mail.example.com Error: too many errors",
                      transport.value())
        protocol.connectionLost(None)
        self.assertEqual([b.reason for b in self.guard.take_bans()],
                         ["protocol_mismatch"])

    def test_message_flood(self):
        """More messages in the window than max_messages is a ban."""
        guard = self.make(smart_acl={"max_messages": 10}).guard
        self.assertIsNone(guard.admit("192.0.2.7"))
        self.assertIsNone(guard.closed("192.0.2.7", messages=10))
        self.assertIsNone(guard.admit("192.0.2.7"))
        self.assertEqual(guard.closed("192.0.2.7", messages=1).reason, "message_flood")

    def test_floods_counted_per_client(self):
        """Messages and mismatches count per client: clients each under
        the limits are not banned however many they are, and a plain
        session counts as neither; a ban bears the time it was made."""
        guard = self.make(smart_acl={"max_messages": 10, "max_mismatches": 2}).guard
        self.clock.advance(100)
        for n in range(5):
            ip = f"192.0.2.{n}"
            self.assertIsNone(guard.admit(ip))
            self.assertIsNone(guard.closed(ip, messages=10, mismatch=True))
            for _ in range(3):
                self.assertIsNone(guard.admit(ip))
                self.assertIsNone(guard.closed(ip))
        self.assertIsNone(guard.admit("192.0.2.0"))
        ban = guard.closed("192.0.2.0", messages=1)
        self.assertEqual((ban.reason, ban.network, ban.time), ("message_flood", "192.0.2.0/32", 100))

    def test_disabled(self):
        """With smart ACLs off nobody is banned."""
        guard = self.make(smart_acl={"enabled": False, "max_mismatches": 1}).guard
        self.assertIsNone(guard.admit("192.0.2.7"))
        self.assertIsNone(guard.closed("192.0.2.7", mismatch=True))
        self.assertEqual(guard.take_bans(), [])

    def test_restore(self):
        """Hits and bans whose write failed are kept for the next sync."""
        guard = self.make(smart_acl={"max_mismatches": 1}).guard
        guard.replace(["198.51.100.0/24"], [])
        guard.admit("198.51.100.1")
        guard.admit("192.0.2.7")
        guard.closed("192.0.2.7", mismatch=True)
        hits, bans = guard.take_hits(), guard.take_bans()
        guard.restore(hits, bans)
        guard.replace([], [])
        self.assertEqual(guard.blocked("192.0.2.7"), ("ip", "192.0.2.7/32"))
        self.assertEqual((guard.take_hits(), guard.take_bans()), (hits, bans))

    def test_restore_beside_newer(self):
        """Restored hits add to those counted since, and restored bans come
        before the bans made since, none lost."""
        guard = self.make(smart_acl={"max_mismatches": 1}).guard
        guard.replace(["198.51.100.0/24"], [])
        self.clock.advance(10)
        guard.admit("198.51.100.1")
        guard.admit("192.0.2.7")
        guard.closed("192.0.2.7", mismatch=True)
        hits, bans = guard.take_hits(), guard.take_bans()
        self.clock.advance(5)
        guard.admit("198.51.100.2")
        guard.admit("192.0.2.8")
        guard.closed("192.0.2.8", mismatch=True)
        guard.restore(hits, bans)
        self.assertEqual(guard.take_hits(), {("ip", "198.51.100.0/24"): [2, 15]})
        self.assertEqual([ban.network for ban in guard.take_bans()],
                         ["192.0.2.7/32", "192.0.2.8/32"])
