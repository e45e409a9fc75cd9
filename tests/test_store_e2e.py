"""End to end: messages sent over TCP to ``twistd smtplatrine`` end up in
the database, across crashes, database outages and two sensors at once."""

import base64
import hashlib
import json
import os
import pwd
import signal
import smtplib
import socket
import subprocess
import sys
import threading
import time
import urllib.request
from pathlib import Path

from twisted.trial import unittest

from smtplatrine.cli import main as cli_main
from tests.corpus import corpus
from tests.mariadb import PrivateMariaDB, shared_database
from tests.process import Honeypot, environment, free_port, require
from tests.test_e2e import HoneypotTestCase



def numbered(i, sensor=""):
    return (f"From: bot@example.net\r\nTo: victim{i % 7}@example.org\r\n"
            f"Subject: {sensor}message {i}\r\n\r\nbody {i}\r\n").encode()


class Sender(threading.Thread):
    """Sends numbered messages to *honeypot*, reconnecting (to the port it
    has then: a restarted honeypot gets a new one) after any failure, and
    keeps the subjects the server answered 250 to."""

    def __init__(self, honeypot, count, sensor=""):
        super().__init__(daemon=True)
        self.honeypot, self.count, self.sensor = honeypot, count, sensor
        self.acknowledged = []
        self.failures = 0

    def run(self):
        client = None
        for i in range(self.count):
            try:
                if client is None:
                    client = smtplib.SMTP("127.0.0.1", self.honeypot.port, timeout=10)
                    client.ehlo("sender.example")
                client.sendmail("bot@example.net", [f"victim{i % 7}@example.org"],
                                numbered(i, self.sensor))
                self.acknowledged.append(f"{self.sensor}message {i}")
            except (OSError, smtplib.SMTPException):
                self.failures += 1
                client = None
                time.sleep(0.05)
        if client is not None:
            client.close()


class CorpusTests(HoneypotTestCase):
    """Real spam, sent by smtplib, read back from the SQLite database.

    Expected values were read from the files by hand: subjects decoded with
    ``base64 -d`` (and iconv), the attachment cut out and decoded with
    ``base64 -d``, hashes by ``sha256sum``, the raw hash of the file with
    CRLF line ends (``sed 's/$/\\r/' FILE | sha256sum``).
    """

    def send(self, name):
        client = self.smtp()
        # As an MTA would pass it on: LF line ends become CRLF.
        client.sendmail("spammer@example.net", ["kinney@noth.com"],
                        corpus(name).replace(b"\n", b"\r\n"))
        client.quit()

    def test_attachment_and_subject(self):
        """mail_test_1: UTF-8 encoded-word subject, one zip attachment kept
        under its SHA-256, raw message byte-exact."""
        self.send("mail_test_1.eml")
        [(meta, raw)] = self.honeypot.messages()
        self.assertEqual(hashlib.sha256(raw).hexdigest(),
                         "1dee166968ea34a78fd346ea27044b6b364451df52ecd7d7517e7dcf374d3dac")
        [row] = self.honeypot.query("SELECT * FROM honeypot_emails")
        self.assertEqual(row["header_subject"], "письмо уведом-е")
        self.assertEqual(row["header_to"], "kinney@noth.com")
        self.assertEqual(row["mail_from"], "spammer@example.net")
        [attachment] = self.honeypot.query("SELECT * FROM honeypot_attachments")
        sha256 = "05bc3630ab05c2f0368fcaba0a5ae32eb954232917aeda816d5371597a11e001"
        self.assertEqual((attachment["filename"], attachment["size"], attachment["sha256"]),
                         ("ФНС_РФ558.zip", 8932, sha256))
        stored = self.honeypot.data / "attachments" / sha256[:2] / sha256
        self.assertEqual(hashlib.sha256(stored.read_bytes()).hexdigest(), sha256)

    def test_received_chain_and_recipients(self):
        """mail_test_3: Received headers in order and parsed, To and envelope
        recipients, X-Mailer, and the inline named part as an attachment."""
        self.send("mail_test_3.eml")
        self.honeypot.messages()
        [row] = self.honeypot.query("SELECT * FROM honeypot_emails")
        self.assertEqual((row["header_subject"], row["header_x_mailer"]),
                         ("Hi there", "Outlook for iOS and Android"))
        received = self.honeypot.query(
            "SELECT from_host, from_ip, by_host, protocol FROM honeypot_email_received"
            " ORDER BY position")
        self.assertEqual(len(received), 2)
        self.assertEqual(received[1], {
            "from_host": "67.175.76.202.static.randtelekom.com.tr",
            "from_ip": "67.175.76.202", "by_host": "smtp.server.net", "protocol": "SMTP"})
        rcpts = self.honeypot.query("SELECT address, kind FROM honeypot_email_recipients"
                                    " ORDER BY kind")
        self.assertEqual(rcpts, [{"address": "kinney@noth.com", "kind": "envelope"},
                                 {"address": "kalinokyra@thismail.it", "kind": "to"}])
        [attachment] = self.honeypot.query("SELECT * FROM honeypot_attachments")
        self.assertEqual((attachment["filename"], attachment["content_type"],
                          attachment["disposition"]),
                         ("message.txt", "text/plain", "inline"))

    def test_export(self):
        """``smtplatrine export`` writes one JSON object per message with its
        session, attachments and recipients; filters narrow it."""
        self.send("mail_test_1.eml")
        self.honeypot.messages()
        out = self.honeypot.directory / "export.jsonl"

        def export(*args):
            code = subprocess.run(
                [sys.executable, "-c", "from smtplatrine.cli import main; main()",
                 "export", "--config", "etc", "--output", str(out), *args],
                cwd=self.honeypot.directory, env=environment(), capture_output=True,
                timeout=30)
            self.assertEqual(code.returncode, 0, code.stderr)
            return [json.loads(line) for line in out.read_text().splitlines()]

        [record] = export()
        self.assertEqual(record["header_subject"], "письмо уведом-е")
        self.assertTrue(record["received"].endswith("Z"))
        self.assertEqual(len(record["received_chain"]),
                         corpus("mail_test_1.eml").count(b"\nReceived:"))
        self.assertEqual([a["sha256"] for a in record["attachments"]],
                         ["05bc3630ab05c2f0368fcaba0a5ae32eb954232917aeda816d5371597a11e001"])
        self.assertEqual(record["session"]["client_ip"], "127.0.0.1")
        self.assertEqual(record["recipients"], [
            {"address": "kinney@noth.com", "kind": "envelope"},
            {"address": "kinney@noth.com", "kind": "to"}])
        self.assertEqual(
            hashlib.sha256(base64.b64decode(record["raw_base64"])).hexdigest(),
            "1dee166968ea34a78fd346ea27044b6b364451df52ecd7d7517e7dcf374d3dac")
        self.assertEqual(export("--since", "2999-01-01"), [])
        self.assertEqual(export("--sensor", "elsewhere"), [])
        self.assertEqual(len(export("--sensor", "smtplatrine", "--no-raw")), 1)

    def test_export_without_database(self):
        """Export from a database that does not exist says so in one line."""
        error = self.assertRaises(SystemExit, cli_main, [
            "export", "--config", str(self.honeypot.directory / "missing")])
        self.assertIn("not a configuration directory", str(error))


class CrashTests(HoneypotTestCase):

    def test_kill_9_loses_and_duplicates_nothing(self):
        """twistd killed with SIGKILL mid-run and started again: every message
        answered 250 is stored once; nothing is stored twice."""
        sender = Sender(self.honeypot, 150)
        sender.start()
        self.honeypot.wait_for(lambda: len(sender.acknowledged) >= 40, timeout=30)
        self.honeypot.kill()
        self.honeypot.start()
        sender.join(60)
        self.assertFalse(sender.is_alive())
        self.assertGreater(sender.failures, 0)
        self.honeypot.wait_for(self.honeypot.drained, timeout=30)
        subjects = [r["header_subject"] for r in self.honeypot.query(
            "SELECT header_subject FROM honeypot_emails WHERE acknowledged = 1")]
        self.assertEqual(len(subjects), len(set(subjects)), "a message stored twice")
        self.assertEqual(set(sender.acknowledged) - set(subjects), set())
        # At most the message in flight at the kill was spooled and stored
        # without its client hearing the 250.
        self.assertLessEqual(len(subjects) - len(sender.acknowledged), 1)


    def test_kill_9_mid_data_keeps_what_came(self):
        """Killed while a client is in DATA, twistd restarted keeps what had
        reached the disk: stored unacknowledged, flagged incomplete and
        recovered."""
        sent = b"Subject: cut short\r\n\r\n" + (b"y" * 98 + b"\r\n") * 640
        spool = self.honeypot.data / "spool" / "messages"
        with socket.create_connection(("127.0.0.1", self.honeypot.port), 10) as s:
            s.recv(1000)
            s.sendall(b"EHLO c.example\r\nMAIL FROM:<a@example.net>\r\n"
                      b"RCPT TO:<b@example.org>\r\nDATA\r\n")
            self.honeypot.wait_for(lambda: b"354" in s.recv(1000))
            s.sendall(sent)
            # Partial data is buffered: wait until some of it is on disk.
            self.honeypot.wait_for(lambda: any(
                p.stat().st_size >= 16384 for p in spool.glob("*.eml")))
            self.honeypot.kill()
        self.honeypot.start()
        [(meta, raw)] = self.honeypot.messages()
        self.assertGreaterEqual(len(raw), 16384)
        self.assertEqual(raw, sent[:len(raw)])
        [row] = self.honeypot.query("SELECT acknowledged, incomplete, recovered,"
                                    " header_subject FROM honeypot_emails")
        self.assertEqual(row, {"acknowledged": 0, "incomplete": 1, "recovered": 1,
                               "header_subject": "cut short"})


def _mysql_sections(settings, **store):
    return {"engine": {"engine_backend": "mysql"},
            "mysql": {"mysql_host": settings["host"], "mysql_port": settings["port"],
                      "mysql_database": settings["database"]},
            "store": {"retry_max_delay": 1, **store}}


def _count(settings, statement):
    import MySQLdb
    with MySQLdb.connect(**settings) as connection:
        cursor = connection.cursor()
        cursor.execute(statement)
        return cursor.fetchall()


class MariaDBOutageTests(unittest.TestCase):

    def test_outage_during_run(self):
        """The private MariaDB stops for a while mid-run: SMTP keeps answering
        250, and once it is back every acknowledged message is stored once."""
        database = PrivateMariaDB(self)
        database.start()
        settings = database.create_database("smtplatrine")
        honeypot = Honeypot(**_mysql_sections(settings))
        self.addCleanup(honeypot.stop)
        acknowledged = []
        for batch, running in enumerate((True, False, True)):
            if running and batch:
                database.start()
            elif not running:
                database.stop()
            sender = Sender(honeypot, 40, sensor=f"batch {batch} ")
            sender.run()
            self.assertEqual((len(sender.acknowledged), sender.failures), (40, 0))
            acknowledged += sender.acknowledged
            if not running:
                # Once storing has found the database away, the batch waits.
                honeypot.wait_for(lambda: "storing paused (MySQL" in honeypot.output())
                self.assertFalse(honeypot.drained())
        honeypot.wait_for(honeypot.drained, timeout=60)
        subjects = [r[0] for r in _count(settings, "SELECT header_subject FROM"
                                                   " honeypot_emails")]
        self.assertEqual(sorted(subjects), sorted(acknowledged))
        output = honeypot.output()
        self.assertIn("storing paused (MySQL", output)
        self.assertIn("storing again into MySQL", output)
        self.assertNotIn("Traceback", output)


class StoringProcessTests(unittest.TestCase):

    def test_storing_process_killed(self):
        """The storing process is killed: SMTP keeps answering 250, a new one
        is started, every acknowledged message is stored once, and stopping
        twistd leaves no storing process behind."""
        honeypot = Honeypot()
        self.addCleanup(honeypot.stop)
        supervisor, killed = honeypot.wait_for(lambda: all(honeypot.storer_pids())
                                               and honeypot.storer_pids())
        # Held still, the supervisor cannot start a new worker yet.
        os.kill(supervisor, signal.SIGSTOP)
        os.kill(killed, signal.SIGKILL)
        sender = Sender(honeypot, 40)
        sender.run()
        self.assertEqual((len(sender.acknowledged), sender.failures), (40, 0))
        self.assertFalse(honeypot.drained())
        os.kill(supervisor, signal.SIGCONT)
        honeypot.wait_for(lambda: honeypot.storer_pids()[1] not in (None, killed))
        restarted = honeypot.storer_pids()
        self.assertEqual(restarted[0], supervisor)
        honeypot.wait_for(honeypot.drained, timeout=30)
        subjects = [r["header_subject"] for r in honeypot.query(
            "SELECT header_subject FROM honeypot_emails")]
        self.assertEqual(sorted(subjects), sorted(sender.acknowledged))
        output = honeypot.output()
        self.assertIn(f"the storing process {killed} ended (signal 9)", output)
        self.assertNotIn("Traceback", output)
        honeypot.stop()
        for pid in restarted:
            self.assertFalse(Path(f"/proc/{pid}").exists())


class ParseWorkerTests(unittest.TestCase):

    def test_parse_workers(self):
        """With ``parse_workers = 2``, two worker processes (the
        unprivileged user when started as root) parse what smtp-source and
        swaks send, every message stored parsed and byte-exact (hashes as
        sha256sum gives them); an idle worker killed is replaced, and the
        next messages are stored all the same."""
        require("smtp-source")
        require("swaks")
        honeypot = Honeypot(store={"parse_workers": "2"})
        self.addCleanup(honeypot.stop)
        workers = honeypot.wait_for(lambda: len(honeypot.parse_worker_pids()) == 2
                                    and honeypot.parse_worker_pids())
        if os.geteuid() == 0:
            for pid in workers:
                uid = [line for line in Path(f"/proc/{pid}/status").read_text().splitlines()
                       if line.startswith("Uid:")][0].split()[1]
                self.assertEqual(int(uid), pwd.getpwnam("nobody").pw_uid)
        subprocess.run(["smtp-source", "-s", "5", "-m", "60", "-l", "2048", "-f",
                        "bot@example.net", "-t", "victim@example.org",
                        f"127.0.0.1:{honeypot.port}"], check=True, timeout=120)
        honeypot.wait_for(lambda: len(honeypot.query(
            "SELECT 1 FROM honeypot_emails")) == 60, timeout=60)
        os.kill(workers[0], signal.SIGKILL)
        replaced = honeypot.wait_for(lambda: len(honeypot.parse_worker_pids()) == 2
                                     and workers[0] not in honeypot.parse_worker_pids()
                                     and honeypot.parse_worker_pids())
        self.assertIn(workers[1], replaced)
        body = Path(self.mktemp())
        body.write_bytes(b"From: bot@example.net\r\nSubject: after the kill\r\n\r\nhi\r\n")
        for _ in range(3):
            subprocess.run(["swaks", "--server", f"127.0.0.1:{honeypot.port}",
                            "--to", "victim@example.org", "--from", "bot@example.net",
                            "--data", f"@{body}"], check=True, capture_output=True,
                           timeout=60)
        honeypot.wait_for(honeypot.drained, timeout=60)
        rows = honeypot.query("SELECT header_subject, defects, sha256, raw"
                              " FROM honeypot_emails")
        self.assertEqual(len(rows), 63)
        self.assertEqual({r["defects"] for r in rows}, {"[]"})
        self.assertEqual(sum(r["header_subject"] == "after the kill" for r in rows), 3)
        for row in rows[::7]:
            raw = Path(self.mktemp())
            raw.write_bytes(row["raw"])
            digest = subprocess.run(["sha256sum", str(raw)], capture_output=True, check=True,
                                    text=True).stdout.split()[0]
            self.assertEqual(row["sha256"], digest)
        output = honeypot.output()
        self.assertIn("parsing in 2 worker process(es)", output)
        self.assertIn(f"parse worker {workers[0]} ended; a new worker replaces it", output)
        self.assertNotIn("Traceback", output)


def sized(subject, size):
    """A message of exactly *size* bytes: headers, then 76-character lines
    (none starting with a dot), each ending in CRLF."""
    head = f"From: bot@example.net\r\nSubject: {subject}\r\n\r\n".encode()
    line = b"x" * 76 + b"\r\n"
    count, rest = divmod(size - len(head), len(line))
    return head + line * (count - 1) + b"y" * (len(line) + rest - 2) + b"\r\n"


class LargeMessageTests(unittest.TestCase):

    def test_large_raw_kept_as_file(self):
        """With SQLite and the raw messages in the database (the defaults),
        a message of more than 1 MiB (2**20 bytes) is kept under data/raw/,
        named by its SHA-256, and one of exactly 1 MiB in its row, as the
        README says; the dashboard's raw download and the export give both
        back byte for byte."""
        web_port = free_port()
        honeypot = Honeypot(web={"listen": f"tcp:{web_port}:interface=127.0.0.1"})
        self.addCleanup(honeypot.stop)
        sent = {"inline": sized("exactly 1 MiB", 2**20),
                "file": sized("1 MiB and a byte", 2**20 + 1)}
        self.assertEqual([len(m) for m in sent.values()], [2**20, 2**20 + 1])
        client = smtplib.SMTP("127.0.0.1", honeypot.port, timeout=60)
        for message in sent.values():
            client.sendmail("bot@example.net", ["victim@example.org"], message)
        client.quit()
        honeypot.wait_for(lambda: len(honeypot.query("SELECT 1 FROM honeypot_emails")) == 2
                          and honeypot.drained(), timeout=60)
        rows = {r["header_subject"]: r for r in honeypot.query(
            "SELECT message_id, header_subject, raw, raw_path FROM honeypot_emails")}
        inline, file = rows["exactly 1 MiB"], rows["1 MiB and a byte"]
        self.assertEqual((inline["raw"], inline["raw_path"]), (sent["inline"], None))
        digest = hashlib.sha256(sent["file"]).hexdigest()
        self.assertEqual((file["raw"], file["raw_path"]), (None, f"{digest[:2]}/{digest}"))
        self.assertEqual((honeypot.data / "raw" / file["raw_path"]).read_bytes(), sent["file"])

        etc = ["--config", str(honeypot.directory / "etc")]
        out = honeypot.directory / "export.jsonl"
        cli_main(["export", *etc, "--output", str(out)])
        exported = {r["header_subject"]: base64.b64decode(r["raw_base64"])
                    for r in map(json.loads, out.read_text().splitlines())}
        self.assertEqual(exported, {"exactly 1 MiB": sent["inline"],
                                    "1 MiB and a byte": sent["file"]})
        token = subprocess.run(
            [sys.executable, "-c", "from smtplatrine.cli import main; main()", "token", "add",
             "reader", "--role", "forensic", *etc], env=environment(), capture_output=True,
            text=True, check=True, timeout=30).stdout.strip()

        def download(message_id):
            request = urllib.request.Request(
                f"http://127.0.0.1:{web_port}/api/messages/{message_id}/raw",
                headers={"Authorization": f"Bearer {token}"})
            with urllib.request.urlopen(request, timeout=30) as response:
                return response.read()

        def up():
            try:
                return download(inline["message_id"])
            except OSError:
                return None

        self.assertEqual(honeypot.wait_for(up, timeout=30), sent["inline"])
        self.assertEqual(download(file["message_id"]), sent["file"])


class TwoSensorTests(unittest.TestCase):

    def test_two_sensors_one_database(self):
        """Two twistd sensors store into one MariaDB at once, sharing the
        recipients table, every row tagged with its sensor."""
        settings = shared_database(self)
        senders = []
        for name in ("sensor-a", "sensor-b"):
            honeypot = Honeypot(server={"sensor_name": name}, **_mysql_sections(settings))
            self.addCleanup(honeypot.stop)
            senders.append((honeypot, Sender(honeypot, 40, sensor=name + " ")))
        for _, sender in senders:
            sender.start()
        for honeypot, sender in senders:
            sender.join(60)
            honeypot.wait_for(honeypot.drained, timeout=60)
            self.assertEqual(len(sender.acknowledged), 40)
            self.assertNotIn("Traceback", honeypot.output())
        rows = _count(settings, "SELECT sensor, COUNT(*) FROM honeypot_emails"
                                " GROUP BY sensor ORDER BY sensor")
        self.assertEqual(rows, (("sensor-a", 40), ("sensor-b", 40)))
        seen = _count(settings, "SELECT SUM(seen), COUNT(*) FROM honeypot_recipients")
        # victim0..victim6 each counted once per message that carried them.
        self.assertEqual((int(seen[0][0]), seen[0][1]), (80, 7))

