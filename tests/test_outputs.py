"""The outputs' runner: batches, back-off, bounded queues, isolation, stop."""

from twisted.internet import defer
from twisted.internet.task import Clock
from twisted.trial import unittest

from smtplatrine.outputs.service import SEND_TIMEOUT, Outputs, Runner
from smtplatrine.testing import logged


class FakeOutput:
    """An output whose sends wait until the test answers them."""

    def __init__(self, batch_size=10, flush_interval=0.0):
        self.batch_size = batch_size
        self.flush_interval = flush_interval
        self.sends = []
        self.closed = False

    def send(self, events):
        d = defer.Deferred()
        self.sends.append((list(events), d))
        return d

    def close(self):
        self.closed = True

    def answer(self, result=None):
        events, d = self.sends.pop(0)
        if isinstance(result, Exception):
            d.errback(result)
        else:
            d.callback(result)
        return [e["n"] for e in events]


def numbered(runner, first, last):
    for n in range(first, last):
        runner.write({"eventid": "smtplatrine.rcpt", "n": n})


def warnings(events):
    return [e for e in events if e.get("log_namespace") == "smtplatrine.outputs.service"]


class RunnerTests(unittest.TestCase):

    def setUp(self):
        self.clock = Clock()
        self.output = FakeOutput()
        self.runner = Runner("fake", self.output, self.clock, 100, 8.0)

    def test_batches(self):
        """Events go in batches of batch_size, one batch out at a time."""
        numbered(self.runner, 0, 25)
        self.clock.advance(0)
        self.assertEqual(len(self.output.sends), 1)
        self.assertEqual(self.output.answer(), list(range(10)))
        self.clock.advance(0)
        self.assertEqual(self.output.answer(), list(range(10, 20)))
        self.clock.advance(0)
        self.assertEqual(self.output.answer(), list(range(20, 25)))
        self.assertEqual((self.runner.delivered, self.runner.queued), (25, 0))

    def test_flush_interval(self):
        """An output with a flush interval gets a part batch only after it,
        and a full batch at once."""
        output = FakeOutput(batch_size=5, flush_interval=2.0)
        runner = Runner("slow", output, self.clock, 100, 8.0)
        numbered(runner, 0, 3)
        self.clock.advance(1.9)
        self.assertEqual(output.sends, [])
        self.clock.advance(0.1)
        self.assertEqual(output.answer(), [0, 1, 2])
        numbered(runner, 3, 8)
        self.clock.advance(0)
        self.assertEqual(output.answer(), [3, 4, 5, 6, 7])

    def test_back_off_and_order(self):
        """A failed batch is sent again, first, after 1 s, then 2, 4, and at
        most retry_max_delay; nothing is lost and the order is kept."""
        events = logged(self)
        numbered(self.runner, 0, 3)
        self.clock.advance(0)
        waits = []
        for _ in range(5):
            self.output.answer(ConnectionRefusedError("refused"))
            numbered(self.runner, len(waits) + 3, len(waits) + 4)
            start = self.clock.seconds()
            while not self.output.sends:
                self.clock.advance(0.5)
            waits.append(self.clock.seconds() - start)
        self.assertEqual(waits, [1, 2, 4, 8, 8])
        self.assertFalse(self.runner.up)
        self.assertEqual(self.output.answer(), list(range(8)))
        self.assertTrue(self.runner.up)
        lines = [e["log_level"].name for e in warnings(events)]
        self.assertEqual(lines, ["warn", "info"])

    def test_full_queue_drops_oldest_reported_once(self):
        """While the output fails, the queue keeps the newest queue_size
        events; the drops are one warning, and counted in the line that
        says it delivers again."""
        events = logged(self)
        runner = Runner("small", self.output, self.clock, 10, 1.0)
        numbered(runner, 0, 5)
        self.clock.advance(0)
        self.output.answer(OSError("down"))
        numbered(runner, 5, 1000)
        self.assertEqual((runner.queued, runner.dropped), (10, 990))
        self.clock.advance(1)
        self.assertEqual(self.output.answer(), list(range(990, 1000)))
        lines = warnings(events)
        self.assertEqual([e["log_level"].name for e in lines], ["warn", "warn", "info"])
        self.assertEqual(lines[-1]["dropped"], 990)

    def test_hanging_output_times_out(self):
        """A send that never answers fails after SEND_TIMEOUT and is retried."""
        numbered(self.runner, 0, 1)
        self.clock.advance(0)
        self.clock.advance(SEND_TIMEOUT)
        self.assertFalse(self.runner.up)
        self.clock.advance(1)
        self.assertEqual(len(self.output.sends), 2)

    def test_isolated(self):
        """An output that hangs or raises holds up none of the others."""
        class Raising(FakeOutput):
            def send(self, events):
                raise RuntimeError("bug")
        good, hanging, raising = FakeOutput(), FakeOutput(), Raising()
        outputs = Outputs([Runner(name, output, self.clock, 5, 60.0) for name, output in
                           (("good", good), ("hanging", hanging), ("raising", raising))])
        delivered = []
        for n in range(30):
            outputs.write({"eventid": "smtplatrine.rcpt", "n": n})
            self.clock.advance(0)
            while good.sends:
                delivered.extend(good.answer())
        self.assertEqual(delivered, list(range(30)))
        self.assertEqual(len(hanging.sends), 1)
        self.assertEqual([r.dropped for r in outputs.runners], [0, 25, 25])

    def test_refused_counted(self):
        """Events the receiver refuses for good are counted, not retried."""
        numbered(self.runner, 0, 4)
        self.clock.advance(0)
        self.output.answer(3)
        self.clock.advance(10)
        self.assertEqual((self.runner.delivered, self.runner.refused, self.output.sends),
                         (1, 3, []))

    def test_close_delivers_what_is_queued(self):
        """At stop, what is queued is sent at once, then the output closed."""
        output = FakeOutput(flush_interval=30.0)
        runner = Runner("file", output, self.clock, 100, 8.0)
        numbered(runner, 0, 3)
        closed = defer.Deferred.fromCoroutine(runner.close(5))
        self.assertEqual(output.answer(), [0, 1, 2])
        self.successResultOf(closed)
        self.assertTrue(output.closed)

    def test_close_of_failing_output_waits_not(self):
        """A failing output is closed at once at stop; what it held is said."""
        events = logged(self)
        numbered(self.runner, 0, 3)
        self.clock.advance(0)
        self.output.answer(OSError("down"))
        closed = defer.Deferred.fromCoroutine(self.runner.close(5))
        self.successResultOf(closed)
        self.assertTrue(self.output.closed)
        self.assertEqual(warnings(events)[-1]["left"], 3)

    def test_close_gives_up_after_its_time(self):
        """A send that hangs at stop is given up after the seconds allowed."""
        numbered(self.runner, 0, 3)
        self.clock.advance(0)
        closed = defer.Deferred.fromCoroutine(self.runner.close(5))
        self.assertNoResult(closed)
        self.clock.advance(5)
        self.successResultOf(closed)
