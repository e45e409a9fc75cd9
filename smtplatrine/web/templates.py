"""The dashboard's HTML, built with ``twisted.web.template`` tags: every
string put in a tag or an attribute is escaped, so a subject, a file name,
a header or a HELO full of markup shows as text.  Hostile values are never
put into an ``href`` or ``src``: links are built from our own ids only."""

import json
from urllib.parse import quote, urlencode

from twisted.web.template import Tag, tags

from smtplatrine.events import printable
from smtplatrine.store import search
from smtplatrine.web.routing import NAVIGATION

# How much of a raw message or an HTML source a page shows (the rest: download).
SHOWN = 256 * 1024


def when(value):
    """An ISO time as the pages show it: 2026-03-02 10:00:00 (UTC)."""
    return (value or "")[:19].replace("T", " ")


def size(value):
    value = value or 0
    for unit in ("B", "KB", "MB"):
        if value < 1024 or unit == "MB":
            return f"{value:.0f} {unit}" if unit == "B" else f"{value:.1f} {unit}"
        value /= 1024


def flag(code):
    """The flag emoji of a two-letter country code, and the code."""
    if not code or len(code) != 2 or not code.isascii() or not code.isalpha():
        return ""
    code = code.upper()
    return "".join(chr(0x1F1E6 + ord(c) - 65) for c in code) + " " + code


def defang(url):
    """A URL that no one will open by a click: hxxp://evil[.]test/."""
    return (url.replace("http", "hxxp", 1).replace("://", "[://]", 1)
            .replace(".", "[.]"))


def link(path, **args):
    """A path of ours with a query string."""
    query = urlencode({k: v for k, v in args.items() if v not in (None, "")})
    return path + ("?" + query if query else "")


def message_link(message_id, suffix=""):
    return f"/messages/{quote(message_id)}{suffix}"


def badge(text, kind=""):
    return tags.span(text, class_=f"badge {kind}".strip())


def code(value):
    return tags.code("" if value is None else str(value))


def layout(ctx, title, *content, status=None):
    """The whole page: navigation, search box, user, then *content*."""
    identity = ctx.identity if ctx is not None else None
    nav = []
    if identity is not None:
        for path, name, role in NAVIGATION:
            if identity.may(role):
                current = ctx.request.path.decode("utf-8", "replace").startswith(path)
                nav.append(tags.a(name, href=path, class_="current" if current else ""))
    header = [tags.a("smtplatrine", href="/messages", class_="brand"), tags.nav(*nav)]
    if identity is not None:
        header.append(tags.form(
            tags.input(type="search", name="q", value=ctx.query, autocomplete="off",
                       placeholder='Search: words, "a phrase", from:, ip:, sha256:, has:attachment …',
                       **{"aria-label": "Search messages"}),
            *hidden(ctx, "sensor", "since", "until"),
            action="/messages", method="get", class_="search"))
        header.append(tags.div(
            tags.span(identity.name, class_="user"), " ", badge(identity.role, "role"),
            tags.form(tags.input(type="hidden", name="csrf", value=identity.csrf),
                      tags.button("Log out", type="submit", class_="link"),
                      action="/logout", method="post", class_="logout"),
            class_="who"))
    return tags.html(
        tags.head(
            tags.meta(charset="utf-8"),
            tags.meta(name="viewport", content="width=device-width, initial-scale=1"),
            tags.title(f"{title} · smtplatrine"),
            tags.link(rel="stylesheet", href="/static/style.css"),
            tags.link(rel="icon", href="/static/favicon.svg", type="image/svg+xml")),
        tags.body(tags.header(*header, class_="top"), Tag("main")(*content)),
        lang="en")


def hidden(ctx, *names):
    return [tags.input(type="hidden", name=n, value=ctx.args[n])
            for n in names if ctx.args.get(n)]


def filters(ctx, path, *extra):
    """The filter bar every list has: sensor and time range (UTC)."""
    options = [tags.option("all sensors", value="")]
    for name in ctx.sensors:
        attributes = {"selected": "selected"} if ctx.args.get("sensor") == name else {}
        options.append(tags.option(name, value=name, **attributes))
    return tags.form(
        *hidden(ctx, "q"),
        tags.label("Sensor ", tags.select(*options, name="sensor")),
        tags.label("From ", tags.input(name="since", value=ctx.args.get("since", ""),
                                       placeholder="2026-03-01", size="16")),
        tags.label("to ", tags.input(name="until", value=ctx.args.get("until", ""),
                                     placeholder="2026-03-02T12:00", size="16")),
        tags.span("UTC", class_="muted"), *extra,
        tags.button("Apply", type="submit"),
        action=path, method="get", class_="filters")


def pager(ctx, path, found, noun):
    """"1–50 of 1,234 messages" and links to the newer and older pages."""
    first = (found.number - 1) * found.size + 1
    last = first + len(found.rows) - 1
    total = f"more than {found.total - 1:,}" if found.capped else f"{found.total:,}"
    shown = f"{first:,}–{last:,} of {total} {noun}" if found.rows else f"no {noun}"
    args = {k: ctx.args.get(k) for k in ("q", "sensor", "since", "until")}
    links = []
    if found.number > 1:
        links.append(tags.a("← Newer", href=link(path, **args, page=found.number - 1),
                            rel="prev"))
    if found.more:
        links.append(tags.a("Older →", href=link(path, **args, page=found.number + 1),
                            rel="next"))
    return tags.div(tags.span(shown, class_="count"), tags.span(*links, class_="pages"),
                    class_="pager")


# The exports of the messages a search finds: (format, label, role needed).
MESSAGE_EXPORTS = [("jsonl", "JSON lines", "statistical"), ("csv", "CSV", "statistical"),
                   ("stix", "STIX 2.1", "statistical"), ("misp", "MISP event", "statistical"),
                   ("mbox", "mbox", "forensic"), ("zip", "zip of .eml (infected)", "forensic")]


def exports(ctx, path, formats):
    """Links to the exports of what a page lists, with its search, sensor
    and time range: *path* + "." + format for each of *formats* (as
    MESSAGE_EXPORTS) the user's role allows."""
    args = {k: ctx.args.get(k) for k in ("q", "sensor", "since", "until")}
    return tags.div(tags.span("Export", class_="muted"), " ", *[
        [tags.a(label, href=link(f"{path}.{name}", **args), class_="button",
                download=""), " "]
        for name, label, role in formats if ctx.may(role)], class_="exports")


def table(headings, rows, class_="list"):
    return tags.table(tags.thead(tags.tr(*[tags.th(h) for h in headings])),
                      tags.tbody(*rows), class_=class_)


def empty_row(columns, text):
    return tags.tr(tags.td(text, colspan=str(columns), class_="empty"))


def message_flags(row):
    found = []
    if row.get("tls"):
        found.append(badge("TLS", "ok"))
    if row.get("auth"):
        found.append(badge("AUTH", "warn"))
    if row.get("truncated"):
        found.append(badge("truncated", "bad"))
    if row.get("incomplete"):
        found.append(badge("incomplete", "bad"))
    if row.get("defects"):
        found.append(badge(f"{row['defects']} defect(s)", "muted"))
    return found


def messages(ctx, found):
    rows = [tags.tr(
        tags.td(when(r["received"]), class_="nowrap"),
        tags.td(r["sensor"]),
        tags.td(code(r["client_ip"]), " ", tags.span(flag(r["country"]), class_="flag")),
        tags.td(r["mail_from"] or "<>", class_="addr"),
        tags.td(r["header_from"] or "", class_="addr"),
        tags.td(tags.a(r["header_subject"] or "(no subject)",
                       href=message_link(r["message_id"])), class_="subject"),
        tags.td(str(r["recipients"]), class_="num"),
        tags.td(str(r["attachments"]) if r["attachments"] else "", class_="num"),
        tags.td(size(r["size"]), class_="num nowrap"),
        tags.td(*message_flags(r)))
        for r in found.rows] or [empty_row(10, "No message matches.")]
    title = f"Messages matching {ctx.query}" if ctx.query else "Messages"
    return layout(ctx, title, tags.h1("Messages"),
                  filters(ctx, "/messages"),
                  exports(ctx, "/export/messages", MESSAGE_EXPORTS),
                  pager(ctx, "/messages", found, "messages"),
                  table(["Received (UTC)", "Sensor", "Client", "MAIL FROM", "From",
                         "Subject", "Rcpt", "Att", "Size", "Flags"], rows),
                  pager(ctx, "/messages", found, "messages"))


def _facts(*pairs):
    """A definition list of (label, value) pairs, leaving out empty values."""
    items = []
    for label, value in pairs:
        if value not in (None, "", [], ()):
            items += [tags.dt(label), tags.dd(value)]
    return tags.dl(*items, class_="facts")


def known_of(enrichment):
    """A short line of what GeoIP, ASN and rDNS said of an address."""
    city = enrichment.get("geoip_city") or {}
    asn = enrichment.get("geoip_asn") or {}
    rdns = enrichment.get("rdns") or {}
    parts = [flag(city.get("country_code")), city.get("city") or "",
             f"AS{asn['asn']} {asn.get('organization') or ''}" if asn.get("asn") else "",
             ", ".join(rdns["ptr"]) if isinstance(rdns.get("ptr"), list) else ""]
    return " · ".join(p for p in parts if p)


def _by_indicator(enrichment):
    """{indicator: {provider: result}} of a message's enrichment rows."""
    found = {}
    for row in enrichment:
        found.setdefault(row["indicator"], {})[row["provider"]] = row["result"]
    return found


def _verdict(results):
    vt = results.get("virustotal") or {}
    if "malicious" in vt:
        text = f"VirusTotal {vt['malicious']} malicious / {vt.get('undetected', 0)} undetected"
        return badge(text, "bad" if vt["malicious"] else "ok")
    return ""


def message(ctx, record, forensic, raw_text=""):
    """The message view; without *forensic*, no body, URL, raw source,
    password, transcript or download."""
    session = record.get("session") or {}
    enrichment = _by_indicator(record.get("enrichment", []))
    mid = record["message_id"]
    sections = [("overview", "Overview"), ("session", "Session"), ("headers", "Headers"),
                ("received", "Received")]
    if forensic:
        sections[1:1] = [("html", "HTML"), ("text", "Text")]
        sections += [("urls", "URLs"), ("attachments", "Attachments"), ("raw", "Raw")]
    else:
        sections.append(("attachments", "Attachments"))
    actions = [tags.a("Download .eml", href=message_link(mid, "/raw"), class_="button"), " ",
               tags.a("Zip (password: infected)", href=message_link(mid, "/zip"),
                      class_="button"), " "] if forensic else []
    actions.append(tags.a("JSON", href="/api" + message_link(mid), class_="button"))
    body = [
        tags.div(tags.h1(record["header_subject"] or "(no subject)", class_="subject"),
                 tags.div(*actions, class_="actions"), class_="title"),
        tags.nav(*[tags.a(name, href=f"#{anchor}") for anchor, name in sections],
                 class_="tabs"),
        tags.section(
            tags.h2("Overview", id="overview"),
            _facts(("From", record["header_from"]), ("To", record["header_to"]),
                   ("Cc", record["header_cc"]), ("Reply-To", record["header_reply_to"]),
                   ("Date", record["header_date"]),
                   ("Received", when(record["received"]) + " UTC"),
                   ("Sensor", record["sensor"]),
                   ("Message", code(mid)), ("Queue id", code(record["queue_id"])),
                   ("Size", size(record["size"])), ("SHA-256", code(record["sha256"])),
                   ("MD5", code(record["md5"])),
                   ("Flags", message_flags({**record, "defects": len(record["defects"])})
                    + [badge(f, "muted") for f in record["session_flags"]]),
                   ("Defects", ", ".join(record["defects"])),
                   ("X-Mailer", record["header_x_mailer"]),
                   ("User-Agent", record["header_user_agent"])),
            tags.h3("Envelope"),
            _facts(("MAIL FROM", tags.span(record["mail_from"] or "<>", class_="addr")),
                   ("Parameters", " ".join(f"{k}={v}" for k, v in
                                           (record["mail_params"] or {}).items())),
                   ("Transport", record["transport"]),
                   ("RCPT TO", [tags.div(r["address"], class_="addr")
                                for r in record["recipients"] if r["kind"] == "envelope"]),
                   ("Header recipients", [tags.div(f"{r['kind']}: {r['address']}",
                                                   class_="addr")
                                          for r in record["recipients"]
                                          if r["kind"] != "envelope"]))),
    ]
    if forensic:
        body += [
            tags.section(
                tags.h2("HTML", id="html"),
                tags.p("Shown in a sandbox: no script runs, nothing is loaded from"
                       " anywhere, links go nowhere.", class_="muted")
                if record["body_html"] else tags.p("No HTML body.", class_="muted"),
                tags.iframe(src=message_link(mid, "/html"), sandbox="",
                            referrerpolicy="no-referrer", class_="preview",
                            title="HTML body (sandboxed)") if record["body_html"] else "",
                tags.details(tags.summary("HTML source"),
                             tags.pre(record["body_html"][:SHOWN], class_="source"))
                if record["body_html"] else ""),
            tags.section(tags.h2("Text", id="text"),
                         tags.pre(record["body_text"][:SHOWN], class_="body")
                         if record["body_text"] else tags.p("No text body.", class_="muted")),
        ]
    body.append(_session_section(session, enrichment, forensic))
    body.append(tags.section(
        tags.h2("Headers", id="headers"),
        table(["Name", "Value"], [tags.tr(tags.td(h["name"], class_="nowrap"),
                                          tags.td(h["value"], class_="wrap"))
                                  for h in record["headers"]], "plain")))
    body.append(tags.section(
        tags.h2("Received chain", id="received"),
        table(["#", "From host", "From IP", "What is known", "By", "Protocol", "Date"],
              [tags.tr(tags.td(str(i + 1)), tags.td(h["from_host"] or ""),
                       tags.td(code(h["from_ip"] or "")),
                       tags.td(known_of(enrichment.get(h["from_ip"], {}))),
                       tags.td(h["by_host"] or ""), tags.td(h["protocol"] or ""),
                       tags.td(h["date"] or "", class_="nowrap"))
               for i, h in enumerate(record["received_chain"])]
              or [empty_row(7, "No Received header.")], "plain")))
    if forensic:
        body.append(tags.section(
            tags.h2("URLs", id="urls"),
            tags.p("Defanged: copy them into your sandbox, never into a browser.",
                   class_="muted"),
            table(["URL", "Host", "Found in"],
                  [tags.tr(tags.td(code(defang(u["url"])), class_="wrap"),
                           tags.td(u["host"] or ""), tags.td(u["source"]))
                   for u in record["urls"]] or [empty_row(3, "No URL.")], "plain")))
    body.append(_attachments(record, enrichment, forensic))
    if forensic:
        body.append(tags.section(
            tags.h2("Raw source", id="raw"),
            tags.p(tags.a("Download .eml", href=message_link(mid, "/raw"), class_="button"),
                   " ", tags.a("Download as zip (password: infected)",
                               href=message_link(mid, "/zip"), class_="button")),
            tags.pre(raw_text, class_="source")))
    else:
        body.append(tags.p("Bodies, URLs, the raw message, passwords, the transcript and"
                           " downloads need the forensic role.", class_="muted note"))
    return layout(ctx, record["header_subject"] or "Message", *body)


def _attachments(record, enrichment, forensic):
    rows = []
    for a in record["attachments"]:
        link_to = f"/attachments/{quote(a['attachment_id'])}"
        downloads = [tags.a("file", href=link_to + "/file"), " · ",
                     tags.a("zip", href=link_to + "/zip")] if forensic else []
        rows.append(tags.tr(
            tags.td(a["filename"] or "(no name)", class_="wrap"),
            tags.td(a["content_type"]), tags.td(a["disposition"]),
            tags.td(size(a["size"]), class_="num nowrap"),
            tags.td(tags.div("MD5 ", code(a["md5"])), tags.div("SHA-1 ", code(a["sha1"])),
                    tags.div("SHA-256 ", code(a["sha256"])), class_="hashes"),
            tags.td(_verdict(enrichment.get(a["sha256"], {}))),
            tags.td(*downloads)))
    return tags.section(
        tags.h2("Attachments", id="attachments"),
        table(["Name", "Type", "Disposition", "Size", "Hashes", "Enrichment", "Download"],
              rows or [empty_row(7, "No attachment.")], "plain"))


def _session_section(session, enrichment, forensic):
    if not session:
        return tags.section(tags.h2("Session", id="session"), tags.p("Not stored."))
    return tags.section(
        tags.h2("Session", id="session"),
        _session_facts(session, session.get("client_enrichment") or {}),
        tags.p(tags.a("The whole session, with its transcript" if forensic
                      else "The session", href=f"/sessions/{quote(session['session_id'])}")),
        _credentials(session["credentials"], forensic))


def _session_facts(session, enrichment):
    tls = (f"{session['tls_version']} {session['tls_cipher'] or ''}"
           if session.get("tls_version") else "no")
    return _facts(
        ("Client", [code(f"{session['client_ip']}:{session['client_port']}"), " ",
                    known_of(enrichment)]),
        ("Server", code(f"{session['server_ip']}:{session['server_port']}")),
        ("HELO", session["helo"]), ("TLS", tls),
        ("Started", when(session["started"])), ("Ended", when(session["ended"])),
        ("Commands", str(session["commands"] or 0)),
        ("Unknown commands", str(session["unknown_commands"] or "")),
        ("Errors", str(session["errors"] or "")),
        ("Messages", str(session["messages"] or 0)),
        ("AUTH attempts", str(session["auth_attempts"] or "")),
        ("Closed", session["close_reason"]), ("Talked first", session["pregreet"]),
        ("Flags", [badge(f, "muted") for f in session["flags"] or []]))


def _credentials(credentials, forensic):
    if not credentials:
        return ""
    headings = ["Time", "Mechanism", "Username"] + (["Password"] if forensic else [])
    rows = []
    for c in credentials:
        secret = c["password"] if c["password"] is not None else (
            f"challenge {c['challenge']} response {c['response']}" if c["response"] else "")
        rows.append(tags.tr(tags.td(when(c["time"]), class_="nowrap"),
                            tags.td(c["mechanism"]), tags.td(code(c["username"] or "")),
                            *([tags.td(code(secret))] if forensic else [])))
    return [tags.h3("AUTH attempts"), table(headings, rows, "plain")]


def sessions(ctx, found):
    rows = [tags.tr(
        tags.td(tags.a(when(r["started"]), href=f"/sessions/{quote(r['session_id'])}"),
                class_="nowrap"),
        tags.td(r["sensor"]),
        tags.td(code(r["client_ip"]), " ", tags.span(flag(r["country"]), class_="flag")),
        tags.td(r["helo"] or "", class_="addr"),
        tags.td(badge("TLS", "ok") if r["tls_version"] else ""),
        tags.td(str(r["auth_attempts"] or ""), class_="num"),
        tags.td(str(r["messages"] or 0), class_="num"),
        tags.td(str(r["commands"] or 0), class_="num"),
        tags.td(r["close_reason"] or ("open" if not r["ended"] else "")),
        tags.td(*[badge(f, "muted") for f in r["flags"] or []]))
        for r in found.rows] or [empty_row(10, "No session.")]
    return layout(ctx, "Sessions", tags.h1("Sessions"),
                  filters(ctx, "/sessions"), pager(ctx, "/sessions", found, "sessions"),
                  table(["Started (UTC)", "Sensor", "Client", "HELO", "TLS", "AUTH",
                         "Messages", "Commands", "Closed", "Flags"], rows),
                  pager(ctx, "/sessions", found, "sessions"))


def session(ctx, record, forensic):
    body = [tags.h1(f"Session from {record['client_ip']}"),
            _session_facts(record, record.get("client_enrichment") or {}),
            _credentials(record["credentials"], forensic)]
    envelopes = record.get("envelopes") or []
    if envelopes:
        body += [tags.h2("Envelopes"), tags.pre(_json(envelopes), class_="source")]
    body += [tags.h2("Messages"),
             tags.ul(*[tags.li(tags.a(m["header_subject"] or "(no subject)",
                                      href=message_link(m["message_id"])),
                               " ", tags.span(when(m["received"]), class_="muted"))
                       for m in record["message_list"]]) if record["message_list"]
             else tags.p("No message.", class_="muted")]
    if forensic:
        lines = [line for step in record.get("transcript") or [] for line in step_lines(step)]
        body += [tags.h2("Transcript"),
                 tags.pre("\n".join(lines) or "(empty)", class_="source transcript")]
    else:
        body.append(tags.p("Passwords and the transcript need the forensic role.",
                           class_="muted note"))
    return layout(ctx, "Session", *body)


def step_lines(step):
    """A transcript step ([time, "C" or "S", text]) as lines "C: text",
    controls escaped (a multi-line reply: one line each)."""
    try:
        _, direction, text = step
    except (TypeError, ValueError):
        return [printable(str(step))]
    lines = str(text).removesuffix("\r\n").split("\r\n")
    return [f"{direction}: {printable(line)}" for line in lines]


def _json(value):
    return json.dumps(value, indent=2, ensure_ascii=False)


def login(error="", csrf="", next_path=""):
    return tags.html(
        tags.head(tags.meta(charset="utf-8"),
                  tags.meta(name="viewport", content="width=device-width, initial-scale=1"),
                  tags.title("Log in · smtplatrine"),
                  tags.link(rel="stylesheet", href="/static/style.css"),
                  tags.link(rel="icon", href="/static/favicon.svg", type="image/svg+xml")),
        tags.body(Tag("main")(
            tags.form(
                tags.h1("smtplatrine"),
                tags.p("Log in to the dashboard", class_="muted"),
                tags.p(error, class_="error", role="alert") if error else "",
                tags.label("User", tags.input(name="user", autocomplete="username",
                                              required="required", autofocus="autofocus")),
                tags.label("Password", tags.input(name="password", type="password",
                                                  autocomplete="current-password",
                                                  required="required")),
                tags.input(type="hidden", name="csrf", value=csrf),
                tags.input(type="hidden", name="next", value=next_path),
                tags.button("Log in", type="submit"),
                action="/login", method="post", class_="login"),
            class_="login-page")),
        lang="en")


def error(ctx, status, message):
    body = [tags.h1("Not allowed" if status == 403 else "Not found" if status == 404
                    else "Cannot show this"),
            tags.p(message, class_="error", role="alert")]
    if status == 400 and ctx is not None and ctx.query:
        body.append(search_help())
    return layout(ctx, "Error", *body)


def search_help():
    return tags.details(
        tags.summary("Search syntax"),
        tags.p('Words and "phrases" match the subject and the body; field:value narrows;'
               ' - excludes a term; all terms must match.'),
        table(["Field", "Matches"], [tags.tr(tags.td(code(f + ":")), tags.td(text))
                                     for f, text in search.FIELDS.items()], "plain"),
        open="open", class_="help")


def users(ctx, rows, message=""):
    roles = ("statistical", "forensic", "admin")

    def csrf():
        return tags.input(type="hidden", name="csrf", value=ctx.identity.csrf)

    def role_select(current=None):
        return tags.select(*[tags.option(r, value=r, **({"selected": "selected"}
                                                        if r == current else {}))
                             for r in roles], name="role")

    body = [tags.h1("Users"), tags.p(message, class_="notice", role="status") if message else ""]
    body.append(table(["Name", "Role", "Created", "Changed", ""], [
        tags.tr(tags.td(u["name"]), tags.td(badge(u["role"], "role")),
                tags.td(when(u["created"])), tags.td(when(u["changed"])),
                tags.td(tags.form(csrf(), tags.input(type="hidden", name="name", value=u["name"]),
                                  tags.button("Remove", type="submit", name="action",
                                              value="remove", class_="danger"),
                                  action="/users", method="post", class_="inline")))
        for u in rows], "plain"))
    body.append(tags.h2("Add a user, or change one"))
    body.append(tags.form(
        csrf(),
        tags.label("Name ", tags.input(name="name", required="required")),
        tags.label("Role ", role_select("statistical")),
        tags.label("Password ", tags.input(name="password", type="password",
                                           autocomplete="new-password")),
        tags.button("Add", type="submit", name="action", value="add"),
        tags.button("Set role and password", type="submit", name="action", value="change"),
        action="/users", method="post", class_="filters"))
    body.append(tags.p("API tokens: smtplatrine token add NAME --role ROLE on the"
                       " command line.", class_="muted"))
    return layout(ctx, "Users", *body)
