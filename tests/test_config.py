"""Configuration: etc/ documents the defaults; bad values are named clearly."""

import subprocess
import sys
from pathlib import Path

import attrs
from attrs import validators as v
from twisted.trial import unittest

from smtplatrine import config
from smtplatrine.interfaces import OutputOptions, option
from smtplatrine.layout import DataDir
from smtplatrine.parsers import worker_count

ROOT = Path(__file__).resolve().parent.parent
ETC = ROOT / "etc"


class ConfigTests(unittest.TestCase):

    def load(self, text):
        directory = Path(self.mktemp())
        directory.mkdir()
        (directory / "local.ini").write_text(text)
        return config.load(directory)

    def assertRefused(self, text, message):
        with self.assertRaises(config.ConfigError) as caught:
            self.load(text)
        self.assertEqual(str(caught.exception), message)

    def test_etc_is_the_defaults(self):
        """Every option in etc/ is documented with its default value."""
        self.assertEqual(config.load(ETC), config.load())

    def test_every_option_documented(self):
        """Each option of every section, the built-in plugins' sections
        too, appears in etc/, under its section."""
        text = "".join(path.read_text() for path in ETC.glob("*.ini"))
        sections = {f.name: f.type for f in attrs.fields(config.Config) if f.name != "plugins"}
        sections.update(config.plugin_sections())
        self.assertIn("output_elasticsearch", sections)
        self.assertIn("enricher_yara", sections)
        for name, cls in sections.items():
            self.assertIn(f"[{name}]", text)
            block = text.split(f"[{name}]", 1)[1].split("\n[", 1)[0]
            for field in attrs.fields(cls):
                self.assertRegex(block, rf"(?m)^{field.name} =", f"[{name}] {field.name}")

    def test_values_read(self):
        """Values of every kind are read from the files."""
        loaded = self.load("[smtp]\nsmtp_compliant = no\ntimeout = 2.5\n"
                           "[server]\nlisten = tcp:2525 ssl:4465\n")
        self.assertEqual((loaded.smtp.smtp_compliant, loaded.smtp.timeout,
                          loaded.server.listen), (False, 2.5, ("tcp:2525", "ssl:4465")))

    def test_bad_number(self):
        """A value of the wrong kind names file, section, key and what is allowed."""
        self.assertRefused("[smtp]\ntimeout = soon\n",
                           "local.ini [smtp] timeout = 'soon': expected a number > 0")

    def test_out_of_range(self):
        """A value out of range says the bound."""
        self.assertRefused("[smtp]\nline_length_limit = 10\n",
                           "local.ini [smtp] line_length_limit = '10':"
                           " expected a whole number >= 512")

    def test_flow_control_values(self):
        """The flow control's bound is read, and a size with a unit (not
        taken: bytes are a whole number) is one line saying so."""
        loaded = self.load("[smtp]\nin_flow_delay = 0.5\nspool_backlog_messages = 50\n"
                           "spool_backlog_bytes = 1048576\n")
        self.assertEqual((loaded.smtp.in_flow_delay, loaded.smtp.spool_backlog_messages,
                          loaded.smtp.spool_backlog_bytes), (0.5, 50, 1048576))
        self.assertRefused("[smtp]\nspool_backlog_bytes = 1G\n",
                           "local.ini [smtp] spool_backlog_bytes = '1G':"
                           " expected a whole number > 0")

    def test_parse_workers(self):
        """``[store] parse_workers``: auto by default, one per CPU this
        process may run on (as nproc counts them, and 1 under taskset -c
        0); a number is taken; anything else is one line saying what is
        allowed."""
        self.assertEqual(config.load().store.parse_workers, "auto")
        nproc = int(subprocess.run(["nproc"], capture_output=True, check=True).stdout)
        self.assertEqual(worker_count("auto"), nproc)
        pinned = subprocess.run(
            ["taskset", "-c", "0", sys.executable, "-c",
             "from smtplatrine.parsers import worker_count; print(worker_count('auto'))"],
            capture_output=True, check=True, cwd=ROOT)
        self.assertEqual(pinned.stdout, b"1\n")
        self.assertEqual(worker_count(self.load("[store]\nparse_workers = 3\n")
                                      .store.parse_workers), 3)
        for bad in ("0", "-1", "two", "1.5", "1000", ""):
            self.assertRefused(f"[store]\nparse_workers = {bad}\n",
                               f"local.ini [store] parse_workers = {bad!r}: expected auto"
                               " (one per usable CPU) or a whole number, 1 to 999")

    def test_where_raw_messages_go(self):
        """As README.rst says of ``raw_in_database``: by default (SQLite)
        in the database up to 1 MiB (2**20 bytes) and under data/raw/ past
        it; with MySQL all in the database; with ``raw_in_database =
        false`` all on disk, the empty message too."""
        _, raw = DataDir.of(self.load("")).stores
        self.assertEqual(raw.directory, Path(config.load().server.data_dir) / "raw")
        self.assertEqual([raw.on_disk(n) for n in (0, 2**20, 2**20 + 1)], [False, False, True])
        self.assertIsNone(DataDir.of(self.load("[engine]\nengine_backend = mysql\n")).stores[1])
        for text in ("[store]\nraw_in_database = false\n",
                     "[engine]\nengine_backend = mysql\n[store]\nraw_in_database = false\n"):
            _, raw = DataDir.of(self.load(text)).stores
            self.assertEqual([raw.on_disk(n) for n in (0, 2**20, 2**20 + 1)], [True] * 3)

    def test_unknown_key(self):
        """An unknown option is refused, listing the known ones."""
        with self.assertRaises(config.ConfigError) as caught:
            self.load("[smtp]\nsmtp_relay = yes\n")
        self.assertTrue(str(caught.exception).startswith(
            "local.ini [smtp] smtp_relay: unknown option; known options are persona,"))

    def test_unknown_section(self):
        """An unknown section is refused."""
        with self.assertRaises(config.ConfigError) as caught:
            self.load("[database]\nhost = x\n")
        self.assertIn("local.ini [database]: unknown section", str(caught.exception))

    def test_choices(self):
        """Options with a fixed set of values list them."""
        self.assertRefused("[output_syslog]\nfacility = nowhere\n",
                           "local.ini [output_syslog] facility = 'nowhere': expected kern,"
                           " user, mail, daemon, auth, syslog, lpr, news, uucp, cron,"
                           " authpriv, local0, local1, local2, local3, local4, local5,"
                           " local6, local7")
        self.assertRefused("[smtp_features]\nauth_mechanisms = PLAIN NTLM\n",
                           "local.ini [smtp_features] auth_mechanisms = 'PLAIN NTLM':"
                           " expected a list of PLAIN, LOGIN, CRAM-MD5")

    def test_not_a_directory(self):
        """A --config that is not a directory is said so."""
        with self.assertRaises(config.ConfigError):
            config.load(self.mktemp())


@attrs.frozen
class _Options(OutputOptions):
    url: str = option("", v.or_(v.in_([""]), v.matches_re(r"https?://.+")),
                      "an http:// or https:// URL", required=True)
    level: int = option(3, v.le(5), "a whole number <= 5")


class PluginSectionsTests(unittest.TestCase):
    """Sections the plugins declare: [output_NAME], [enricher_NAME]."""

    PLUGINS = {"output_demo": _Options}

    def load(self, text):
        directory = Path(self.mktemp())
        directory.mkdir()
        (directory / "outputs.ini").write_text(text)
        return config.load(directory, self.PLUGINS)

    def refused(self, text):
        with self.assertRaises(config.ConfigError) as caught:
            self.load(text)
        return str(caught.exception).splitlines()

    def test_values_read(self):
        """A plugin's options are read from its section, defaults kept."""
        loaded = self.load("[output_demo]\nenabled = yes\nurl = https://example.net\n")
        self.assertEqual(loaded.options("output_demo", _Options),
                         _Options(enabled=True, url="https://example.net", level=3))

    def test_one_line_per_bad_value(self):
        """Every bad value is said, one line each, not only the first."""
        self.assertEqual(self.refused(
            "[output_demo]\nenabled = maybe\nlevel = 9\nurl = ftp://x\ncolour = red\n"
            "[smtp]\ntimeout = soon\n"), [
            "outputs.ini [output_demo] enabled = 'maybe': expected true or false",
            "outputs.ini [output_demo] level = '9': expected a whole number <= 5",
            "outputs.ini [output_demo] url = 'ftp://x': expected an http:// or https:// URL",
            "outputs.ini [output_demo] colour: unknown option; known options are enabled,"
            " queue_size, retry_max_delay, url, level",
            "outputs.ini [smtp] timeout = 'soon': expected a number > 0"])

    def test_required_when_enabled(self):
        """A required option left empty is refused only when the output is on."""
        self.load("[output_demo]\nlevel = 1\n")
        self.assertEqual(self.refused("[output_demo]\nenabled = true\n"), [
            "outputs.ini [output_demo] url: required when enabled = true;"
            " expected an http:// or https:// URL"])

    def test_unknown_output(self):
        """A section of an output that is not installed says which are."""
        self.assertEqual(self.refused("[output_kafka]\nenabled = true\n"), [
            "outputs.ini [output_kafka]: no output named 'kafka' is installed;"
            " installed: demo"])

    def test_defaults_without_section(self):
        """Without its section, a plugin's options are its defaults."""
        self.assertEqual(config.Config().options("output_demo", _Options), _Options())

    def test_built_in_outputs(self):
        """The outputs shipped declare their sections; only jsonlines is on.
        The local attachment analysers declare theirs, on by default."""
        loaded = config.load()
        on = sorted(name for name, options in loaded.plugins.items() if options.enabled)
        self.assertEqual(on, ["enricher_archive", "enricher_document", "enricher_filetype",
                              "enricher_yara", "output_jsonlines"])
        self.assertEqual(sorted(loaded.plugins), [
            "enricher_archive", "enricher_document", "enricher_filetype", "enricher_yara",
            "output_elasticsearch", "output_hpfeeds", "output_jsonlines",
            "output_splunk", "output_syslog"])
