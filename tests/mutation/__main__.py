"""The mutation run: ``python -m tests.mutation`` in the checkout (what
``tox -e mutation`` does); README.rst, "Mutation testing".

mutmut (its settings: pyproject.toml, [tool.mutmut]) copies the tree to
mutants/, mutates the listed modules, runs the selected tests once under
pytest to learn which tests call which function, then runs each mutant's
tests in a process forked for it.  There, pytest's start-up would cost
more than most mutants' tests, so they are loaded by name and run as
unittest runs them, fastest first, up to the first failure, each with a
budget of processor time (TIME_FACTOR times what it took on the code as
it is, plus TIME_SLACK seconds; a trial test that waits on the reactor,
as long in wall-clock time, plus WAIT_SLACK seconds): a mutant that makes
a test loop, crawl or wait for what never comes past it is detected as a
timeout at once, not when mutmut's own limit for all of its tests runs
out.  Then tests/mutation/score.py gives the score per module.

Arguments name the mutants to run (``'smtplatrine.smtp.auth.*'``), the
others are left unrun.  ``--keep`` reuses mutants/ from the last run,
with the tests as they are now: only mutants of changed functions, or
the ones named, are run again.  Both are for working on the tests: the
score of record comes from a clean run of all.
"""

import importlib
import os
import shutil
import signal
import sys
import unittest
from pathlib import Path

import mutmut.workers.isolation
from mutmut.__main__ import _run
from mutmut.runners.harness import PytestRunner
from mutmut.state import state
from mutmut.utils.file_utils import change_cwd

from tests.mutation import plugin, score

# Both cores: the mutants' processes are the run's only work.
WORKERS = 2
# A test's processor time on a mutant: at most this many times what it took
# on the code as it is, plus this many seconds.
TIME_FACTOR = 10
TIME_SLACK = 1.0
WAIT_SLACK = 5.0
# mutmut's exit status for a mutant whose tests ran out of time.
TIMEOUT = 36


class OutOfTime(BaseException):
    """A test ran past its budget (a BaseException: tests that catch
    Exception do not swallow it)."""


def out_of_time(signum, frame):
    raise OutOfTime()


def load(nodeid):
    """The test named by pytest's *nodeid* (``tests/test_x.py::Class::test``)."""
    path, cls, method = nodeid.split("::")
    module = importlib.import_module(path.removesuffix(".py").replace("/", "."))
    test = getattr(module, cls)(method)
    plugin.fewer_examples(getattr(test, method))
    return test


def timed_out(result):
    """Whether the last failure in *result* is a trial test's timeout."""
    return any("twisted.internet.defer.TimeoutError" in text
               for _, text in result.errors[-1:])


class UnittestRunner(PytestRunner):
    """mutmut's pytest runner, but for a mutant's tests."""

    def run_tests(self, *, mutant_name, tests):
        if mutant_name is None or not tests:  # the runs on unmutated code
            return super().run_tests(mutant_name=mutant_name, tests=tests)
        durations = state().duration_by_test
        result = unittest.TestResult()
        signal.signal(signal.SIGVTALRM, out_of_time)
        with change_cwd("mutants"):
            for nodeid in sorted(tests, key=lambda nodeid: durations.get(nodeid, 0.0)):
                budget = TIME_FACTOR * durations.get(nodeid, 0.0)
                test = load(nodeid)
                test.timeout = WAIT_SLACK + budget  # read by trial's TestCase only
                signal.setitimer(signal.ITIMER_VIRTUAL, TIME_SLACK + budget)
                try:
                    test.run(result)
                except OutOfTime:
                    return TIMEOUT
                finally:
                    spent = signal.setitimer(signal.ITIMER_VIRTUAL, 0)[0] == 0
                if spent or (not result.wasSuccessful() and timed_out(result)):
                    # OutOfTime caught as an error of the test's, or trial's timeout
                    return TIMEOUT
                if not result.wasSuccessful():
                    return 1
        return 0


def main(argv):
    if argv[:1] == ["--keep"]:
        argv = argv[1:]
        # The tests as they are now: mutmut copies the tree only once.
        shutil.copytree("tests", Path("mutants") / "tests", dirs_exist_ok=True)
    else:
        shutil.rmtree("mutants", ignore_errors=True)
    names = argv
    mutmut.workers.isolation.PytestRunner = UnittestRunner
    # This package was imported from the checkout, the tests pytest
    # collects are mutmut's copies: the same files (mutmut says so for
    # its stats, not for its listing of the tests).
    os.environ["PY_IGNORE_IMPORTMISMATCH"] = "1"
    _run(names, WORKERS)
    score.main()


if __name__ == "__main__":
    main(sys.argv[1:])
