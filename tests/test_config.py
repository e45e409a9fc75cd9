"""Configuration: etc/ documents the defaults; bad values are named clearly."""

from pathlib import Path

from twisted.trial import unittest

from smtplatrine import config

ETC = Path(__file__).resolve().parent.parent / "etc"


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
        """Each option of every section appears, commented, in etc/."""
        text = "".join(path.read_text() for path in ETC.glob("*.ini"))
        sections = {f.name: f.type for f in config.attrs.fields(config.Config)
                    if f.name != "plugins"}
        sections.update(config.plugin_sections())
        self.assertIn("enricher_yara", sections)
        for name, cls in sections.items():
            self.assertIn(f"[{name}]", text)
            for option in config.attrs.fields(cls):
                self.assertRegex(text, rf"(?m)^{option.name} =")

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
