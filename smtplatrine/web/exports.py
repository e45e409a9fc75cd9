"""The dashboard's exports of what a search finds: the messages as JSON
lines, CSV, an mbox or a zip of .eml files, their indicators as a STIX 2.1
bundle or a MISP event (the formats of smtplatrine.export, which
``smtplatrine export`` writes too).

Served at ``/export/messages.FORMAT`` with the parameters of the messages
page (``q``, ``sensor``, ``since``, ``until``), and under ``/api`` alike.
An export streams: rows are read a page at a time, formatted in a thread
and written at the pace of the client (web.streaming).

Roles: the raw messages (mbox, zip) need the forensic role, as the
message view's downloads do; the statistical role's JSON lines and CSV
leave out what its pages do (bodies, URLs, passwords), and its indicators
leave out URLs.  The zip is encrypted with the password ``infected``, as
the message view's zip is: a folder of live malware that a virus scanner
(or a double click) on the analyst's machine must not open by itself.
"""

import time

from twisted.internet import threads

from smtplatrine import export
from smtplatrine.layout import DataDir
from smtplatrine.store import indicators, search
from smtplatrine.web.routing import HTTPError, Stream, page
from smtplatrine.web.templates import MESSAGE_EXPORTS
from smtplatrine.web.views import visible
from smtplatrine.web.zipcrypto import EncryptedZip

# The formats of the messages' exports, and the role each needs.
FORMATS = {name: role for name, _, role in MESSAGE_EXPORTS}


class EmlZip:
    """The raw messages as ``MESSAGE_ID.eml`` files in an encrypted zip."""
    name, extension, content_type, source = "zip", "zip", "application/zip", "messages"
    raw = True

    def __init__(self):
        self._zip = EncryptedZip()

    def head(self):
        return b""

    def item(self, record):
        return self._zip.member(f"{record['message_id']}.eml", record["raw"])

    def tail(self):
        return self._zip.end()


@page(r"/export/messages\.(?P<name>" + "|".join(FORMATS) + ")", "statistical")
async def messages_export(ctx, name):
    needed = FORMATS[name]
    if not ctx.may(needed):
        raise HTTPError(403, f"This export needs the {needed} role; you are"
                             f" {ctx.identity.role}.")
    try:
        ctx.parse_query()
    except search.SearchError as e:
        raise HTTPError(400, f"The search cannot be read: {e}") from None
    forensic = ctx.may("forensic")
    config = ctx.app.config
    now = ctx.app.clock.seconds()
    if name == "zip":
        fmt = EmlZip()
    else:
        fmt = export.make(name, config.server.sensor_name,
                          f"smtplatrine: {ctx.query or 'everything'}", now, urls=forensic)
    kinds = tuple(k for k in indicators.KINDS if forensic or k != "url")
    raw_dir = DataDir.of(config).raw
    raw = getattr(fmt, "raw", False)

    def render(rows):
        """The bytes of a page of rows (in a thread: formats take CPU)."""
        pieces = []
        for row in rows:
            if raw:
                row = export.with_raw_file(row, raw_dir)
                if row.get("raw") is None:
                    continue
            elif fmt.source == "messages":
                row = visible(row, forensic)
            pieces.append(fmt.item(row))
        return b"".join(pieces)

    async def body(output):
        await output.write(fmt.head())
        position = None
        while True:
            rows, position = await ctx.read(export.read_page, fmt, ctx.scope, ctx.search,
                                            position, False, kinds)
            await output.write(await threads.deferToThread(render, rows))
            if position is None:
                break
        await output.write(fmt.tail())

    stamp = time.strftime("%Y%m%dT%H%M%SZ", time.gmtime(now))
    return Stream(body, fmt.content_type, f"smtplatrine-messages-{stamp}.{fmt.extension}")
