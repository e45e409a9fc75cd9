"""The outputs of the storing process, each isolated behind a queue of its own.

Every enabled output plugin gets the events through a bounded queue
(``queue_size``; when it is full the oldest event goes) and a runner that
sends one batch at a time, waits for it (``SEND_TIMEOUT`` at most), and
after a failure keeps the batch and tries again after 1 s, doubling up to
``retry_max_delay``.  So a failing, slow or unreachable output holds up
neither storing nor the other outputs, and an outage costs one line when
it starts and one when it ends, saying how many events it dropped.
"""

import inspect
from collections import deque
from pathlib import Path

from twisted.internet import defer
from twisted.logger import Logger
from twisted.python.failure import Failure

from smtplatrine import interfaces
from smtplatrine.events import printable
from smtplatrine.interfaces import IEventOutput, OutputContext, OutputOptions

log = Logger()

# Seconds a send may take before it counts as failed.
SEND_TIMEOUT = 30.0
# Seconds the outputs have at stop to deliver what they hold.
CLOSE_SECONDS = 5.0


def discover(package=None):
    """Every IEventOutput plugin in *package* (``twisted.plugins`` by default)."""
    return interfaces.discover(IEventOutput, package)


def configure(plugins, config, reactor):
    """An :class:`Outputs` of the *plugins* that *config* enables,
    configured; one that cannot start stops start-up, saying why."""
    runners = []
    for plugin in plugins:
        section = f"output_{plugin.name}"
        options = config.options(section, plugin.options)
        if not isinstance(options, OutputOptions):
            raise SystemExit(f"smtplatrine: output {plugin.name}: its options class"
                             f" does not derive from OutputOptions")
        if not options.enabled:
            continue
        context = OutputContext(options, reactor, config.server.sensor_name,
                                Path(config.server.data_dir))
        try:
            output = plugin.configure(context)
        except Exception as e:
            raise SystemExit(f"smtplatrine: output {plugin.name} cannot start: {e};"
                             f" fix [{section}] or set enabled = false") from None
        if output is not None:
            runners.append(Runner(plugin.name, output, reactor, options.queue_size,
                                  options.retry_max_delay))
    log.info("outputs: {names}", names=", ".join(r.name for r in runners) or "none")
    return Outputs(runners)


class Outputs:
    """The runners of the enabled outputs, as one sink of events."""

    def __init__(self, runners):
        self.runners = runners

    def write(self, event):
        for runner in self.runners:
            runner.write(event)

    def close(self, seconds=CLOSE_SECONDS):
        return defer.gatherResults([defer.Deferred.fromCoroutine(r.close(seconds))
                                    for r in self.runners], consumeErrors=True)


def _call(function, *args):
    """What *function* returns (a Deferred, a coroutine or a value) as a
    Deferred."""
    try:
        result = function(*args)
    except Exception:
        return defer.fail(Failure())
    if inspect.isawaitable(result) and not isinstance(result, defer.Deferred):
        return defer.Deferred.fromCoroutine(result)
    return defer.maybeDeferred(lambda: result)


class Runner:
    """Feeds one configured *output*, named *name*, from a queue of at most
    *size* events, retrying after back-off up to *max_delay* seconds."""

    def __init__(self, name, output, reactor, size, max_delay):
        self.name = name
        self._output = output
        self._reactor = reactor
        self._size = size
        self._max_delay = max_delay
        self._batch_size = max(1, int(output.batch_size))
        self._interval = output.flush_interval
        self._queue = deque()
        self._sending = []
        self._timer = None
        self._delay = 0.0
        self._since = None
        self._error = None
        self._closing = False
        self._idle = None
        # Since start: events delivered, dropped (queue full) and refused
        # by the receiver; in the outage now, dropped and refused.
        self.delivered = self.dropped = self.refused = 0
        self._outage_dropped = self._outage_refused = 0

    @property
    def queued(self):
        """Events held: queued, and in the batch being sent."""
        return len(self._queue) + len(self._sending)

    @property
    def up(self):
        """False while the output fails to deliver."""
        return not self._delay

    def write(self, event):
        if self.queued >= self._size:
            if self._queue:
                self._queue.popleft()
                self._queue.append(event)
            self._drop(1)
        else:
            self._queue.append(event)
        self._schedule()

    def _drop(self, count):
        if not self._outage_dropped and not self._outage_refused:
            self._since = self._since or self._reactor.seconds()
            log.warn("output {name}: {size} events queued, the most it keeps; the"
                     " oldest are dropped until it delivers again",
                     name=self.name, size=self._size)
        self.dropped += count
        self._outage_dropped += count

    def _schedule(self):
        """Send soon: at once when a batch is full, else after the flush
        interval (not while a batch is out, or a retry waits)."""
        if self._sending or self._closing or self._delay or not self._queue:
            return
        wait = self._interval if len(self._queue) < self._batch_size else 0
        if self._timer is not None:
            if wait:
                return
            self._timer.cancel()
        self._timer = self._reactor.callLater(wait, self._send)

    def _send(self):
        self._timer = None
        count = min(self._batch_size, len(self._queue))
        if not count:
            self._quiet()
            return
        self._sending = [self._queue.popleft() for _ in range(count)]
        d = _call(self._output.send, list(self._sending))
        d.addTimeout(SEND_TIMEOUT, self._reactor)
        d.addCallbacks(self._sent, self._failed)

    def _sent(self, refused):
        batch, self._sending = self._sending, []
        refused = min(int(refused or 0), len(batch))
        self.delivered += len(batch) - refused
        if refused:
            if not self._outage_refused and not self._outage_dropped:
                self._since = self._since or self._reactor.seconds()
                log.warn("output {name}: the receiver refused {count} of {total} events"
                         " for good; more are counted until it takes them all",
                         name=self.name, count=refused, total=len(batch))
            self.refused += refused
            self._outage_refused += refused
        elif self._delay or self._outage_dropped or self._outage_refused:
            self._recovered()
        self._delay = 0.0
        self._next()

    def _recovered(self):
        log.info("output {name} delivers again after {seconds:.0f} s; {dropped} events"
                 " dropped and {refused} refused meanwhile", name=self.name,
                 seconds=self._reactor.seconds() - self._since,
                 dropped=self._outage_dropped, refused=self._outage_refused)
        self._since = None
        self._outage_dropped = self._outage_refused = 0

    def _failed(self, failure):
        batch, self._sending = self._sending, []
        self._queue.extendleft(reversed(batch))
        while len(self._queue) > self._size:
            self._queue.popleft()
            self._drop(1)
        error = printable(failure.getErrorMessage())[:300] or failure.type.__name__
        if not self._delay:
            self._since = self._since or self._reactor.seconds()
            log.warn("output {name} cannot deliver ({error}); it keeps up to {size}"
                     " events and tries again, waiting up to {max:g} s",
                     name=self.name, error=error, size=self._size, max=self._max_delay)
        self._delay = min(max(min(1.0, self._max_delay), self._delay * 2), self._max_delay)
        if self._closing:
            self._quiet()
            return
        self._timer = self._reactor.callLater(self._delay, self._send)

    def _next(self):
        if self._closing and not self._queue:
            self._quiet()
        elif self._closing:
            self._timer = self._reactor.callLater(0, self._send)
        else:
            self._schedule()

    def _quiet(self):
        """Nothing more will be sent (closing): wake :meth:`close`."""
        if self._idle is not None and not self._idle.called:
            self._idle.callback(None)

    async def close(self, seconds):
        """Send what is queued (unless the output is failing) for at most
        *seconds*, then close the output; say what was not delivered."""
        self._closing = True
        if self._timer is not None and self._timer.active():
            self._timer.cancel()
        self._timer = None
        self._idle = defer.Deferred()
        if not self._sending:
            if self._queue and not self._delay:
                self._send()
            else:
                self._quiet()
        self._idle.addTimeout(seconds, self._reactor)
        try:
            await self._idle
        except defer.TimeoutError:
            pass
        if self._timer is not None and self._timer.active():
            self._timer.cancel()
        left = self.queued
        if left or self._outage_dropped:
            log.warn("output {name} stopped with {left} events undelivered ({dropped}"
                     " dropped before)", name=self.name, left=left,
                     dropped=self._outage_dropped)
        try:
            await _call(self._output.close)
        except Exception:
            log.failure("output {name} failed to close", name=self.name)
