"""Whether the tests run in CI, and what a test that cannot run does then."""

import os

from twisted.trial import unittest


def in_ci():
    """True when the environment says CI (``CI=true``, as ``.ci/run`` and
    the usual CI services set it; ``1`` or ``yes`` too); unset, empty,
    ``0``, ``false`` or ``no``: not in CI."""
    return os.environ.get("CI", "").strip().lower() not in ("", "0", "false", "no")


def unavailable(message):
    """The exception for a test that cannot run here, for want of *message*:
    a skip, but in CI a failure, so that nothing is silently left out."""
    if in_ci():
        return AssertionError(f"{message} (under CI this fails instead of skipping)")
    return unittest.SkipTest(message)
