"""The outputs shipped, each delivering to a receiver of its protocol on
loopback (tests/receivers.py), also after the receiver was down."""

import json
import os
import re
from pathlib import Path

import attrs
from twisted.internet import defer, reactor
from twisted.trial import unittest
from zope.interface.verify import verifyObject

from smtplatrine import config, tls
from smtplatrine.interfaces import IEventOutput, OutputContext
from smtplatrine.outputs.elasticsearch import Elasticsearch
from smtplatrine.outputs.hpfeeds import HPFeeds
from smtplatrine.outputs.jsonlines import JSONLines
from smtplatrine.outputs import service
from smtplatrine.outputs.service import Runner, discover
from smtplatrine.outputs.splunk import Splunk
from smtplatrine.outputs.syslog import Syslog
from smtplatrine.testing import logged
from tests.readme import install_example
from tests.receivers import (RFC5424, BulkAPI, Broker, EventCollector,
                             SyslogCollector, WebHook, read_datagrams, udp_collector,
                             unix_collector, until)

IDENTITY = {"session": "5b0c", "sensor": "sensor-a", "src_ip": "192.0.2.1",
            "src_port": 40000, "dst_ip": "198.51.100.2", "dst_port": 25}


def event(n=0, eventid="smtplatrine.rcpt", **fields):
    return dict(IDENTITY, eventid=eventid, timestamp="2026-11-28T00:33:20.000000Z",
                rcpt=f"user{n}@example.net", **fields)


class OutputTestCase(unittest.TestCase):

    def output(self, plugin, **options):
        """*plugin* configured with *options*, and a runner that retries
        after 0.2 s at most; both closed after the test."""
        options = attrs.evolve(plugin.options(), enabled=True, **options)
        tmp = Path(self.mktemp())
        tmp.mkdir()
        output = plugin.configure(OutputContext(options, reactor, "sensor-a", tmp))
        self.assertTrue(verifyObject(IEventOutput, output))
        runner = Runner(plugin.name, output, reactor, 1000, 0.2)
        self.addCleanup(lambda: defer.Deferred.fromCoroutine(runner.close(1)))
        return output, runner


class DiscoveryTests(unittest.TestCase):

    def test_built_in(self):
        """getPlugins finds the five outputs shipped, each an IEventOutput."""
        plugins = {p.name: p for p in discover()}
        for name in ("elasticsearch", "hpfeeds", "jsonlines", "splunk", "syslog"):
            self.assertTrue(verifyObject(IEventOutput, plugins[name]))


class JSONLinesTests(OutputTestCase):

    def test_created_at_start(self):
        """The file exists, empty, as soon as the output is configured."""
        output, _ = self.output(JSONLines(), path="log/events.jsonl")
        path = Path(os.readlink(f"/proc/self/fd/{output.fd}"))
        self.assertEqual((path.name, path.parent.name, path.read_bytes()),
                         ("events.jsonl", "log", b""))

    @defer.inlineCallbacks
    def test_format(self):
        """One JSON object a line, keys sorted, ASCII only, as always."""
        output, runner = self.output(JSONLines())
        runner.write(event(rcpt_text="caf\u00e9\\x1b"))
        path = Path(os.readlink(f"/proc/self/fd/{output.fd}"))
        yield defer.Deferred.fromCoroutine(until(lambda: path.read_bytes()))
        self.assertEqual(path.read_bytes(), (
            b'{"dst_ip": "198.51.100.2", "dst_port": 25, "eventid": "smtplatrine.rcpt",'
            b' "rcpt": "user0@example.net", "rcpt_text": "caf\\u00e9\\\\x1b",'
            b' "sensor": "sensor-a", "session": "5b0c", "src_ip": "192.0.2.1",'
            b' "src_port": 40000, "timestamp": "2026-11-28T00:33:20.000000Z"}\n'))

    @defer.inlineCallbacks
    def test_write_failing_midway_retried_whole(self):
        """A batch whose write fails after part of it went out (the disk
        filled) is retried with not one line doubled or cut."""
        output, runner = self.output(JSONLines())
        real, calls = os.write, []

        def write(fd, data):
            calls.append(len(data))
            if len(calls) == 1:
                return real(fd, data[:len(data) // 2 + 3])
            if len(calls) == 2:
                raise OSError(28, "No space left on device")
            return real(fd, data)
        self.patch(os, "write", write)
        runner.write(event(1))
        runner.write(event(2))
        path = Path(os.readlink(f"/proc/self/fd/{output.fd}"))
        yield defer.Deferred.fromCoroutine(until(lambda: len(calls) > 2))
        self.assertEqual([json.loads(line)["rcpt"] for line in path.read_text().splitlines()],
                         ["user1@example.net", "user2@example.net"])

    @defer.inlineCallbacks
    def test_tpot_names(self):
        """With field_names = tpot the server's end is dest_ip, dest_port."""
        output, runner = self.output(JSONLines(), field_names="tpot")
        runner.write(event())
        path = Path(os.readlink(f"/proc/self/fd/{output.fd}"))
        yield defer.Deferred.fromCoroutine(until(lambda: path.read_bytes()))
        line = json.loads(path.read_text())
        self.assertEqual({k: line.get(k) for k in ("timestamp", "src_ip", "src_port",
                                                    "dest_ip", "dest_port", "dst_ip")},
                         {"timestamp": "2026-11-28T00:33:20.000000Z", "src_ip": "192.0.2.1",
                          "src_port": 40000, "dest_ip": "198.51.100.2", "dest_port": 25,
                          "dst_ip": None})


class SyslogTests(OutputTestCase):

    @defer.inlineCallbacks
    def test_local_socket(self):
        """To the local socket in syslog(3)'s form: <PRI>Mmm dd hh:mm:ss
        TAG[PID]: and the JSON; local0.info is 16 * 8 + 6 = 134."""
        path = Path(self.mktemp())
        sock = unix_collector(path)
        self.addCleanup(sock.close)
        _, runner = self.output(Syslog(), address=str(path))
        runner.write(event(eventid="smtplatrine.session.connect"))
        found = []
        yield defer.Deferred.fromCoroutine(until(lambda: found.extend(read_datagrams(sock))
                                                 or found))
        match = re.fullmatch(rb"<134>[A-Z][a-z]{2} [ 1-3][0-9] \d\d:\d\d:\d\d"
                             rb" smtplatrine\[(\d+)\]: (\{.*\})", found[0])
        self.assertEqual(int(match[1]), os.getpid())
        self.assertEqual(json.loads(match[2]), event(eventid="smtplatrine.session.connect"))

    @defer.inlineCallbacks
    def test_udp_rfc5424(self):
        """Over UDP, one RFC 5424 message a datagram: local3 and the
        event's level (warn: 4) make 19 * 8 + 4 = 156; the host is the
        sensor, the MSGID the event id, the message the JSON."""
        port, messages = udp_collector()
        self.addCleanup(port.stopListening)
        _, runner = self.output(Syslog(), transport="udp", facility="local3",
                                address=f"127.0.0.1:{port.getHost().port}")
        banned = event(eventid="smtplatrine.acl.banned")
        runner.write(banned)
        yield defer.Deferred.fromCoroutine(until(lambda: messages))
        match = RFC5424.fullmatch(messages[0])
        self.assertEqual(
            (match["pri"], match["timestamp"], match["hostname"], match["app"],
             match["procid"], match["msgid"], match["sd"]),
            (b"156", b"2026-11-28T00:33:20.000000Z", b"sensor-a", b"smtplatrine",
             str(os.getpid()).encode(), b"smtplatrine.acl.banned", b"-"))
        self.assertEqual(json.loads(match["msg"]), banned)

    @defer.inlineCallbacks
    def test_tcp_down_and_back(self):
        """Over TCP (octet counting), events written while the collector
        is down arrive once it is back, in order, each once."""
        collector = SyslogCollector().up()
        self.addCleanup(lambda: collector.down())
        _, runner = self.output(Syslog(), transport="tcp",
                                address=f"127.0.0.1:{collector.number}")
        runner.write(event(0))
        yield defer.Deferred.fromCoroutine(until(lambda: collector.messages))
        yield defer.Deferred.fromCoroutine(collector.down())
        for n in range(1, 4):
            runner.write(event(n))
        yield defer.Deferred.fromCoroutine(until(lambda: not runner.up))
        collector.up()
        yield defer.Deferred.fromCoroutine(until(lambda: len(collector.messages) >= 4))
        self.assertEqual([json.loads(RFC5424.fullmatch(m)["msg"])["rcpt"]
                          for m in collector.messages],
                         [f"user{n}@example.net" for n in range(4)])

    def tls_collector(self, hostname):
        directory = Path(self.mktemp())
        cert, key = tls.self_signed(hostname, directory)
        collector = SyslogCollector(tls.context_factory(cert, key)).up()
        self.addCleanup(lambda: collector.down())
        return collector, cert

    @defer.inlineCallbacks
    def test_tls(self):
        """Over TLS (RFC 5425), to a collector whose certificate the
        configured CA file vouches for."""
        collector, cert = self.tls_collector("localhost")
        _, runner = self.output(Syslog(), transport="tls", ca_file=str(cert),
                                address=f"localhost:{collector.number}")
        runner.write(event())
        yield defer.Deferred.fromCoroutine(until(lambda: collector.messages))
        self.assertEqual(json.loads(RFC5424.fullmatch(collector.messages[0])["msg"]),
                         event())

    @defer.inlineCallbacks
    def test_tls_untrusted(self):
        """A collector whose certificate is not the CA file's gets nothing;
        the failure is said once."""
        collector, _ = self.tls_collector("localhost")
        other, _ = tls.self_signed("localhost", Path(self.mktemp()))
        seen = logged(self)
        _, runner = self.output(Syslog(), transport="tls", ca_file=str(other),
                                address=f"localhost:{collector.number}")
        runner.write(event())
        yield defer.Deferred.fromCoroutine(until(lambda: not runner.up))
        self.assertEqual(collector.messages, [])
        [warning] = [e for e in seen if "cannot deliver" in e.get("log_format", "")]
        self.assertIn("certificate verify failed", warning["error"])


class HPFeedsTests(OutputTestCase):

    @defer.inlineCallbacks
    def test_published_down_and_back(self):
        """Each event is one publish of its JSON to the channel; those
        written while the broker is down are published once it is back."""
        broker = Broker({"sensor-a": b"s3cret"}).up()
        self.addCleanup(lambda: broker.down())
        _, runner = self.output(HPFeeds(), address=f"127.0.0.1:{broker.number}",
                                ident="sensor-a", secret="s3cret", channel="smtp.events")
        runner.write(event(0))
        runner.write(event(1))
        yield defer.Deferred.fromCoroutine(until(lambda: len(broker.published) == 2))
        yield defer.Deferred.fromCoroutine(broker.down())
        runner.write(event(2))
        yield defer.Deferred.fromCoroutine(until(lambda: not runner.up))
        broker.up()
        yield defer.Deferred.fromCoroutine(until(lambda: len(broker.published) == 3))
        self.assertEqual(broker.published, [("smtp.events", event(n)) for n in range(3)])

    @defer.inlineCallbacks
    def test_wrong_secret(self):
        """A broker that refuses the ident publishes nothing, and what it
        said is in the warning."""
        broker = Broker({"sensor-a": b"right"}).up()
        self.addCleanup(lambda: broker.down())
        seen = logged(self)
        _, runner = self.output(HPFeeds(), address=f"127.0.0.1:{broker.number}",
                                ident="sensor-a", secret="wrong")
        runner.write(event(0))
        yield defer.Deferred.fromCoroutine(until(lambda: broker.errors))
        runner.write(event(1))
        yield defer.Deferred.fromCoroutine(until(lambda: not runner.up))
        self.assertEqual(broker.published, [])
        [warning] = [e for e in seen if "cannot deliver" in e.get("log_format", "")]
        self.assertIn("accessfail", warning["error"])


class ElasticsearchTests(OutputTestCase):

    def bulk(self, **options):
        api = BulkAPI().up()
        self.addCleanup(lambda: api.down())
        output, runner = self.output(Elasticsearch(), url=f"http://127.0.0.1:{api.number}",
                                     flush_interval=0.1, **options)
        return api, runner

    @defer.inlineCallbacks
    def test_batched_with_basic_auth(self):
        """Seven events in batches of five: two bulk requests with basic
        auth, documents in the index of their date, with @timestamp."""
        api, runner = self.bulk(batch_size=5, username="elastic", password="changeme")
        for n in range(7):
            runner.write(event(n))
        yield defer.Deferred.fromCoroutine(until(lambda: len(api.documents) == 7))
        # printf elastic:changeme | base64
        self.assertEqual([(path, auth) for path, auth, _ in api.resource.requests],
                         [(b"/_bulk", "Basic ZWxhc3RpYzpjaGFuZ2VtZQ==")] * 2)
        self.assertEqual({index for index, _ in api.documents}, {"smtplatrine-2026.11.28"})
        self.assertEqual(sorted(d["rcpt"] for d in api.documents.values()),
                         [f"user{n}@example.net" for n in range(7)])
        self.assertEqual({d["@timestamp"] for d in api.documents.values()},
                         {"2026-11-28T00:33:20.000000Z"})

    @defer.inlineCallbacks
    def test_partial_refusal_retried_without_duplicates(self):
        """Documents refused with 429 are sent again; those already taken
        answer 409 then, so each is indexed once; a 400 one is refused."""
        api, runner = self.bulk(api_key="aWQ6a2V5", index="honey-%Y")
        api.statuses = [201, 429]
        api.conflicts = {"user2@example.net"}
        for n in range(4):
            runner.write(event(n))
        yield defer.Deferred.fromCoroutine(until(lambda: len(api.documents) == 3))
        yield defer.Deferred.fromCoroutine(until(lambda: runner.queued == 0))
        self.assertEqual(len(api.resource.requests), 2)
        self.assertEqual(api.resource.requests[0][1], "ApiKey aWQ6a2V5")
        self.assertEqual(sorted(d["rcpt"] for d in api.documents.values()),
                         ["user0@example.net", "user1@example.net", "user3@example.net"])
        self.assertEqual((runner.delivered, runner.refused), (3, 1))
        self.assertEqual({index for index, _ in api.documents}, {"honey-2026"})

    @defer.inlineCallbacks
    def test_down_and_back(self):
        """Events written while Elasticsearch is down are indexed once it
        is back."""
        api, runner = self.bulk()
        yield defer.Deferred.fromCoroutine(api.down())
        runner.write(event(0))
        yield defer.Deferred.fromCoroutine(until(lambda: not runner.up))
        api.up()
        yield defer.Deferred.fromCoroutine(until(lambda: len(api.documents) == 1))
        self.assertTrue(runner.up)


class SplunkTests(OutputTestCase):

    def hec(self, token="11111111-2222-3333-4444-555555555555", **options):
        collector = EventCollector("11111111-2222-3333-4444-555555555555").up()
        self.addCleanup(lambda: collector.down())
        _, runner = self.output(Splunk(), url=f"http://127.0.0.1:{collector.number}",
                                token=token, flush_interval=0.1, **options)
        return collector, runner

    @defer.inlineCallbacks
    def test_batched(self):
        """Events go in batches, each as an HEC event object: its time in
        epoch seconds, the sensor as host, source, sourcetype, index."""
        collector, runner = self.hec(batch_size=2, index="honeypot")
        for n in range(3):
            runner.write(event(n))
        yield defer.Deferred.fromCoroutine(until(lambda: len(collector.events) == 3))
        self.assertEqual(len(collector.resource.requests), 2)
        # date -u -d 2026-11-28T00:33:20 +%s
        self.assertEqual(collector.events[0], {
            "time": 1795826000, "host": "sensor-a", "source": "smtplatrine",
            "sourcetype": "_json", "index": "honeypot", "event": event(0)})

    @defer.inlineCallbacks
    def test_bad_token_retried(self):
        """A refused token fails the batch (said once); it is retried."""
        seen = logged(self)
        collector, runner = self.hec(token="wrong")
        runner.write(event())
        yield defer.Deferred.fromCoroutine(until(lambda: len(collector.resource.requests) >= 2))
        self.assertEqual(collector.events, [])
        [warning] = [e for e in seen if "cannot deliver" in e.get("log_format", "")]
        self.assertIn("HTTP 403", warning["error"])

    @defer.inlineCallbacks
    def test_down_and_back(self):
        """Events written while the collector is down arrive once it is back."""
        collector, runner = self.hec()
        yield defer.Deferred.fromCoroutine(collector.down())
        runner.write(event(0))
        runner.write(event(1))
        yield defer.Deferred.fromCoroutine(until(lambda: not runner.up))
        collector.up()
        yield defer.Deferred.fromCoroutine(until(lambda: len(collector.events) == 2))
        self.assertEqual([e["event"] for e in collector.events], [event(0), event(1)])




class ThirdPartyTests(unittest.TestCase):

    @defer.inlineCallbacks
    def test_readme_example(self):
        """The guide's example output, dropped into a twisted/plugins
        directory on the path, is found, configured from its section and
        posts a line for each stored message to a webhook on loopback."""
        install_example(self, "chat.py")
        hook = WebHook().up()
        self.addCleanup(lambda: hook.down())
        directory = Path(self.mktemp())
        directory.mkdir()
        (directory / "outputs.ini").write_text(
            f"[output_chat]\nenabled = true\nurl = http://127.0.0.1:{hook.number}/hooks/x\n"
            f"channel = honeypot\n[output_jsonlines]\nenabled = false\n")
        (directory / "zz.ini").write_text("[output_chat]\nenabled = true\nurl =\n")
        with self.assertRaises(config.ConfigError) as caught:
            config.load(directory)
        self.assertEqual(str(caught.exception), "zz.ini [output_chat] url: required when"
                         " enabled = true; expected the webhook's URL")
        (directory / "zz.ini").unlink()
        loaded = attrs.evolve(config.load(directory), server=attrs.evolve(
            config.Config().server, data_dir=str(directory)))
        outputs = service.configure(discover(), loaded, reactor)
        self.assertEqual([r.name for r in outputs.runners], ["chat"])
        for stored in (event(eventid="smtplatrine.message.stored", message="m-1", size=812,
                             attachments=2), event(0)):
            outputs.write(stored)
        yield outputs.close(5)
        [(path, _, body)] = hook.resource.requests
        self.assertEqual((path, json.loads(body)), (b"/hooks/x", {
            "channel": "honeypot",
            "text": "sensor-a: message m-1 from 192.0.2.1, 812 bytes, 2 attachment(s)"}))
