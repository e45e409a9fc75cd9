"""The sandbox: each analysis in a child of the zygote, with limits; a
crash, a hang, a memory bomb or an exception costs that analysis only."""

import ctypes
import os
import resource
import time

from twisted.internet import defer, reactor
from twisted.trial import unittest

from smtplatrine.enrich.sandbox import AnalysisFailed, Sandbox


def answer(path, params):
    with open(path, "rb") as f:
        return {"size": len(f.read()), "params": params}


def spin(path, params):
    while True:
        pass


def sleep(path, params):
    time.sleep(3600)


def eat(path, params):
    hoard = []
    while True:
        hoard.append(bytearray(10**7))


def crash(path, params):
    ctypes.string_at(0)


def fail(path, params):
    raise ValueError("no such thing")


def descriptors(path, params):
    return {"open": sorted(int(fd) for fd in os.listdir("/proc/self/fd")),
            "files": resource.getrlimit(resource.RLIMIT_NOFILE)[0],
            "core": resource.getrlimit(resource.RLIMIT_CORE)[0]}


def write(path, params):
    with open(params["target"], "wb") as f:
        f.write(bytes(params["size"]))
    return True


class SandboxTests(unittest.TestCase):

    def setUp(self):
        self.sandbox = Sandbox(memory=128 * 2**20, seconds=1, files=32,
                               file_size=2**20, workers=2)
        for function in (answer, spin, sleep, eat, crash, fail, descriptors, write):
            self.sandbox.register(function.__name__, function)
        self.sandbox.start()
        self.addCleanup(self._stop)
        self.sandbox.connect(reactor)
        self.path = self.mktemp()
        with open(self.path, "wb") as f:
            f.write(b"12345")

    def _stop(self):
        self.sandbox.stop()
        os.kill(self.sandbox.pid, 9)
        os.waitpid(self.sandbox.pid, 0)

    @defer.inlineCallbacks
    def failure(self, name, params=None):
        try:
            yield self.sandbox.run(name, self.path, params)
        except AnalysisFailed as e:
            return e.code
        self.fail(f"{name} did not fail")

    @defer.inlineCallbacks
    def test_answer(self):
        """A function's answer comes back as it returned it."""
        result = yield self.sandbox.run("answer", self.path, {"x": [1, "é"]})
        self.assertEqual(result, {"size": 5, "params": {"x": [1, "é"]}})

    @defer.inlineCallbacks
    def test_each_failure_costs_one_analysis(self):
        """A hang, a CPU loop, a memory bomb, a crash and an exception each
        end their own child, with a code saying why; the next analysis is
        answered as usual."""
        codes = yield defer.gatherResults([self.failure(name) for name in (
            "spin", "sleep", "eat", "crash", "fail")])
        # On a busy machine the wall clock (3 s) may end a CPU loop before
        # its second of CPU does.
        self.assertIn(codes[0], ("cpu", "timeout"))
        self.assertEqual(codes[1:], ["timeout", "memory", "crashed", "error"])
        result = yield self.sandbox.run("answer", self.path)
        self.assertEqual(result["size"], 5)

    @defer.inlineCallbacks
    def test_limits_in_the_child(self):
        """The child keeps only its answer pipe and the standard descriptors
        (on /dev/null), may open few files and dumps no core."""
        found = yield self.sandbox.run("descriptors", self.path)
        self.assertEqual(found["files"], 32)
        self.assertEqual(found["core"], 0)
        self.assertEqual(found["open"][:3], [0, 1, 2])
        self.assertLessEqual(len(found["open"]), 5)

    @defer.inlineCallbacks
    def test_file_size_limit(self):
        """A file past the file-size limit is not written."""
        target = self.mktemp()
        code = yield self.failure("write", {"target": target, "size": 2 * 2**20})
        self.assertIn(code, ("file_size", "error"))
        self.assertLessEqual(os.path.getsize(target), 2**20)

    @defer.inlineCallbacks
    def test_unknown_function(self):
        """A function that was never registered is an error, not a hang."""
        code = yield self.failure("nothing")
        self.assertEqual(code, "error")

    @defer.inlineCallbacks
    def test_new_conversation(self):
        """A storing worker that starts again gets a conversation of its
        own; the zygote lives on."""
        yield self.sandbox.run("answer", self.path)
        self.sandbox.stop()
        self.sandbox.connect(reactor)
        yield defer.succeed(None)
        result = yield self.sandbox.run("answer", self.path)
        self.assertEqual(result["size"], 5)

    def test_register_after_start(self):
        """The zygote has what existed when it forked: no later function."""
        self.assertRaises(RuntimeError, self.sandbox.register, "late", answer)
