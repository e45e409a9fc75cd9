"""The analysers of attachment forensics, run in this process on files the
tests build, checked against Debian's tools (7z, unzip, tnef, file,
ssdeep, yara, pdfinfo, lnkinfo, pehash); the names' flags; the passwords
a body offers; similar files by fuzzy hash, over SQLite and MariaDB."""

import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

from twisted.internet import defer
from twisted.trial import unittest

from smtplatrine.forensics import (archives, documents, filetype, names, passwords,
                                   rules)
from smtplatrine.parse import parse
from smtplatrine.store import dialects
from smtplatrine.store import forensics as store
from smtplatrine.store.database import Database
from tests import samples
from tests.corpus import corpus
from tests.mariadb import shared_database
from tests.process import environment
from tests.samples import run, sha256

LIMITS = {"max_members": 1000, "max_bytes": 256 * 2**20, "max_member_bytes": 64 * 2**20,
          "max_ratio": 100, "max_depth": 5}


class _Files:
    def setUp(self):
        documents.prepare()
        archives.prepare()
        self.tmp = Path(tempfile.mkdtemp())
        self.store = self.tmp / "store"
        self.addCleanup(shutil.rmtree, self.tmp, True)

    def write(self, data, name="sample"):
        path = self.tmp / name
        path.write_bytes(data)
        return path

    def archive(self, data, passwords=(), name=None, **limits):
        return archives.analyse(self.write(data), {
            "store": str(self.store), "limits": dict(LIMITS, **limits),
            "passwords": list(passwords), "name": name})

    def stored(self, digest):
        return (self.store / digest[:2] / digest).read_bytes()


class ArchiveTests(_Files, unittest.TestCase):

    def members(self, found):
        return {m["name"]: (m["size"], m["sha256"]) for m in found["files"]}

    def test_formats_listed_as_7z_lists_them(self):
        """zip, 7z, tar.gz, cab, iso and rar members: the names and sizes
        ``7z l`` lists, each stored under the SHA-256 of what ``7z x``
        extracts (``sha256sum``)."""
        files = {"a.txt": b"hello world\n", "b.bin": os.urandom(5000)}
        built = {
            "zip": samples.seven_zip(files, kind="zip"),
            "7z": samples.seven_zip(files),
            "cab": samples.cab(files),
            "iso": samples.iso(files),
            "rar": samples.rar(files),
        }
        for fmt, data in built.items():
            found = self.archive(data)
            self.assertEqual(found["format"], fmt)
            listed = samples.listing_7z(data)
            self.assertEqual({n: s for n, (s, _) in self.members(found).items()}, listed,
                             fmt)
            for name, (_, digest) in self.members(found).items():
                extracted = samples.extract_7z(data, name)
                self.assertEqual(digest, run("sha256sum", input=extracted).split()[0]
                                 .decode(), (fmt, name))
                self.assertEqual(self.stored(digest), extracted)

    def test_tar_gz(self):
        """A .tar.gz is a gzip holding a tar (named as gzip -l names it),
        then the tar's members, as ``tar tzf`` lists them."""
        def build(directory, names):
            run("tar", "czf", "t.tgz", *names, cwd=directory)
            return "t.tgz"
        data = samples.with_files({"a.txt": b"x" * 100}, build)
        found = self.archive(data, name="t.tgz")
        [tar, member] = found["files"]
        path = str(self.write(data, "t.tgz"))
        named = run("gzip", "-l", "-N", path).decode().split()[-1]
        self.assertEqual((tar["name"], tar["parent"], member["name"], member["parent"]),
                         (Path(named).name, None, run("tar", "tzf", path).decode().strip(),
                          0))
        self.assertEqual(member["sha256"], sha256(b"x" * 100))

    def test_tnef(self):
        """winmail.dat is unpacked: the names ``tnef -t`` lists, the bytes
        put in."""
        data = samples.tnef({"report.pdf": b"%PDF-1.4 x", "notes.txt": b"hello"})
        found = self.archive(data)
        self.assertEqual(found["format"], "tnef")
        listed = run("tnef", "-t", str(self.write(data, "winmail.dat"))).decode()
        self.assertEqual([line.split("\t")[0] for line in listed.splitlines()],
                         [m["name"] for m in found["files"]])
        self.assertEqual([m["sha256"] for m in found["files"]],
                         [sha256(b"%PDF-1.4 x"), sha256(b"hello")])

    def test_nested_with_password(self):
        """A zip in a zip, both encrypted, opens with a password the body
        gave; the inner members hang under the inner zip."""
        inner = samples.seven_zip({"doc.txt": b"secret\n"}, kind="zip", password="Zx9")
        outer = samples.seven_zip({"inner.zip": inner}, kind="zip", password="Zx9")
        found = self.archive(outer, passwords=["wrong", "Zx9"])
        self.assertEqual(found["password"], "Zx9")
        self.assertIn("password_found", found["flags"])
        self.assertEqual([(m["name"], m["parent"], m["sha256"]) for m in found["files"]],
                         [("inner.zip", None, sha256(inner)),
                          ("doc.txt", 0, sha256(b"secret\n"))])
        locked = self.archive(outer, passwords=["wrong"])
        self.assertEqual(locked["flags"], ["encrypted"])
        self.assertEqual([(m["name"], m["sha256"], m["flags"]) for m in locked["files"]],
                         [("inner.zip", None, ["encrypted", "no_password"])])

    def test_7z_with_password(self):
        """An AES 7z with encrypted headers: listed only with the password."""
        def build(directory, names):
            run("7z", "a", "-p4711", "-mhe=on", "x.7z", *names, cwd=directory)
            return "x.7z"
        data = samples.with_files({"a.txt": b"abc"}, build)
        self.assertEqual(self.archive(data)["files"], [])
        found = self.archive(data, passwords=["4711"])
        self.assertEqual([(m["name"], m["sha256"]) for m in found["files"]],
                         [("a.txt", sha256(b"abc"))])

    def test_bomb_by_ratio(self):
        """A member of 50 MB of zeros in a 50 KB zip (``unzip -l`` says 50 MB)
        is not extracted: ratio_limit."""
        data = samples.zip_bomb(50)
        self.assertIn(b"52428800", run("unzip", "-l", str(self.write(data, "b.zip"))))
        found = self.archive(data)
        self.assertEqual(found["flags"], ["ratio_limit"])
        self.assertEqual(found["expanded_bytes"], 0)
        self.assertFalse(self.store.exists() and any(self.store.rglob("*")))

    def test_bounds(self):
        """Each bound reached is a flag: members, bytes, member size, depth."""
        many = samples.seven_zip({f"f{i}.txt": b"%d" % i for i in range(20)}, kind="zip")
        found = self.archive(many, max_members=5)
        self.assertEqual((found["members"], found["flags"]), (5, ["member_limit"]))
        big = samples.seven_zip({"a.bin": os.urandom(3 * 2**20),
                                 "b.bin": os.urandom(3 * 2**20)}, kind="zip")
        found = self.archive(big, max_member_bytes=2 * 2**20)
        self.assertEqual([m["flags"] for m in found["files"]], [["too_large"]] * 2)
        found = self.archive(big, max_bytes=4 * 2**20)
        self.assertIn("expanded_limit", found["flags"])
        nested = b"core"
        for level in range(4):
            nested = samples.seven_zip({f"level{level}.zip" if level else "core.txt": nested},
                                       kind="zip")
        found = self.archive(nested, max_depth=2)
        self.assertEqual(len(found["files"]), 2)
        self.assertIn("depth_limit", found["flags"])

    def test_names_not_utf8(self):
        """Real spam (the corpus): a zip from a Russian Windows names its
        member in CP866; the name keeps the bytes ``unzip -l`` shows, as
        ``\\udcXX`` in the analysis, and the member is extracted."""
        [data] = [a.payload for a in parse(corpus("mail_test_1.eml")).attachments
                  if a.filename.endswith(".zip")]
        listed = run("unzip", "-l", str(self.write(data, "c.zip"))).splitlines()[3]
        found = self.archive(data)["files"]
        self.assertEqual(found[0]["name"].encode("utf-8", "surrogateescape"),
                         listed.split(maxsplit=3)[3])
        self.assertEqual(found[0]["sha256"], sha256(samples.extract_7z(data, "*.zip")))

    def test_not_an_archive(self):
        """A document zip (OOXML) and a plain file are not opened."""
        docx = samples.seven_zip({"[Content_Types].xml": b"<Types/>",
                                  "word/document.xml": b"<w/>"}, kind="zip")
        self.assertIsNone(self.archive(docx))
        self.assertIsNone(self.archive(b"just text"))

    def test_garbage(self):
        """Truncated or corrupt archives are flagged, never raise."""
        data = samples.seven_zip({"a.bin": os.urandom(20000)}, kind="zip")
        for broken in (data[:200], data[:30] + os.urandom(500), samples.rar(
                {"a": b"x"})[:40], b"7z\xbc\xaf\x27\x1c" + os.urandom(100)):
            found = self.archive(broken)
            self.assertTrue(found is None or isinstance(found["flags"], list))


class DocumentTests(_Files, unittest.TestCase):

    def analyse(self, data):
        return documents.analyse(self.write(data), {"store": str(self.store),
                                                    "max_file": 2**20})

    def test_office_macro(self):
        """The VBA macro of a Word document: AutoOpen, Shell, the URL."""
        found = self.analyse(samples.word_document())
        self.assertEqual(found["kind"], "office")
        self.assertLessEqual({"vba_macros", "autoexec", "suspicious_keywords"},
                             set(found["flags"]))
        self.assertEqual([a["keyword"] for a in found["autoexec"]], ["AutoOpen"])
        self.assertIn("Shell", [s["keyword"] for s in found["suspicious"]])
        self.assertEqual(found["urls"], [samples.MACRO_URL])
        self.assertIn("Sub AutoOpen()", found["modules"][0]["head"])

    def test_pdf(self):
        """JavaScript (``pdfinfo`` says so too), OpenAction, the link and
        the embedded file (``pdfdetach -list``), which is stored."""
        program = samples.executable()
        data = samples.pdf("app.alert(1)", "http://phish.example.net/x", "run.exe", program)
        path = str(self.write(data, "x.pdf"))
        self.assertIn(b"JavaScript:      yes", run("pdfinfo", path))
        self.assertIn(b"1: run.exe", run("pdfdetach", "-list", path))
        found = self.analyse(data)
        self.assertLessEqual({"javascript", "openaction", "embedded_file", "urls"},
                             set(found["flags"]))
        self.assertEqual(found["javascript"], ["app.alert(1)"])
        self.assertEqual(found["urls"], ["http://phish.example.net/x"])
        self.assertEqual([(f["name"], f["sha256"]) for f in found["files"]],
                         [("run.exe", sha256(program))])
        self.assertEqual(self.stored(sha256(program)), program)

    def test_pe(self):
        """Imphash and compile time as ``pehash`` and ``readpe`` give them."""
        data = samples.executable(timestamp=1700000000)
        path = str(self.write(data, "x.exe"))
        found = self.analyse(data)
        self.assertIn(found["imphash"].encode(), run("pehash", path))
        self.assertIn(b"1700000000 (Tue, 14 Nov 2023 22:13:20 UTC)",
                      run("readpe", "-h", "coff", path))
        self.assertEqual(found["compile_time"], "2023-11-14T22:13:20+00:00")
        self.assertEqual([s["name"] for s in found["sections"]], [".text"])

    def test_shortcut(self):
        """A shortcut's target and arguments, as ``lnkinfo`` prints them."""
        data = samples.shortcut("..\\Windows\\System32\\cmd.exe", "/c start http://x.test/")
        printed = run("lnkinfo", str(self.write(data, "x.lnk"))).decode()
        found = self.analyse(data)
        self.assertIn(f": {found['target']}\n", printed)
        self.assertIn(f": {found['arguments']}\n", printed)
        self.assertEqual((found["commands"], found["urls"]), (["cmd"], ["http://x.test/"]))
        self.assertIn("suspicious_command", found["flags"])

    def test_html(self):
        """A phishing form: where it posts, its password field, the script."""
        data = (b"<html><body><form action='https://x.example.net/p.php' method=POST>"
                b"<input type=password name=pw></form><iframe src='https://y.test/'>"
                b"</iframe><script>eval(unescape('%61'))</script></body></html>")
        found = self.analyse(data)
        self.assertEqual(found["forms"][0]["action"], "https://x.example.net/p.php")
        self.assertEqual(found["forms"][0]["method"], "post")
        self.assertLessEqual({"password_form", "external_form_action", "iframe",
                              "obfuscated_script"}, set(found["flags"]))

    def test_other_files(self):
        """Text, images, archives: nothing for the document analyser."""
        for data in (b"plain text", b"\x89PNG\r\n\x1a\n" + bytes(100),
                     samples.tnef({"a.pdf": b"%PDF-1.4"})):
            self.assertIsNone(self.analyse(data))


class FileTypeTests(_Files, unittest.TestCase):

    def test_type_and_fuzzy_hashes(self):
        """The MIME type ``file`` gives, the ssdeep ``ssdeep`` gives."""
        for data in (samples.word_document(), samples.executable(), os.urandom(70000),
                     b"<html><body>hi</body></html>" * 100):
            path = self.write(data)
            found = filetype.analyse(path, {})
            self.assertEqual(found["mime"], run("file", "-b", "--mime-type", str(path))
                             .decode().strip())
            self.assertEqual(found["ssdeep"], run("ssdeep", "-b", "-s", str(path))
                             .decode().splitlines()[1].split(",")[0])
            self.assertEqual(found["size"], len(data))
        self.assertAlmostEqual(filetype.analyse(self.write(bytes(1000)), {})["entropy"], 0)


class NameTests(unittest.TestCase):

    def test_flags(self):
        """Right-to-left overrides, double extensions, padding and type
        mismatches, each on its own."""
        pe = "application/vnd.microsoft.portable-executable"
        cases = [
            ("x.pdf\u202eexe.scr", "application/pdf", pe,
             {"rtl_override", "type_mismatch"}),
            ("invoice.pdf.exe", "application/octet-stream", pe, {"double_extension"}),
            ("invoice.pdf" + " " * 40 + ".exe", "", pe,
             {"double_extension", "padded_name"}),
            ("report.pdf", "application/pdf", pe,
             {"type_mismatch", "executable_content"}),
            ("report.pdf", "application/pdf", "application/pdf", set()),
            ("letter.docx", "application/octet-stream", "application/zip", set()),
            ("photo.jpg.js", "image/jpeg", "text/plain", {"double_extension",
                                                           "type_mismatch"}),
            (None, "", "text/plain", set()),
        ]
        for name, declared, detected, expected in cases:
            self.assertEqual(set(names.flags(name, declared, detected)), expected, name)


class FuzzyTests(unittest.TestCase):

    def test_scores_as_ssdeep(self):
        """Signatures score as ``ssdeep -d`` scores the files: variants of
        several sizes and edits, halves and doubles, strangers."""
        import random

        import ppdeep

        from smtplatrine.forensics import fuzzy
        chance = random.Random(7)
        directory = Path(self.mktemp())
        directory.mkdir()
        for size in (400, 3000, 20000, 90000):
            base = bytearray(chance.randbytes(size))
            variants = [bytes(base[:size // 2]), bytes(base + chance.randbytes(size)),
                        chance.randbytes(size)]
            for edits in (1, 5, 40):
                other = bytearray(base)
                for _ in range(edits):
                    at = chance.randrange(size)
                    other[at:at + size // 60 + 1] = chance.randbytes(size // 50 + 1)
                variants.append(bytes(other))
            (directory / "a").write_bytes(bytes(base))
            for other in variants:
                (directory / "b").write_bytes(other)
                said = run("ssdeep", "-d", "-s", str(directory / "a"),
                           str(directory / "b")).decode()
                expected = int(said.rsplit("(", 1)[1].split(")")[0]) if said else 0
                self.assertEqual(fuzzy.compare(ppdeep.hash(bytes(base)),
                                               ppdeep.hash(other)), expected)
        self.assertEqual(fuzzy.compare("3:abc:def", "garbage"), 0)


class PasswordTests(unittest.TestCase):

    def test_candidates(self):
        """Passwords as spam gives them, in several languages and in HTML."""
        for body, password in [("Password: 1234", "1234"), ("pwd 1234.", "1234"),
                               ("The archive password is \"Xy7#k\"", "Xy7#k"),
                               ("<p><b>Passwort:</b> 5555</p>", "5555"),
                               ("mot de passe : abc", "abc"), ("Пароль - 555", "555")]:
            self.assertEqual(passwords.candidates(body)[0], password, body)
        self.assertEqual(passwords.candidates("no secrets"), list(passwords.DEFAULTS))
        many = " ".join(f"pw: a{i}" for i in range(100))
        self.assertEqual(passwords.candidates(many, limit=5),
                         ["a0", "a1", "a2", "a3", "a4", *passwords.DEFAULTS])


class RuleTests(unittest.TestCase):

    def test_compile_and_match(self):
        """Good files compile, a bad one is named with its line, and the
        matches are those the ``yara`` tool finds."""
        directory = Path(tempfile.mkdtemp())
        (directory / "good.yar").write_text(
            'rule evil : t1 t2 { strings: $a = "EVIL" condition: $a }\n')
        (directory / "sub").mkdir()
        (directory / "sub" / "bad.yara").write_text("rule bad {\n condition: nonsense\n}\n")
        compiled, count, bad = rules.compile_directory(directory)
        self.assertEqual(count, 1)
        self.assertEqual([(p.name, e.split(":")[0]) for p, e in bad],
                         [("bad.yara", "line 2")])
        target = directory / "target.bin"
        target.write_bytes(b"xxEVILxx")
        self.assertEqual(run("yara", str(directory / "good.yar"), str(target)).split()[0],
                         b"evil")
        self.assertEqual([(m["rule"], m["tags"]) for m in rules.match(compiled, target, 5)],
                         [("evil", ["t1", "t2"])])
        with self.assertRaises(rules.RuleError):
            rules.compile_directory(directory / "missing")


class SimilarTestsMixin:
    """Similar files by ssdeep and TLSH, from stored rows."""

    @defer.inlineCallbacks
    def setUp(self):
        self.database = Database(self.make_dialect())
        self.addCleanup(self.database.close)
        yield defer.Deferred.fromCoroutine(self.database.open())

    @defer.inlineCallbacks
    def test_variants_found(self):
        """A variant (a few bytes changed) is similar, with the score
        ``ssdeep -d`` gives; an unrelated file is not."""
        base = os.urandom(60000)
        variant = base[:30000] + b"CHANGED!" + base[30008:]
        other = os.urandom(60000)
        directory = Path(tempfile.mkdtemp())
        for name, data in (("base", base), ("variant", variant), ("other", other)):
            (directory / name).write_bytes(data)
            found = filetype.analyse(directory / name, {})
            yield defer.Deferred.fromCoroutine(self.database.run(
                store.save_file, self.database.dialect, sha256(data), found, 1767225600.0))
        similar = yield defer.Deferred.fromCoroutine(self.database.run(
            store.similar, self.database.dialect, sha256(base)))
        self.assertEqual([s["sha256"] for s in similar], [sha256(variant)])
        compared = run("ssdeep", "-d", "-s", str(directory / "base"),
                       str(directory / "variant")).decode()
        self.assertIn(f"({similar[0]['ssdeep_score']})", compared)
        self.assertLess(similar[0]["tlsh_distance"], 50)


class SQLiteSimilarTests(SimilarTestsMixin, unittest.TestCase):
    def make_dialect(self):
        self.data = Path(self.mktemp())
        self.data.mkdir()
        return dialects.SQLite(self.data / "smtplatrine.sqlite")

    @defer.inlineCallbacks
    def test_command(self):
        """``smtplatrine similar`` lists a variant with its score and the
        name it came under, and refuses what is no SHA-256."""
        base = os.urandom(40000)
        variant = base[:20000] + b"XXXX" + base[20004:]
        for data in (base, variant):
            (self.data / "f").write_bytes(data)
            yield defer.Deferred.fromCoroutine(self.database.run(
                store.save_file, self.database.dialect, sha256(data),
                filetype.analyse(self.data / "f", {}), 1767225600.0))
        etc = self.data / "etc"
        etc.mkdir()
        (etc / "x.ini").write_text(f"[server]\ndata_dir = {self.data}\n")
        command = [sys.executable, "-c", "from smtplatrine.cli import main; main()",
                   "similar", "--config", str(etc)]
        result = subprocess.run(command + [sha256(base)], capture_output=True, text=True,
                                env=environment(), timeout=60)
        [header, line] = result.stdout.splitlines()
        self.assertEqual(header.split("\t")[:3], ["sha256", "ssdeep_score", "tlsh_distance"])
        self.assertEqual(line.split("\t")[0], sha256(variant))
        self.assertIn("1 similar file(s)", result.stderr)
        refused = subprocess.run(command + ["abc"], capture_output=True, text=True,
                                 env=environment(), timeout=60)
        self.assertEqual(refused.returncode, 2)
        self.assertIn("'abc' is not a SHA-256", refused.stderr)


class MariaDBSimilarTests(SimilarTestsMixin, unittest.TestCase):
    def make_dialect(self):
        from smtplatrine.config import MySQL
        settings = shared_database(self)
        return dialects.MySQL(MySQL(
            mysql_host=settings["host"], mysql_port=settings["port"],
            mysql_username=settings["user"], mysql_password=settings["password"],
            mysql_database=settings["database"]))
