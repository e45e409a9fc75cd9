"""The Live page: sessions and messages as they are stored, without
reloading, by server-sent events (``/live/events``, read by
static/live.js, which puts every text in with textContent).

One :class:`Hub` per dashboard looks at the store once a second while
someone watches (store.live: by number, an index read), whatever the
number of watchers, and sends each what is new; a session comes again
with its transcript once it has ended (the forensic role's; the others
get no transcript, as on the session page).

Bounded: at most MAX_WATCHERS streams (PER_USER for one user), each ending
after STREAM_SECONDS (the browser connects again by itself, logging in
again with its cookie) or when its login session ends; a client that does
not read its stream is cut off once BACKLOG bytes wait for it.
"""

import json

from twisted.internet import defer
from twisted.internet.task import LoopingCall
from twisted.logger import Logger
from twisted.web.template import tags

from smtplatrine.events import printable
from smtplatrine.store import live as live_store
from smtplatrine.store.dialects import Rejected, Unavailable
from smtplatrine.web import templates
from smtplatrine.web.routing import HTTPError, Result, Stream, page
from smtplatrine.web.streaming import Gone

log = Logger()

INTERVAL = 1.0
MAX_WATCHERS = 20
PER_USER = 4
STREAM_SECONDS = 600.0
BACKLOG = 256 * 1024
# Numbers looked at again each time: on MySQL a transaction may commit
# after a later one (several sensors, one server); seen ones are skipped.
OVERLAP = 50
# Ids remembered as sent, sessions waited for to end.
REMEMBERED = 2000
OPEN_SESSIONS = 500
KEEPALIVE = 15


class Watcher:
    """One browser's stream: *output*, what it may see (*forensic*), and
    *alive*() whether its login still holds."""

    def __init__(self, output, name, forensic, alive):
        self.output, self.name, self.forensic, self.alive = output, name, forensic, alive
        self.ended = defer.Deferred()
        self._backlog = 0

    def send(self, data):
        """Write *data* unless the client lags too far behind (then cut it off)."""
        output = self.output
        if output.gone:
            return self.end()
        if output.paused:
            self._backlog += len(data)
            if self._backlog > BACKLOG:
                output.abort()
                return self.end()
        else:
            self._backlog = 0
        output.request.write(data)

    def end(self):
        if not self.ended.called:
            self.ended.callback(None)


class Hub:
    """Looks at the store through *reader* every INTERVAL seconds of
    *clock* while anyone watches, and sends what is new to the watchers."""

    def __init__(self, reader, clock):
        self.reader, self.clock = reader, clock
        self.watchers = []
        self._loop = None
        self._last = None           # (session number, message number)
        self._sent = {}             # ("s" or "m", id) -> None, oldest first
        self._open = {}             # session id -> None, waiting for its end
        self._ticks = 0

    def room(self, name):
        """HTTPError 503 if no more streams may open, for user *name*."""
        if len(self.watchers) >= MAX_WATCHERS:
            raise HTTPError(503, "Too many live views are open; close one and try again.")
        if sum(w.name == name for w in self.watchers) >= PER_USER:
            raise HTTPError(503, f"You have {PER_USER} live views open already; close one.")

    def admit(self, watcher):
        """Start sending to *watcher*; HTTPError 503 past the limits."""
        self.room(watcher.name)
        self.watchers.append(watcher)
        if self._loop is None:
            self._loop = LoopingCall(lambda: defer.Deferred.fromCoroutine(self._tick()))
            self._loop.clock = self.clock
            self._loop.start(INTERVAL, now=True).addErrback(
                lambda f: log.failure("live view: polling stopped", f))

    def leave(self, watcher):
        if watcher in self.watchers:
            self.watchers.remove(watcher)
        if not self.watchers and self._loop is not None:
            self._loop.stop()
            self._loop, self._last = None, None
            self._sent.clear()
            self._open.clear()

    async def _tick(self):
        for watcher in list(self.watchers):
            if not watcher.alive() or watcher.output.gone:
                watcher.end()
        try:
            await self._look()
        except (Unavailable, Rejected) as e:
            log.warn("live view: cannot read the database ({error})", error=str(e))
        except Exception:
            log.failure("live view: looking for what is new failed")
        self._ticks += 1
        if self._ticks % KEEPALIVE == 0:
            self._broadcast(b": keepalive\n\n", b": keepalive\n\n")

    async def _look(self):
        dialect = self.reader.dialect
        newest = await self.reader.run(live_store.newest, dialect)
        if self._last is None or newest[0] < self._last[0] or newest[1] < self._last[1]:
            # The first look, or the numbers began again (the file was
            # rebuilt): from now on.
            self._last = newest
            sessions, messages = await self.reader.run(
                live_store.since, dialect, newest[0] - OVERLAP, newest[1] - OVERLAP)
            for row in sessions:
                self._remember("s", row["session_id"])
            for row in messages:
                self._remember("m", row["message_id"])
            return
        sessions, messages = await self.reader.run(
            live_store.since, dialect, max(self._last[0] - OVERLAP, 0),
            max(self._last[1] - OVERLAP, 0))
        self._last = (max([newest[0]] + [r["seq"] for r in sessions]),
                      max([newest[1]] + [r["seq"] for r in messages]))
        for row in sessions:
            if self._remember("s", row["session_id"]):
                self._open[row["session_id"]] = None
                if row["ended"] is None:
                    self._send("session", row)
        while len(self._open) > OPEN_SESSIONS:
            del self._open[next(iter(self._open))]
        for row in await self.reader.run(live_store.ended, dialect, list(self._open)):
            del self._open[row["session_id"]]
            self._send("session", row)
        for row in messages:
            if self._remember("m", row["message_id"]):
                self._send("message", row)

    def _remember(self, kind, key):
        """Note *key* as sent; False if it was."""
        if (kind, key) in self._sent:
            return False
        self._sent[kind, key] = None
        while len(self._sent) > REMEMBERED:
            del self._sent[next(iter(self._sent))]
        return True

    def _send(self, kind, row):
        row = {k: v for k, v in row.items() if k != "seq"}
        transcript = row.pop("transcript", None)
        plain = _event(kind, row)
        if transcript is not None:
            row["transcript"] = [line for step in transcript
                                 for line in templates.step_lines(step)]
        self._broadcast(plain, _event(kind, row))

    def _broadcast(self, plain, forensic):
        for watcher in list(self.watchers):
            watcher.send(forensic if watcher.forensic else plain)


def _event(kind, row):
    """A server-sent event: its data one line of JSON (ASCII: escaped)."""
    text = {k: printable(v) if isinstance(v, str) else v for k, v in row.items()}
    return f"event: {kind}\ndata: {json.dumps(text, sort_keys=True)}\n\n".encode("ascii")


@page(r"/live", "statistical", "Live", nav=True)
async def live(ctx):
    return Result({"events": "/api/live/events"}, lambda: _page(ctx))


@page(r"/live/events", "statistical")
async def live_events(ctx):
    app = ctx.app
    hub = getattr(app, "live", None)
    if hub is None:
        hub = app.live = Hub(app.reader, app.clock)
    identity = ctx.identity
    key = ctx.request.getCookie(b"smtplatrine_session") or b""
    if identity.via == "session":
        def alive():
            return app.sessions.alive(key.decode("ascii", "replace"))
    else:
        def alive():
            return True

    # Said before the answer starts (admit, in the same turn, checks again).
    hub.room(identity.name)

    async def body(output):
        watcher = Watcher(output, identity.name, ctx.may("forensic"), alive)
        hub.admit(watcher)
        timer = app.clock.callLater(STREAM_SECONDS, watcher.end)
        output.request.notifyFinish().addBoth(lambda _: watcher.end())
        try:
            # How long the browser waits before it connects again.
            watcher.send(b"retry: 2000\n: live\n\n")
            await watcher.ended
        finally:
            if timer.active():
                timer.cancel()
            hub.leave(watcher)
        if output.gone:
            raise Gone()

    return Stream(body, "text/event-stream")


def _page(ctx):
    forensic = ctx.may("forensic")
    return templates.layout(
        ctx, "Live",
        tags.h1("Live ", tags.span("connecting…", id="live-state", class_="badge muted")),
        tags.p("Sessions and messages appear here as they are stored; the lists have"
               " what came before." + ("" if forensic else " Transcripts need the"
                                       " forensic role."), class_="muted"),
        tags.h2("Sessions"),
        templates.table(["Started (UTC)", "Sensor", "Client", "HELO", "AUTH", "Messages",
                         "Closed"], [], "list live-sessions"),
        tags.h2("Messages"),
        templates.table(["Received (UTC)", "Sensor", "Client", "MAIL FROM", "Subject",
                         "Size"], [], "list live-messages"),
        tags.script(src="/static/live.js"))
