"""End to end: ``twistd -n smtplatrine`` on loopback, real clients over TCP."""

import hashlib
import hmac
import os
import pwd
import shutil
import smtplib
import socket
import ssl
import subprocess
import time
from pathlib import Path

from twisted.trial import unittest

from tests.process import (TWISTD, Honeypot, children, environment, require_root,
                           reachable_directory, require, run_twistd, write_config)

MESSAGE = (b"From: Alice <alice@example.org>\r\nTo: bob@example.net\r\n"
           b"Subject: hello\r\n\r\nFirst line.\r\n.dotted line\r\n..two dots\r\n")


def tls_context():
    context = ssl.create_default_context()
    context.check_hostname = False
    context.verify_mode = ssl.CERT_NONE
    return context


def read_until(sock, marker, received=b""):
    """Read from *sock* until what came after *received* holds *marker* and
    ends a line; all of it, *received* first."""
    while not (marker in received and received.endswith(b"\r\n")):
        chunk = sock.recv(65536)
        if not chunk:
            break
        received += chunk
    return received


def talk(port, data, read_until=b"", timeout=10):
    """Send *data* on a raw socket after the banner; return all replies."""
    with socket.create_connection(("127.0.0.1", port), timeout) as s:
        s.recv(1000)
        s.sendall(data)
        received = b""
        deadline = time.monotonic() + timeout
        while read_until not in received or not received.endswith(b"\r\n"):
            if time.monotonic() > deadline:
                break
            chunk = s.recv(65536)
            if not chunk:
                break
            received += chunk
        return received


class HoneypotTestCase(unittest.TestCase):
    sections = {}

    def setUp(self):
        self.honeypot = Honeypot(**self.sections)
        # Cleanups run last first: the log is read before twistd stops.
        self.addCleanup(self.honeypot.stop)
        self.addCleanup(self.assertNoTraceback)

    def assertNoTraceback(self):
        output = self.honeypot.output()
        self.assertIn("listening on tcp:", output)
        self.assertNotIn("Traceback", output)

    def smtp(self):
        client = smtplib.SMTP("127.0.0.1", self.honeypot.port, timeout=10)
        self.addCleanup(client.close)
        return client


class SMTPLibTests(HoneypotTestCase):

    def test_messages_spooled_byte_exact(self):
        """Two messages with several recipients in one session are spooled exactly."""
        client = self.smtp()
        client.ehlo("client.example.org")
        refused = client.sendmail("alice@example.org",
                                  ["bob@example.net", "carol@example.com"], MESSAGE)
        self.assertEqual(refused, {})
        client.sendmail("<>", ["dave@example.net"], b"Subject: two\r\n\r\nx\r\n")
        client.quit()
        first, second = self.honeypot.messages()
        self.assertEqual(first[1], MESSAGE)
        self.assertEqual(first[0]["sha256"], hashlib.sha256(MESSAGE).hexdigest())
        self.assertEqual(first[0]["rcpts"], ["bob@example.net", "carol@example.com"])
        self.assertEqual((second[0]["mail_from"], second[1]), ("", b"Subject: two\r\n\r\nx\r\n"))
        [record] = self.honeypot.wait_for(self.honeypot.sessions)
        self.assertEqual(record["helo"], "client.example.org")
        self.assertEqual(record["src_ip"], "127.0.0.1")
        self.assertEqual(record["messages"], 2)

    def test_queue_id_matches_spool(self):
        """The id in the 250 reply names the spooled message."""
        client = self.smtp()
        client.ehlo()
        client.mail("a@example.org")
        client.rcpt("b@example.net")
        code, text = client.data(MESSAGE)
        self.assertEqual(code, 250)
        [(meta, _)] = self.honeypot.messages()
        self.assertEqual(text, b"2.0.0 Ok: queued as " + meta["queue_id"].encode())
        self.assertTrue(meta["message"].replace("-", "").upper().startswith(meta["queue_id"]))

    def test_starttls(self):
        """STARTTLS works, the message is captured and TLS details recorded."""
        client = self.smtp()
        client.ehlo()
        self.assertTrue(client.has_extn("starttls"))
        client.starttls(context=tls_context())
        client.ehlo()
        client.sendmail("a@example.org", ["b@example.net"], MESSAGE)
        client.quit()
        [(meta, raw)] = self.honeypot.messages()
        self.assertEqual(raw, MESSAGE)
        self.assertEqual(meta["tls"]["implicit"], False)
        self.assertTrue(meta["tls"]["version"].startswith("TLSv1."))
        [record] = self.honeypot.wait_for(self.honeypot.sessions)
        self.assertTrue(record["tls"]["cipher"])

    def test_implicit_tls(self):
        """SMTPS on the ssl: port shows the banner inside TLS and captures mail."""
        client = smtplib.SMTP_SSL("127.0.0.1", self.honeypot.tls_port, timeout=10,
                                  context=tls_context())
        self.addCleanup(client.close)
        code, keywords = client.ehlo()
        self.assertEqual(code, 250)
        self.assertNotIn(b"STARTTLS", keywords)
        client.sendmail("a@example.org", ["b@example.net"], MESSAGE)
        client.quit()
        [(meta, raw)] = self.honeypot.messages()
        self.assertEqual(raw, MESSAGE)
        self.assertEqual(meta["tls"]["implicit"], True)

    def test_certificate_kept(self):
        """The self-signed certificate is made for the host name and kept."""
        with socket.create_connection(("127.0.0.1", self.honeypot.tls_port)) as raw:
            with tls_context().wrap_socket(raw) as s:
                der = s.getpeercert(binary_form=True)
        pem = (self.honeypot.data / "tls" / "server.crt").read_text()
        self.assertEqual(ssl.DER_cert_to_PEM_cert(der).strip(), pem.strip())
        out = subprocess.run(["openssl", "x509", "-noout", "-subject"], input=pem.encode(),
                             capture_output=True).stdout
        self.assertIn(b"CN = mail.example.com", out)

class ConfiguredCertificateTests(HoneypotTestCase):

    def setUp(self):
        directory = reachable_directory()
        self.addCleanup(shutil.rmtree, directory, ignore_errors=True)
        self.cert, key = directory / "mx.crt", directory / "mx.key"
        subprocess.run(["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes",
                        "-subj", "/CN=mx.example.net", "-days", "2", "-keyout", str(key),
                        "-out", str(self.cert)], check=True, capture_output=True)
        self.sections = {"server": {"tls_certificate": self.cert,
                                    "tls_private_key": key}}
        super().setUp()

    def test_configured_certificate_served(self):
        """STARTTLS and SMTPS both present the configured certificate."""
        with socket.create_connection(("127.0.0.1", self.honeypot.tls_port)) as raw:
            with tls_context().wrap_socket(raw) as s:
                implicit = s.getpeercert(binary_form=True)
        client = self.smtp()
        client.starttls(context=tls_context())
        starttls = client.sock.getpeercert(binary_form=True)
        expected = ssl.PEM_cert_to_DER_cert(self.cert.read_text())
        self.assertEqual((implicit, starttls), (expected, expected))
        self.assertFalse((self.honeypot.data / "tls").exists())


class AuthMechanismTests(HoneypotTestCase):
    """Every mechanism offered, CRAM-MD5 too (not by default)."""

    sections = {"smtp_features": {"auth_mechanisms": "PLAIN LOGIN CRAM-MD5"}}

    def test_auth_mechanisms(self):
        """PLAIN, LOGIN and CRAM-MD5 attempts are all refused and recorded."""
        for mechanism in ("PLAIN", "LOGIN", "CRAM-MD5"):
            client = self.smtp()
            client.ehlo()
            client.user, client.password = f"user-{mechanism}", "s3cret"
            with self.assertRaises(smtplib.SMTPAuthenticationError) as caught:
                client.auth(mechanism, getattr(client, "auth_" + mechanism.lower()
                                               .replace("-", "_")))
            self.assertEqual(caught.exception.smtp_code, 535)
            client.quit()
        records = self.honeypot.wait_for(lambda: len(self.honeypot.sessions()) == 3
                                         and self.honeypot.sessions())
        attempts = {r["auth"][0]["mechanism"]: r["auth"][0] for r in records}
        self.assertEqual({m: a["accepted"] for m, a in attempts.items()},
                         {"PLAIN": 0, "LOGIN": 0, "CRAM-MD5": 0})
        self.assertEqual(attempts["PLAIN"]["password"], "s3cret")
        self.assertEqual(attempts["LOGIN"]["username"], "user-LOGIN")
        cram = attempts["CRAM-MD5"]
        # RFC 2195: the response is HMAC-MD5 of the challenge, keyed with the password.
        self.assertEqual(cram["response"], hmac.new(
            b"s3cret", cram["challenge"].encode(), "md5").hexdigest())



class NoOutputsTests(HoneypotTestCase):
    sections = {"logger": {"file": ""}, "output_jsonlines": {"enabled": "false"}}

    def test_capture_without_outputs(self):
        """With the human log file and the event file off, mail is still captured."""
        client = self.smtp()
        client.sendmail("a@example.org", ["b@example.net"], MESSAGE)
        client.quit()
        [(_, raw)] = self.honeypot.messages()
        self.assertEqual(raw, MESSAGE)
        self.assertFalse((self.honeypot.data / "events.jsonl").exists())


class AcceptingAuthTests(HoneypotTestCase):
    sections = {"smtp": {"smtp_auth_accept": "true"}}

    def test_login_accepted(self):
        """With smtp_auth_accept, smtplib's login succeeds, mail is captured
        and the attempt is stored as accepted."""
        client = self.smtp()
        client.login("admin", "admin")
        client.sendmail("a@example.org", ["b@example.net"], MESSAGE)
        client.quit()
        self.assertEqual(len(self.honeypot.messages()), 1)
        [record] = self.honeypot.wait_for(self.honeypot.sessions)
        self.assertEqual([(a["username"], a["accepted"]) for a in record["auth"]],
                         [("admin", 1)])


class RawSocketTests(HoneypotTestCase):

    def test_pipelined_batch(self):
        """A batch in one segment is answered in order, message included."""
        replies = talk(self.honeypot.port, b"EHLO x\r\n")
        self.assertIn(b"250 CHUNKING", replies)
        with socket.create_connection(("127.0.0.1", self.honeypot.port), 10) as s:
            read_until(s, b"220 ")
            s.sendall(b"EHLO x\r\n")
            read_until(s, b"250 CHUNKING\r\n")
            s.sendall(b"MAIL FROM:<a@b>\r\nRCPT TO:<c@d>\r\nRCPT TO:<e@f>\r\nDATA\r\n")
            # RFC 2920: the message follows once DATA has its 354.
            received = read_until(s, b"354 ")
            s.sendall(b"Subject: p\r\n\r\nbody\r\n.\r\nNOOP\r\nQUIT\r\n")
            received = read_until(s, b"221 2.0.0 Bye\r\n", received)
        self.assertRegex(received, rb"\A250 2\.1\.0 Ok\r\n250 2\.1\.5 Ok\r\n250 2\.1\.5 Ok\r\n"
                                   rb"354 [^\r]+\r\n250 2\.0\.0 Ok: queued as \w+\r\n"
                                   rb"250 2\.0\.0 Ok\r\n221 2\.0\.0 Bye\r\n\Z")

    def test_bdat(self):
        """BDAT chunks and BDAT LAST over a raw socket are spooled exactly."""
        replies = talk(self.honeypot.port,
                       b"EHLO x\r\nMAIL FROM:<a@b>\r\nRCPT TO:<c@d>\r\n"
                       b"BDAT 7\r\nSubject" + b"BDAT 9 LAST\r\n: x\r\n\r\nhi" + b"QUIT\r\n",
                       read_until=b"221")
        # Postfix counts the unfinished last line with a CRLF (probe bdat_line_ends).
        self.assertIn(b"250 2.0.0 Ok: 7 bytes\r\n250 2.0.0 Ok: 18 bytes queued as", replies)
        [(meta, raw)] = self.honeypot.messages()
        self.assertEqual(raw, b"Subject: x\r\n\r\nhi")
        self.assertEqual(meta["transport"], "BDAT")


class SwaksTests(HoneypotTestCase):

    def swaks(self, *args):
        require("swaks")
        result = subprocess.run(
            ["swaks", "--server", f"127.0.0.1:{self.honeypot.port}", "--to",
             "victim@example.net", "--from", "spammer@example.org", "--helo",
             "bot.example.com", *args], capture_output=True, timeout=60)
        return result.returncode, result.stdout.decode(errors="replace")

    def test_swaks_plain(self):
        """swaks delivers and prints Postfix's replies."""
        code, out = self.swaks()
        self.assertEqual(code, 0, out)
        self.assertIn("<-  220 mail.example.com ESMTP Postfix (Debian/GNU)", out)
        self.assertRegex(out, r"<-  250 2\.0\.0 Ok: queued as [0-9A-F]{11}")
        [(meta, raw)] = self.honeypot.messages()
        self.assertIn(b"To: victim@example.net", raw)

    def test_swaks_tls_and_auth(self):
        """swaks with STARTTLS and AUTH LOGIN: refused, and the attempt kept."""
        code, out = self.swaks("--tls", "--auth", "LOGIN", "--auth-user", "root",
                               "--auth-password", "toor")
        self.assertIn("<-  220 2.0.0 Ready to start TLS", out)
        self.assertIn("<~* 535 5.7.8 Error: authentication failed", out)
        [record] = self.honeypot.wait_for(self.honeypot.sessions)
        self.assertEqual((record["auth"][0]["username"], record["auth"][0]["password"]),
                         ("root", "toor"))
        self.assertEqual(record["tls"]["implicit"], False)


class NmapTests(HoneypotTestCase):

    def nmap(self, *args):
        require("nmap")
        result = subprocess.run(["nmap", "-Pn", "-n", "-p", str(self.honeypot.port),
                                 *args, "127.0.0.1"], capture_output=True, timeout=300)
        return result.stdout.decode(errors="replace")

    def test_version_detection(self):
        """nmap -sV says Postfix smtpd."""
        out = self.nmap("-sV")
        self.assertRegex(out, rf"{self.honeypot.port}/tcp\s+open\s+smtp\s+Postfix smtpd")

    def test_open_relay(self):
        """nmap's smtp-open-relay passes all 16 tests; smtp-commands sees every keyword."""
        out = self.nmap("-sV", "--script", "smtp-commands,smtp-open-relay")
        self.assertIn("Server is an open relay (16/16 tests)", out)
        self.assertIn("PIPELINING, SIZE 10240000, VRFY, ETRN, STARTTLS, AUTH PLAIN LOGIN,"
                      " ENHANCEDSTATUSCODES, 8BITMIME, DSN, SMTPUTF8, CHUNKING",
                      out)


class NeverRelaysTests(HoneypotTestCase):

    def test_no_outbound_connection(self):
        """Accepting mail for a remote domain opens no connection anywhere."""
        client = self.smtp()
        client.sendmail("a@example.org", ["relay@[127.0.0.1]", "x@example.net"], MESSAGE)
        client.quit()
        # Once the message and the session are stored, everything they
        # set off has run (enrichment is off).
        self.assertEqual(len(self.honeypot.messages()), 1)
        self.honeypot.wait_for(self.honeypot.sessions)
        pids, found = set(), [self.honeypot.process.pid]
        while found:  # the server, the disk worker and the storing processes
            pids.update(found)
            found = [child for pid in found for child in children(pid)]
        out = subprocess.run(["ss", "-tnpH"], capture_output=True).stdout.decode()
        mine = [line for line in out.splitlines()
                if any(f"pid={pid}," in line for pid in pids)]
        listening = {self.honeypot.port, self.honeypot.tls_port}
        for line in mine:
            local_port = int(line.split()[3].rsplit(":", 1)[1])
            self.assertIn(local_port, listening, line)


class StartupTests(unittest.TestCase):

    def test_port_in_use(self):
        """A port in use stops start-up with one clear line."""
        with socket.socket() as taken:
            taken.bind(("127.0.0.1", 0))
            taken.listen()
            port = taken.getsockname()[1]
            code, out = run_twistd(
                "smtplatrine", "--config", self.config_dir({}),
                "--listen", f"tcp:{port}:interface=127.0.0.1", cwd=self.mktemp_dir())
        self.assertNotEqual(code, 0)
        self.assertIn(f"smtplatrine: cannot listen on tcp:{port}:interface=127.0.0.1:"
                      " the address is already in use", out)
        self.assertNotIn("Traceback", out)

    def test_bad_config_value(self):
        """A bad value names file, section, key and what is allowed."""
        code, out = run_twistd(
            "smtplatrine", "--config", self.config_dir({"smtp": {"timeout": "soon"}}),
            cwd=self.mktemp_dir())
        self.assertNotEqual(code, 0)
        self.assertIn("test.ini [smtp] timeout = 'soon': expected a number > 0", out)
        self.assertNotIn("Traceback", out)

    def test_missing_certificate(self):
        """A configured certificate that is not there is named, not a traceback."""
        config = self.config_dir({"server": {"tls_certificate": "/nonexistent/mx.crt",
                                             "tls_private_key": "/nonexistent/mx.key"}})
        code, out = run_twistd("smtplatrine", "--config", config, "--listen",
                               "tcp:0:interface=127.0.0.1",
                               cwd=self.mktemp_dir())
        self.assertNotEqual(code, 0)
        self.assertIn("smtplatrine: cannot use TLS certificate /nonexistent/mx.crt with key"
                      " /nonexistent/mx.key:", out)
        self.assertNotIn("Traceback", out)

    def test_bad_endpoint(self):
        """A malformed endpoint is refused before anything starts."""
        code, out = run_twistd("smtplatrine", "--listen", "tcp:notaport",
                               cwd=self.mktemp_dir())
        self.assertNotEqual(code, 0)
        self.assertIn("bad endpoint 'tcp:notaport'", out)
        self.assertNotIn("Traceback", out)

    def mktemp_dir(self):
        path = os.path.abspath(self.mktemp())
        os.makedirs(path)
        return path

    def config_dir(self, sections):
        directory = Path(self.mktemp_dir()) / "etc"
        server = dict(sections.get("server", {}), data_dir=directory.parent / "data")
        sections = dict(sections, server=server)
        write_config(directory, sections)
        return str(directory)


class PrivilegeTests(HoneypotTestCase):

    def setUp(self):
        require_root("the privilege drop")
        super().setUp()

    def test_runs_unprivileged(self):
        """Started as root, the server runs as nobody:nogroup and owns its data."""
        status = open(f"/proc/{self.honeypot.process.pid}/status").read()
        uid_line = next(line for line in status.splitlines() if line.startswith("Uid:"))
        nobody = pwd.getpwnam("nobody").pw_uid
        self.assertEqual(uid_line.split()[1:], [str(nobody)] * 4)
        cap_line = next(line for line in status.splitlines() if line.startswith("CapEff:"))
        self.assertEqual(int(cap_line.split()[1], 16), 0)
        client = self.smtp()
        client.sendmail("a@example.org", ["b@example.net"], MESSAGE)
        client.quit()
        [(meta, raw)] = self.honeypot.messages()
        self.assertEqual(raw, MESSAGE)


class SocketActivationTests(unittest.TestCase):

    def activate(self, endpoint):
        """Start the honeypot under systemd-socket-activate on a listening
        socket of port 0 made here; its port.  systemd-socket-activate takes
        the socket as systemd hands sockets over (fd 3, LISTEN_FDS and
        LISTEN_PID), names it and starts twistd at the first connection."""
        require("systemd-socket-activate")
        directory = reachable_directory()
        self.addCleanup(shutil.rmtree, directory, ignore_errors=True)
        write_config(directory / "etc", {"server": {"data_dir": directory / "data"}})
        listener = socket.socket()
        self.addCleanup(listener.close)
        listener.bind(("127.0.0.1", 0))
        listener.listen()
        fd = listener.fileno()
        process = subprocess.Popen(
            ["sh", "-c", f'exec 3<&{fd} {fd}<&-; LISTEN_PID=$$ LISTEN_FDS=1 exec "$@"', "sh",
             "systemd-socket-activate", "-E", "PYTHONPATH", "--fdname=smtp",
             *TWISTD, "-n", "--pidfile=", f"--logfile={directory}/twistd.log", "smtplatrine",
             "--config", f"{directory}/etc", "--listen", endpoint],
            env=environment(), pass_fds=[fd], stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL)
        self.addCleanup(process.wait)
        self.addCleanup(process.terminate)
        return listener.getsockname()[1]

    def test_systemd_endpoint(self):
        """With a socket handed over by systemd, the honeypot serves on it."""
        port = self.activate("systemd:domain=INET:name=smtp")
        client = smtplib.SMTP("127.0.0.1", port, timeout=20)
        self.addCleanup(client.close)
        self.assertEqual(client.ehlo()[0], 250)
        client.sendmail("a@example.org", ["b@example.net"], MESSAGE)

    def test_systemd_implicit_tls(self):
        """``tls:systemd:...`` serves SMTPS on a socket handed over by systemd."""
        port = self.activate("tls:systemd:domain=INET:name=smtp")
        client = smtplib.SMTP_SSL("127.0.0.1", port, timeout=20, context=tls_context())
        self.addCleanup(client.close)
        self.assertEqual(client.noop()[0], 250)
