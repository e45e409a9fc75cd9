"""Responses written piece by piece at the pace of the client: an export of
any size or an endless event stream holds only what the client has not
taken yet, however slowly it reads."""

from twisted.internet import defer
from twisted.internet.interfaces import IPushProducer
from zope.interface import implementer


class Gone(Exception):
    """The client went away (or the response was cut off)."""


@implementer(IPushProducer)
class Output:
    """Writes to *request*; :meth:`write` waits while the connection's
    send buffer is full (twisted.web pauses us as its producer)."""

    def __init__(self, request):
        self.request = request
        self.gone = False
        self._paused = None
        request.registerProducer(self, True)
        request.notifyFinish().addBoth(lambda _: self.stopProducing())

    async def write(self, data):
        """Send *data*, then wait until the client can take more; Gone if
        it went away."""
        if self.gone:
            raise Gone()
        if data:
            self.request.write(data)
        if self._paused is not None:
            await self._paused
        if self.gone:
            raise Gone()

    @property
    def paused(self):
        """True while the client does not keep up."""
        return self._paused is not None

    def pauseProducing(self):
        if self._paused is None:
            self._paused = defer.Deferred()

    def resumeProducing(self):
        waiting, self._paused = self._paused, None
        if waiting is not None:
            waiting.callback(None)

    def stopProducing(self):
        self.gone = True
        self.resumeProducing()

    def abort(self):
        """Cut the connection: the client sees a broken download rather
        than a complete one that lacks its end."""
        self.stopProducing()
        transport = getattr(self.request.channel, "transport", None)
        if transport is not None:
            transport.abortConnection()

    def close(self):
        if self.request.channel is not None:    # None: the connection is gone
            self.request.unregisterProducer()
