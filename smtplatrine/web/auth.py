"""Who is asking: login sessions (kept in the dashboard's memory, so a
restart logs everyone out and the database is never written for them),
roles, and the slowing down of repeated failed logins."""

import secrets

import attrs

from smtplatrine.store.users import ROLES


def allows(role, needed):
    """True if *role* may do what *needed* may (admin > forensic > statistical)."""
    return ROLES.index(role) >= ROLES.index(needed)


@attrs.frozen
class Identity:
    """A logged-in user (*via* "session") or a script (*via* "token")."""
    name: str
    role: str
    via: str
    csrf: str = ""

    def may(self, needed):
        return allows(self.role, needed)


@attrs.define
class Session:
    name: str
    csrf: str
    created: float
    seen: float


class Sessions:
    """Login sessions by their cookie value, ended after *idle* seconds
    without a request or *lifetime* seconds after login, whichever is first.
    At most *limit* are kept (the oldest goes first)."""

    def __init__(self, clock, idle, lifetime, limit=10_000):
        self._clock = clock
        self._idle, self._lifetime, self._limit = idle, lifetime, limit
        self._sessions = {}

    def start(self, name):
        """A new session for user *name*: (cookie value, CSRF token)."""
        now = self._clock.seconds()
        self._expire(now)
        while len(self._sessions) >= self._limit:
            del self._sessions[next(iter(self._sessions))]
        key, csrf = secrets.token_urlsafe(32), secrets.token_urlsafe(32)
        self._sessions[key] = Session(name, csrf, now, now)
        return key, csrf

    def find(self, key):
        """The live Session of cookie value *key* (its idle time starts
        again), or None."""
        session = self._sessions.get(key or "")
        now = self._clock.seconds()
        if session is None:
            return None
        if now - session.seen > self._idle or now - session.created > self._lifetime:
            del self._sessions[key]
            return None
        session.seen = now
        return session

    def alive(self, key):
        """True if the session of cookie value *key* is live (its idle time
        is not started again: a page left open does not keep it alive)."""
        session = self._sessions.get(key or "")
        now = self._clock.seconds()
        return session is not None and not (now - session.seen > self._idle
                                             or now - session.created > self._lifetime)

    def end(self, key):
        self._sessions.pop(key or "", None)

    def end_user(self, name):
        """End every session of user *name* (removed, or given a new password)."""
        for key in [k for k, s in self._sessions.items() if s.name == name]:
            del self._sessions[key]

    def _expire(self, now):
        for key in [k for k, s in self._sessions.items()
                    if now - s.seen > self._idle or now - s.created > self._lifetime]:
            del self._sessions[key]


class Throttle:
    """Failed logins per client address and per user name: after *free*
    failures within *window* seconds, each further attempt waits 1 s,
    doubling up to *longest*.  Bounded: at most *limit* keys are kept."""

    def __init__(self, clock, free, window, longest=30.0, limit=100_000):
        self._clock = clock
        self._free, self._window, self._longest, self._limit = free, window, longest, limit
        self._failures = {}

    def delay(self, *keys):
        """Seconds the next attempt for *keys* must wait."""
        now = self._clock.seconds()
        worst = 0
        for key in keys:
            times = [t for t in self._failures.get(key, ()) if now - t < self._window]
            if times:
                self._failures[key] = times
            else:
                self._failures.pop(key, None)
            worst = max(worst, len(times))
        if worst < self._free:
            return 0.0
        return min(2.0 ** (worst - self._free), self._longest)

    def failed(self, *keys):
        now = self._clock.seconds()
        for key in keys:
            if key not in self._failures and len(self._failures) >= self._limit:
                del self._failures[next(iter(self._failures))]
            times = self._failures.setdefault(key, [])
            times.append(now)
            del times[:-64]

    def succeeded(self, *keys):
        for key in keys:
            self._failures.pop(key, None)
