"""How the tests read CI, and what a test that cannot run does under it."""

import os

from twisted.trial import unittest

from tests.ci import in_ci, unavailable


class CITests(unittest.TestCase):

    def with_ci(self, value):
        """Set CI to *value* (None: unset) for this test."""
        environ = {k: v for k, v in os.environ.items() if k != "CI"}
        if value is not None:
            environ["CI"] = value
        self.patch(os, "environ", environ)

    def test_values(self):
        """CI=true (GitHub, GitLab, .ci/run), 1 or yes is CI; unset, empty,
        0, false or no is not."""
        for value, expected in (("true", True), ("TRUE", True), ("1", True), ("yes", True),
                                (None, False), ("", False), ("0", False), ("false", False),
                                ("no", False)):
            self.with_ci(value)
            self.assertEqual(in_ci(), expected, value)

    def test_unavailable(self):
        """Something missing skips a test, but fails it under CI, saying what."""
        self.with_ci(None)
        self.assertIsInstance(unavailable("swaks is not installed"), unittest.SkipTest)
        self.with_ci("true")
        error = unavailable("swaks is not installed")
        self.assertNotIsInstance(error, unittest.SkipTest)
        self.assertIn("swaks is not installed", str(error))
