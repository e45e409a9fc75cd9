"""The dashboard's web resource: every request goes through here, which
sets the security headers, finds who asks (session cookie or Bearer token),
logs in and out, checks the role and the CSRF token, and renders what the
page returns as HTML, JSON (under ``/api``), a download or a sandboxed
preview.  A request can fail with a message; never with a traceback."""

# twisted.web reads Content-Type with the email package, which it imports
# at the first form posted: after the privilege drop, which the Python
# library may be out of reach of.  Import them now.
import email.message  # noqa: F401
import email.parser  # noqa: F401
import email.policy  # noqa: F401
import json
import secrets
from importlib.resources import files

from twisted.internet import defer, task, threads
from twisted.logger import Logger
from twisted.web import resource, server
from twisted.web.template import flattenString

from smtplatrine import capture
from smtplatrine.events import printable
from smtplatrine.store import queries, users
from smtplatrine.store.dialects import Rejected, Unavailable
from smtplatrine.web import templates, views  # noqa: F401 (views registers the pages)
# More pages, after views' in the navigation bar.
from smtplatrine.web import pivots, blocklist, exports, live  # noqa: F401,I001
from smtplatrine.web.auth import Identity, Sessions, Throttle
from smtplatrine.web.routing import (Context, Download, HTTPError, Preview, Redirect,
                                     Stream, match)
from smtplatrine.web.streaming import Gone, Output

log = Logger()

SESSION_COOKIE, LOGIN_COOKIE = b"smtplatrine_session", b"smtplatrine_login"

# The pages: our own scripts, styles, images and event streams only; no
# frame, no plugin.
PAGE_POLICY = ("default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:;"
               " connect-src 'self'; frame-src 'self'; form-action 'self';"
               " frame-ancestors 'none'; base-uri 'none'")
# A captured HTML body: nothing runs, nothing loads but its inline styles
# and data: images, no form goes anywhere, and it is a sandbox of its own.
PREVIEW_POLICY = ("default-src 'none'; style-src 'unsafe-inline'; img-src data:;"
                  " font-src data:; form-action 'none'; frame-ancestors 'self';"
                  " base-uri 'none'; sandbox")
_STATIC_TYPES = {".css": "text/css; charset=utf-8", ".svg": "image/svg+xml",
                 ".js": "text/javascript; charset=utf-8"}


def _static():
    """The files under web/static, read once: {name: (bytes, type)}."""
    folder = files("smtplatrine.web") / "static"
    return {f.name: (f.read_bytes(), _STATIC_TYPES[f.name[f.name.rindex("."):]])
            for f in folder.iterdir() if f.name[f.name.rfind("."):] in _STATIC_TYPES}


class Dashboard(resource.Resource):
    """The whole dashboard for *config*, reading through *reader* (a
    read-only Database) and writing users through *writer*; *events* takes
    the login events; *clock* times sessions and the login throttle."""

    isLeaf = True

    def __init__(self, config, reader, writer, events, clock):
        super().__init__()
        self.config = config
        self.reader, self.writer = reader, writer
        self.events = events
        self.clock = clock
        web = config.web
        self.sessions = Sessions(clock, web.session_idle, web.session_lifetime)
        self.throttle = Throttle(clock, web.login_failures, web.login_window)
        self.static = _static()
        # Why the database cannot be used yet (None: it can).
        self.unavailable = "the database is being opened"

    async def write(self, interaction, *args):
        """``interaction(cursor, dialect, *args)`` on the connection that may write."""
        try:
            return await self.writer.run(interaction, self.writer.dialect, *args)
        except Rejected as e:
            raise HTTPError(403, f"The dashboard's database account may not write"
                                 f" this ({e}); grant it, or use smtplatrine user or"
                                 f" smtplatrine acl on the command line.") from None

    def render(self, request):
        _headers(request)
        lost = []
        request.notifyFinish().addErrback(lost.append)
        d = defer.Deferred.fromCoroutine(self._serve(request))
        d.addErrback(self._failed, request)
        d.addBoth(lambda _: None if request.finished or lost else request.finish())
        return server.NOT_DONE_YET

    async def _serve(self, request):
        path = request.path.decode("utf-8", "replace")
        method = request.method.decode("ascii", "replace")
        if path.startswith("/static/"):
            return self._serve_static(request, path[len("/static/"):])
        api = path == "/api" or path.startswith("/api/")
        try:
            args = {k.decode("utf-8"): v[0].decode("utf-8") for k, v in request.args.items()}
        except UnicodeDecodeError:
            return await self._error(request, None, api, 400, "The parameters are not UTF-8.")
        if self.unavailable is not None:
            return await self._error(request, None, api, 503, "The database cannot be used"
                                     f" yet: {self.unavailable}.")
        if path == "/login":
            return await (self._login(request, args) if method == "POST"
                          else self._login_form(request, args.get("next", "")))
        identity = await self._identify(request)
        if path == "/logout" and method == "POST":
            try:
                return self._logout(request, identity, args)
            except HTTPError as e:
                return await self._error(request, None, api, e.status, e.message, identity)
        if identity is None:
            if api:
                request.setHeader(b"WWW-Authenticate", b'Bearer realm="smtplatrine"')
                return _json(request, 401, {"error": "log in, or send Authorization:"
                                                     " Bearer TOKEN"})
            target = request.uri.decode("utf-8", "replace")
            return _redirect(request, templates.link("/login", next=target))
        route, groups = match(path[len("/api"):] if api else path, method)
        ctx = None
        try:
            if route is None:
                raise HTTPError(404, "There is no such page.")
            if route == "method":
                raise HTTPError(405, f"This page does not take {method}.")
            if not identity.may(route.role):
                raise HTTPError(403, f"This needs the {route.role} role; you are"
                                     f" {identity.role}.")
            if method == "POST":
                self._check_csrf(request, identity, args)
            ctx = Context.build(request, identity, self, api, args)
            if not api:
                ctx.sensors = await ctx.read(queries.sensors)
            result = await route.handler(ctx, **groups)
        except HTTPError as e:
            return await self._error(request, ctx, api, e.status, e.message, identity)
        return await self._respond(request, ctx, result)

    async def _respond(self, request, ctx, result):
        if isinstance(result, Redirect):
            return _redirect(request, result.location)
        if isinstance(result, Download):
            request.setHeader(b"Content-Type", b"application/octet-stream")
            request.setHeader(b"Content-Disposition",
                              f'attachment; filename="{result.filename}"'.encode("ascii"))
            request.setHeader(b"Content-Length", str(len(result.data)).encode())
            request.write(result.data)
            return
        if isinstance(result, Stream):
            return await _stream(request, result)
        if isinstance(result, Preview):
            request.setHeader(b"Content-Security-Policy", PREVIEW_POLICY.encode())
            request.setHeader(b"X-Frame-Options", b"SAMEORIGIN")
            request.setHeader(b"Content-Type", b"text/html; charset=utf-8")
            request.write(result.markup.encode("utf-8"))
            return
        if ctx.api:
            return _json(request, 200, result.data)
        await _html(request, 200, result.html())

    async def _error(self, request, ctx, api, status, message, identity=None):
        if api:
            return _json(request, status, {"error": message})
        if ctx is None and identity is not None:
            ctx = Context(request, identity, self, False, {})
        await _html(request, status, templates.error(ctx, status, message))

    def _failed(self, failure, request):
        if failure.check(Unavailable):
            log.warn("dashboard: the database cannot be used: {error}",
                     error=str(failure.value))
            message = "The database cannot be reached now; try again in a moment."
            status = 503
        else:
            log.failure("dashboard: {uri} failed", failure,
                        uri=printable(request.uri.decode("utf-8", "replace")))
            message, status = "Something went wrong here; the log says what.", 500
        if not request.startedWriting:
            request.setResponseCode(status)
            request.setHeader(b"Content-Type", b"text/plain; charset=utf-8")
            request.write(message.encode())

    def _serve_static(self, request, name):
        found = self.static.get(name)
        if found is None:
            request.setResponseCode(404)
            return
        data, kind = found
        request.setHeader(b"Content-Type", kind.encode())
        request.setHeader(b"Cache-Control", b"max-age=3600")
        request.write(data)

    async def _identify(self, request):
        """The Identity of the request's session cookie or Bearer token, or None."""
        authorization = request.getHeader(b"authorization") or b""
        if authorization[:7].lower() == b"bearer ":
            token = authorization[7:].strip().decode("ascii", "replace")
            found = await self.reader.run(users.find_token, self.reader.dialect, token)
            return Identity(found[0], found[1], "token") if found else None
        key = (request.getCookie(SESSION_COOKIE) or b"").decode("ascii", "replace")
        session = self.sessions.find(key)
        if session is None:
            return None
        found = await self.reader.run(users.find, self.reader.dialect, session.name)
        if found is None:
            self.sessions.end(key)
            return None
        return Identity(session.name, found[0], "session", session.csrf)

    def _check_csrf(self, request, identity, args):
        """A state-changing request with a session needs its CSRF token (a
        token is no ambient credential: a script's request needs none)."""
        if identity.via != "session":
            return
        given = args.get("csrf") or (request.getHeader(b"x-csrf-token") or b"").decode(
            "ascii", "replace")
        if not secrets.compare_digest(given.encode(), identity.csrf.encode()):
            raise HTTPError(403, "This form is missing its CSRF token or it is stale;"
                                 " reload the page and try again.")

    async def _login_form(self, request, next_path, error="", status=200):
        csrf = secrets.token_urlsafe(24)
        request.addCookie(LOGIN_COOKIE, csrf.encode(), path=b"/", httpOnly=True,
                          sameSite=b"strict", secure=self._secure(request))
        await _html(request, status, templates.login(error, csrf, _local(next_path)))

    async def _login(self, request, args):
        name, password = args.get("user", "").strip(), args.get("password", "")
        cookie = (request.getCookie(LOGIN_COOKIE) or b"").decode("ascii", "replace")
        if not cookie or not secrets.compare_digest(args.get("csrf", "").encode(),
                                                    cookie.encode()):
            return await self._login_form(request, args.get("next", ""),
                                          "The login form expired; log in again.", 403)
        address = request.getClientAddress()
        keys = (("address", getattr(address, "host", "")), ("user", name.lower()[:64]))
        delay = self.throttle.delay(*keys)
        if delay:
            await task.deferLater(self.clock, delay, lambda: None)
        found = await self.reader.run(users.find, self.reader.dialect, name) if name else None
        matches = await threads.deferToThread(
            users.password_matches, found[1] if found else users.decoy(), password)
        if not (found and matches):
            self.throttle.failed(*keys)
            self.events.emit("smtplatrine.web.login.failed", self._identity(request),
                             user=printable(name[:64]), delayed=delay,
                             reason="no such user" if not found else "wrong password")
            return await self._login_form(request, args.get("next", ""),
                                          "Wrong user name or password.", 401)
        self.throttle.succeeded(*keys)
        key, _ = self.sessions.start(name)
        request.addCookie(SESSION_COOKIE, key.encode(), path=b"/", httpOnly=True,
                          sameSite=b"strict", secure=self._secure(request))
        self.events.emit("smtplatrine.web.login", self._identity(request), user=name,
                         role=found[0])
        return _redirect(request, _local(args.get("next", "")) or "/messages")

    def _logout(self, request, identity, args):
        if identity is not None:
            self._check_csrf(request, identity, args)
            self.sessions.end((request.getCookie(SESSION_COOKIE) or b"").decode("ascii"))
        request.addCookie(SESSION_COOKIE, b"", path=b"/", httpOnly=True, max_age=b"0",
                          sameSite=b"strict", secure=self._secure(request))
        return _redirect(request, "/login")

    def _secure(self, request):
        return request.isSecure() or self.config.web.secure_cookie

    def _identity(self, request):
        """The identity of the dashboard's events: the browser's connection."""
        client, server_address = request.getClientAddress(), request.getHost()
        return capture.Identity("dashboard", self.config.server.sensor_name,
                                getattr(client, "host", None), getattr(client, "port", None),
                                getattr(server_address, "host", None),
                                getattr(server_address, "port", None))


def _local(path):
    """*path* if it is a path of this site (no other host), else ""."""
    if path.startswith("/") and not path.startswith("//") and "\\" not in path:
        return path
    return ""


def _headers(request):
    # Nothing that names the software and its version to whoever finds the port.
    request.responseHeaders.removeHeader(b"Server")
    for name, value in ((b"Content-Security-Policy", PAGE_POLICY.encode()),
                        (b"X-Content-Type-Options", b"nosniff"),
                        (b"Referrer-Policy", b"no-referrer"),
                        (b"X-Frame-Options", b"DENY"),
                        (b"Cross-Origin-Opener-Policy", b"same-origin"),
                        (b"Cross-Origin-Resource-Policy", b"same-origin"),
                        (b"X-DNS-Prefetch-Control", b"off"),
                        (b"Cache-Control", b"no-store")):
        request.setHeader(name, value)


async def _stream(request, result):
    request.setHeader(b"Content-Type", result.content_type.encode("ascii"))
    if result.filename:
        request.setHeader(b"Content-Disposition",
                          f'attachment; filename="{result.filename}"'.encode("ascii"))
    output = Output(request)
    try:
        await result.body(output)
    except Gone:
        pass
    except BaseException:
        output.abort()
        raise
    finally:
        output.close()


def _redirect(request, location):
    request.setResponseCode(303)
    request.setHeader(b"Location", location.encode("utf-8"))


def _json(request, status, data):
    request.setResponseCode(status)
    request.setHeader(b"Content-Type", b"application/json")
    request.write(json.dumps(data, sort_keys=True, default=str).encode("ascii") + b"\n")


async def _html(request, status, tag):
    request.setResponseCode(status)
    request.setHeader(b"Content-Type", b"text/html; charset=utf-8")
    body = await flattenString(None, tag)
    request.write(b"<!DOCTYPE html>\n" + body)
