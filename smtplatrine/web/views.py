"""The pages of the dashboard: messages (with search), the message view and
its downloads, sessions, users.  Each is served as HTML and, under
``/api``, as JSON (see routing)."""

import re

import attrs
from twisted.internet import threads

from smtplatrine import export
from smtplatrine.layout import DataDir
from smtplatrine.store import queries, search, users
from smtplatrine.web import templates
from smtplatrine.web.routing import (Download, HTTPError, Preview, Redirect, Result,
                                     page)
from smtplatrine.web.zipcrypto import encrypted_zip

_ID = "[0-9a-f-]{36}"


def displayable(value):
    """*value* with text that is not valid Unicode (bytes that were not
    UTF-8, kept as surrogates) escaped as \\xNN, for a page."""
    if isinstance(value, str):
        try:
            value.encode("utf-8")
            return value
        except UnicodeEncodeError:
            return value.encode("utf-8", "surrogateescape").decode("utf-8", "backslashreplace")
    if isinstance(value, dict):
        return {k: displayable(v) for k, v in value.items()}
    if isinstance(value, list):
        return [displayable(v) for v in value]
    return value


def safe_name(name, fallback):
    """A file name that is only letters, digits, dot, dash and underscore."""
    cleaned = re.sub(r"[^A-Za-z0-9._-]+", "_", name or "").lstrip("._")[-100:]
    return cleaned or fallback


@page(r"/messages", "statistical", "Messages", nav=True)
async def messages(ctx):
    try:
        ctx.parse_query()
    except search.SearchError as e:
        raise HTTPError(400, f"The search cannot be read: {e}") from None
    if ctx.search and not ctx.may("forensic") and any(
            term.field == "password" for term in ctx.search.terms):
        raise HTTPError(403, "Searching by password needs the forensic role.")
    found = await ctx.read(queries.messages, ctx.scope, ctx.search, ctx.page, ctx.per_page)
    return Result(found.as_json("messages"), lambda: templates.messages(
        ctx, attrs.evolve(found, rows=displayable(found.rows))))


def visible(record, forensic):
    """What the role may see of a stored message: without *forensic*, no
    body, URL, password or transcript; never our file paths."""
    record = dict(record)
    record.pop("raw_path", None)
    record["attachments"] = [{k: v for k, v in a.items() if k != "stored_path"}
                             for a in record["attachments"]]
    session = dict(record.get("session") or {})
    if not forensic:
        for name in ("body_text", "body_html", "urls"):
            record.pop(name, None)
        session.pop("transcript", None)
        session["credentials"] = [
            {k: v for k, v in c.items() if k not in ("password", "challenge", "response")}
            for c in session.get("credentials", [])]
    record["session"] = session or None
    return record


async def _message(ctx, message_id):
    record = await ctx.read(queries.message, message_id)
    if record is None:
        raise HTTPError(404, "No message has this id.")
    return record


async def _raw(ctx, message_id):
    """The raw bytes of a message, from the database or the raw directory."""
    found = await ctx.read(queries.raw, message_id)
    if found is None:
        raise HTTPError(404, "No message has this id.")
    data, path, _ = found
    if data is None and path and export.STORED.fullmatch(path):
        file = DataDir.of(ctx.app.config).raw / path
        data = await threads.deferToThread(_read, file)
    if data is None:
        raise HTTPError(404, "The raw message is not kept on this host.")
    return data


def _read(path):
    try:
        return path.read_bytes()
    except OSError:
        return None


@page(r"/messages/(?P<message_id>" + _ID + ")", "statistical", "Message")
async def message(ctx, message_id):
    record = displayable(await _message(ctx, message_id))
    forensic = ctx.may("forensic")
    raw_text = ""
    if forensic and not ctx.api:
        raw = await _raw(ctx, message_id)
        raw_text = raw[:templates.SHOWN].decode("utf-8", "replace").replace("\r\n", "\n")
    return Result(visible(record, forensic),
                  lambda: templates.message(ctx, record, forensic, raw_text))


@page(r"/messages/(?P<message_id>" + _ID + ")/html", "forensic")
async def message_html(ctx, message_id):
    record = await _message(ctx, message_id)
    return Preview(displayable(record["body_html"]))


@page(r"/messages/(?P<message_id>" + _ID + ")/raw", "forensic")
async def message_raw(ctx, message_id):
    return Download(await _raw(ctx, message_id), f"{message_id}.eml")


@page(r"/messages/(?P<message_id>" + _ID + ")/zip", "forensic")
async def message_zip(ctx, message_id):
    data = await _raw(ctx, message_id)
    archive = await threads.deferToThread(encrypted_zip, [(f"{message_id}.eml", data)])
    return Download(archive, f"{message_id}.zip")


async def _attachment(ctx, attachment_id):
    """(row, bytes) of a stored attachment."""
    row = await ctx.read(queries.attachment, attachment_id)
    if row is None:
        raise HTTPError(404, "No attachment has this id.")
    path = row["stored_path"]
    data = None
    if path and export.STORED.fullmatch(path):
        data = await threads.deferToThread(
            _read, DataDir.of(ctx.app.config).attachments / path)
    if data is None:
        raise HTTPError(404, "The attachment's file is not kept on this host"
                             " ([smtp] smtp_attachments_store, or the dashboard runs"
                             " on another host than the sensor).")
    name = f"{row['sha256'][:16]}_{safe_name(row['filename'], 'attachment')}"
    return row, data, name


@page(r"/attachments/(?P<attachment_id>" + _ID + ")/file", "forensic")
async def attachment_file(ctx, attachment_id):
    _, data, name = await _attachment(ctx, attachment_id)
    return Download(data, name)


@page(r"/attachments/(?P<attachment_id>" + _ID + ")/zip", "forensic")
async def attachment_zip(ctx, attachment_id):
    _, data, name = await _attachment(ctx, attachment_id)
    archive = await threads.deferToThread(encrypted_zip, [(name, data)])
    return Download(archive, f"{name}.zip")


@page(r"/sessions", "statistical", "Sessions", nav=True)
async def sessions(ctx):
    found = await ctx.read(queries.sessions, ctx.scope, ctx.page, ctx.per_page)
    return Result(found.as_json("sessions"), lambda: templates.sessions(
        ctx, attrs.evolve(found, rows=displayable(found.rows))))


@page(r"/sessions/(?P<session_id>" + _ID + ")", "statistical", "Session")
async def session(ctx, session_id):
    record = await ctx.read(queries.session, session_id)
    if record is None:
        raise HTTPError(404, "No session has this id.")
    record = displayable(record)
    forensic = ctx.may("forensic")
    shown = visible({"session": record, "attachments": []}, forensic)["session"]
    return Result(shown, lambda: templates.session(ctx, record, forensic))


@page(r"/users", "admin", "Users", nav=True)
async def users_page(ctx):
    rows = await ctx.read(users.listing)
    return Result({"users": rows}, lambda: templates.users(ctx, rows))


@page(r"/users", "admin", method="POST")
async def users_change(ctx):
    """Add, change or remove a user (the dashboard's database account must
    be allowed to write web_users)."""
    action, name = ctx.args.get("action"), ctx.args.get("name", "").strip()
    role, password = ctx.args.get("role") or None, ctx.args.get("password", "")
    try:
        users.check_name(name)
        if role is not None and role not in users.ROLES:
            raise ValueError(f"a role is one of {', '.join(users.ROLES)}")
        if action == "add" or password:
            users.check_password(password)
    except ValueError as e:
        raise HTTPError(400, str(e)[0].upper() + str(e)[1:] + ".") from None
    if action == "remove" and name == ctx.identity.name:
        raise HTTPError(400, "You cannot remove yourself.")
    hashed = await threads.deferToThread(users.hash_password, password) if password else None
    now = ctx.app.clock.seconds()
    write = ctx.app.write
    if action == "add":
        done = await write(users.add, name, role or "statistical", hashed, now)
        said = f"Added {name}." if done else f"There is a user {name} already."
    elif action == "change":
        done = await write(users.change, name, now, hashed, role)
        said = f"Changed {name}." if done else f"There is no user {name}."
    elif action == "remove":
        done = await write(users.remove, name)
        said = f"Removed {name}." if done else f"There is no user {name}."
    else:
        raise HTTPError(400, "action is add, change or remove.")
    if done and action != "add":
        ctx.app.sessions.end_user(name)
    rows = await ctx.read(users.listing)
    return Result({"done": done, "message": said},
                  lambda: templates.users(ctx, rows, said))


@page(r"/", "statistical")
async def home(ctx):
    return Redirect("/overview")
