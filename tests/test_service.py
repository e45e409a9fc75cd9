"""The running honeypot's own files: the human log on a full disk."""

import os

from twisted.trial import unittest

from smtplatrine.service import _LogFile


class LogFileTests(unittest.TestCase):

    def test_full_disk(self):
        """Entries a full disk (/dev/full) refuses are counted, never raised,
        and the count is written first once the file takes entries again."""
        log = _LogFile("/dev/full")
        log.write("first entry\n")
        log.write("second entry\n")
        path = self.mktemp()
        with open(path, "w") as room:
            # The disk takes writes again: the same descriptor, another file.
            os.dup2(room.fileno(), log._fd)
        log.write("third entry\n")
        lines = open(path).read().splitlines()
        self.assertRegex(lines[0], r"\[smtplatrine\.service#warn\] 2 log entries could"
                                   r" not be written$")
        self.assertEqual(lines[1:], ["third entry"])
