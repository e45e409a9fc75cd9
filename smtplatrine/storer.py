"""The server's handle on the storing process (:mod:`smtplatrine.storing`):
starting it, telling it what the spool holds, handing it the SMTP side's
events.

The lines it writes to the process's input are ``message ID`` and
``session ID`` (the spool has them on disk) and ``event JSON`` (for the
outputs); none is longer than ``MAX_LINE``.  The process's output holds
its log events and ``left ID...`` lines: messages out of the spool, which
the spool's backlog counts.
"""

import json

from twisted.internet.interfaces import IPushProducer
from twisted.logger import Logger
from zope.interface import implementer

from smtplatrine import child
from smtplatrine.interfaces import ISpoolConsumer

log = Logger()

# The longest line on the process's input (an event, as JSON).
MAX_LINE = 1024 * 1024
# Bytes of events written to the process's input while it does not read
# (a busy or restarting worker) before further events are dropped.
MAX_WAITING = 1024 * 1024
# What starts a line of the process that lists messages out of the spool.
LEFT = b"left "


@implementer(IPushProducer, ISpoolConsumer)
class StoringProcess(child.ChildProcess):
    """Runs the storing process for *config*, as *ids* (a (uid, gid), or
    None to stay who we are).  That process starts its worker again when
    the worker ends unasked; should it end itself, the spool keeps
    everything until smtplatrine is restarted.

    It is also the SMTP side's sink of events: each goes to the process as
    a line.  While the process does not read (busy, or its worker starting
    again), up to ``MAX_WAITING`` bytes of them wait; the rest are dropped,
    and *lost* (a function of the number) is told once they flow again.
    *left* (a function of a list of message ids) hears of the messages the
    process took out of the spool.
    """

    def __init__(self, reactor, config, ids, lost=None, left=None):
        super().__init__(reactor, config, ids, "smtplatrine.storing", "the storing process",
                         ": captured mail stays in the spool until smtplatrine is"
                         " restarted")
        self._lost = lost
        self._left = left
        # Bytes written since the pipe filled (None: it is not full), and
        # events dropped meanwhile.
        self._waiting = None
        self._dropped = 0

    def lineReceived(self, line):
        """A line of the process: messages that left the spool, or a log
        event."""
        if line.startswith(LEFT):
            if self._left is not None:
                self._left(line[len(LEFT):].decode("ascii", "replace").split())
        else:
            super().lineReceived(line)

    def connectionMade(self):
        self.transport.registerProducer(self, True)

    def pauseProducing(self):
        """The pipe is full: the process does not read for now.  (The pipe
        says so at every write while it is full: only the first starts
        the count.)"""
        if self._waiting is None:
            self._waiting = 0

    def resumeProducing(self):
        self._waiting = None
        dropped, self._dropped = self._dropped, 0
        if dropped and self._lost is not None:
            self._lost(dropped)

    def stopProducing(self):
        self._waiting = None

    def write(self, event):
        """Hand *event* to the process, for the outputs."""
        if self._stopping:
            return
        line = b"event " + json.dumps(event, sort_keys=True).encode("ascii") + b"\n"
        if (self._ended.called or len(line) > MAX_LINE
                or (self._waiting is not None and self._waiting + len(line) > MAX_WAITING)):
            if not self._dropped:
                log.warn("the storing process does not take events now: they are"
                         " dropped, not given to the outputs, until it does")
            self._dropped += 1
            return
        if self._waiting is not None:
            self._waiting += len(line)
        self.transport.write(line)

    def close(self):
        """The process ends with :meth:`stop`."""

    def notify(self, kind, item):
        """Tell the process that the spool holds *kind* (message or
        session) *item*; what it misses, its scans find."""
        if not self._ended.called:
            self.transport.write(f"{kind} {item}\n".encode("ascii"))
