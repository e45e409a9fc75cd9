"""What a page of the dashboard is, so that adding one takes a function:

    @page(r"/sessions", role="statistical", title="Sessions", nav=True)
    async def sessions(ctx):
        found = await ctx.read(queries.sessions, ctx.scope, ctx.page, ctx.per_page)
        return Result(found.as_json("sessions"), lambda: templates.sessions(ctx, found))

The site then serves it at its path as HTML and at ``/api`` + path as
JSON, behind the login or a token, to *role* and above, with the filters
every page takes already read from the query string (:class:`Context`:
time range, sensor, page, and ``q`` for pages that search).  A handler
raises :class:`HTTPError` for what the user must be told (not found,
forbidden, bad parameter).
"""

import re

import attrs

from smtplatrine.store import queries, search

ROUTES = []
# The pages in the navigation bar, in order.
NAVIGATION = []


@attrs.frozen
class Route:
    pattern: re.Pattern
    method: str
    role: str
    handler: object
    title: str


def page(path, role, title="", method="GET", nav=False):
    """Serve the decorated ``async def handler(ctx, **groups)`` at *path* (a
    regular expression; its named groups are passed on) to *role* and above."""
    def register(handler):
        ROUTES.append(Route(re.compile(path + r"\Z"), method, role, handler, title))
        if nav:
            NAVIGATION.append((path, title, role))
        return handler
    return register


def match(path, method):
    """(Route, groups) for *path*, or (None, None); ("method", None) if
    the path is served but not with *method*."""
    seen = False
    for route in ROUTES:
        found = route.pattern.match(path)
        if found:
            if route.method == method:
                return route, found.groupdict()
            seen = True
    return ("method" if seen else None), None


class HTTPError(Exception):
    """Tell the user *message* with HTTP *status*."""

    def __init__(self, status, message):
        super().__init__(message)
        self.status = status
        self.message = message


@attrs.frozen
class Result:
    """A page: *data* for its JSON twin, *html* a function giving the tag."""
    data: dict
    html: object


@attrs.frozen
class Download:
    """Bytes for the browser to save as *filename*, never to show."""
    data: bytes
    filename: str


@attrs.frozen
class Preview:
    """Hostile HTML, served under a policy that lets nothing run or load."""
    markup: str


@attrs.frozen
class Stream:
    """A response written piece by piece, as long as it takes: ``await
    body(output)`` writes with ``await output.write(bytes)`` (see
    web.streaming); with a *filename*, the browser saves it."""
    body: object
    content_type: str
    filename: str = ""


@attrs.frozen
class Redirect:
    location: str


@attrs.define
class Context:
    """One request to a page: who asks (*identity*), the dashboard (*app*:
    configuration, database, sessions), whether JSON is asked for (*api*),
    the parameters every list takes, and reads (:meth:`read`)."""
    request: object
    identity: object
    app: object
    api: bool
    args: dict
    scope: queries.Scope = None
    page: int = 1
    per_page: int = 50
    query: str = ""
    search: object = None
    sensors: list = attrs.Factory(list)
    title: str = ""

    @classmethod
    def build(cls, request, identity, app, api, args):
        """Read the common parameters of *args* ({name: text}); HTTPError
        400 for one that makes no sense (the search query is checked by
        the pages that take it: :meth:`parse_query`)."""
        try:
            page = int(args.get("page") or 1)
            if not 1 <= page <= 100_000:
                raise ValueError
        except ValueError:
            raise HTTPError(400, "page must be a whole number from 1") from None
        bounds = []
        for name in ("since", "until"):
            text = args.get(name, "").strip()
            try:
                bounds.append(search.moment(text) if text else None)
            except ValueError:
                raise HTTPError(400, f"{name} must be a date or time such as 2026-03-02"
                                     f" or 2026-03-02T10:00 (UTC)") from None
        scope = queries.Scope(*bounds, args.get("sensor") or None)
        return cls(request, identity, app, api, args, scope, page,
                   app.config.web.page_size, args.get("q", "").strip())

    def parse_query(self):
        """Parse ``q``; a SearchError is shown to the user, not raised."""
        if self.query:
            self.search = search.parse(self.query)

    async def read(self, interaction, *args):
        """``interaction(cursor, dialect, *args)`` on the read-only connections."""
        return await self.app.reader.run(interaction, self.app.reader.dialect, *args)

    def may(self, role):
        return self.identity.may(role)
