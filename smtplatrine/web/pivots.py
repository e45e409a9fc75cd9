"""The overview and the pivot pages (clients, credentials, recipients,
attachments, URLs, campaigns), each with its JSON twin under ``/api``.
They read the tallies (store/pivots.py); every row links to the message
search that lists what is behind it.  Passwords, the raw AUTH exchange,
bodies' URLs and downloads are for the forensic role."""

import ipaddress
import json
from datetime import datetime
from urllib.parse import quote

from twisted.web.template import tags

from smtplatrine.events import printable
from smtplatrine.store import acl as acl_store
from smtplatrine.store import pivots, queries, search
from smtplatrine.web import charts
from smtplatrine.web.routing import Download, HTTPError, Redirect, Result, page
from smtplatrine.web.templates import (badge, code, defang, empty_row, filters, flag,
                                       layout, link, message_flags, message_link, pager,
                                       table, when)
from smtplatrine.web.views import displayable

_ADDRESS = r"[0-9A-Fa-f:.]{2,45}"
_KINDS = {"username", "password", "pair"}


def search_link(ctx, field, value):
    """The messages search for *field* = *value* in the page's range and
    sensor; None if the search language cannot say it."""
    value = str(value)
    if not value or '"' in value or len(value) > 200:
        return None
    term = f'{field}:"{value}"' if any(c.isspace() for c in value) else f"{field}:{value}"
    try:
        search.parse(term)
    except search.SearchError:
        return None
    return link("/messages", q=term, **{k: ctx.args.get(k) for k in ("sensor", "since",
                                                                       "until")})


def _linked(ctx, field, value, content=None):
    href = search_link(ctx, field, value)
    content = value if content is None else content
    return tags.a(content, href=href) if href else content


def _num(n):
    return tags.td(charts.number(n or 0), class_="num")


# The overview.

_TOP_CHARTS = [
    # (key, title, search field or None, forensic only)
    ("country", "Top countries", "country", False),
    ("asn", "Top autonomous systems", "asn", False),
    ("client", "Top client addresses", "ip", False),
    ("helo", "Top HELO names", "helo", False),
    ("mail_from_domain", "Top MAIL FROM domains", "from", False),
    ("from_domain", "Top From domains", "from", False),
    ("rcpt_domain", "Top recipient domains", "to", False),
    ("mailer", "Top X-Mailer / User-Agent", "mailer", False),
    ("attachment_type", "Top attachment types (declared)", "type", False),
    ("detected_type", "Top attachment types (detected)", "type", False),
    ("username", "Top usernames", "user", False),
    ("password", "Top passwords", "password", True),
]
_COUNTERS = [("connections", "Connections"), ("sessions", "Sessions"),
             ("messages", "Messages"), ("clients", "Client addresses"),
             ("credentials", "Credentials tried"), ("auth", "AUTH attempts"),
             ("attachments", "Attachments"), ("new_attachments", "New attachments")]


@page(r"/overview", "statistical", "Overview", nav=True)
async def overview(ctx):
    forensic = ctx.may("forensic")
    found = displayable(await ctx.read(pivots.overview, ctx.scope, forensic))
    return Result(found, lambda: _overview(ctx, found, forensic))


def _bar_label(key, row):
    if key == "country":
        return flag(row["value"]) or row["value"]
    if key == "asn":
        return f"AS{row['value']} {row.get('label') or ''}".strip()
    return row["value"]


def _overview(ctx, found, forensic):
    counters = found["counters"]
    cards = [tags.div(tags.div(charts.number(counters[key]), class_="figure"),
                      tags.div(name, class_="caption"), class_="card")
             for key, name in _COUNTERS]
    sections = []
    for key, title, field, secret in _TOP_CHARTS:
        if secret and not forensic:
            continue
        items = [(_bar_label(key, row), row["n"],
                  search_link(ctx, field, f"AS{row['value']}" if key == "asn"
                              else row["value"]))
                 for row in found["top"].get(key, [])]
        sections.append(tags.section(tags.h2(title), charts.bars(title, items),
                                     class_="chart-box"))
    return layout(
        ctx, "Overview", tags.h1("Overview"), filters(ctx, "/overview"),
        tags.div(*cards, class_="cards"),
        tags.section(tags.h2("Activity"),
                     charts.timeline("Connections, messages and AUTH attempts over time",
                                     found["activity"], ("connections", "messages", "auth"),
                                     ("Connections", "Messages", "AUTH attempts")),
                     class_="chart-wide"),
        tags.div(*sections, class_="charts"),
        tags.p("Counters by the hour, top lists by the day: a range is read in whole"
               " hours and days.", class_="muted"))


# Clients.

@page(r"/clients", "statistical", "Clients", nav=True)
async def clients(ctx):
    found = displayable(await ctx.read(pivots.clients, ctx.scope, ctx.page, ctx.per_page))
    return Result(found.as_json("clients"), lambda: layout(
        ctx, "Clients", tags.h1("Clients"), filters(ctx, "/clients"),
        pager(ctx, "/clients", found, "client addresses"),
        table(["Address", "Reverse DNS", "AS", "Country", "City", "First seen",
               "Last seen", "Sessions", "Messages", "AUTH", "AbuseIPDB", "Block list"],
              [_client_row(ctx, r) for r in found.rows]
              or [empty_row(12, "No client in this range.")]),
        pager(ctx, "/clients", found, "client addresses")))


def _client_row(ctx, r):
    return tags.tr(
        tags.td(tags.a(code(r["address"]), href=f"/clients/{quote(r['address'])}")),
        tags.td(r["reverse_dns"] or "", class_="addr"),
        tags.td(f"AS{r['asn']} {r['as_name'] or ''}" if r["asn"] else ""),
        tags.td(tags.span(flag(r["country"]), class_="flag")),
        tags.td(r["city"] or ""),
        tags.td(when(r["first_seen"]), class_="nowrap"),
        tags.td(when(r["last_seen"]), class_="nowrap"),
        _num(r["sessions"]),
        tags.td(_linked(ctx, "ip", r["address"], charts.number(r["messages"])), class_="num"),
        _num(r["auth"]),
        tags.td("" if r["abuseipdb"] is None else str(r["abuseipdb"]), class_="num"),
        tags.td(badge(f"blocked ({r['blocked']})", "bad") if r["blocked"] else ""))


def _address(text):
    try:
        return str(ipaddress.ip_address(text))
    except ValueError:
        raise HTTPError(404, "This is no IP address.") from None


@page(r"/clients/(?P<address>" + _ADDRESS + ")", "statistical", "Client")
async def client(ctx, address):
    address = _address(address)
    found = await ctx.read(pivots.client, address)
    if found is None:
        raise HTTPError(404, "No session came from this address.")
    sessions = await ctx.read(queries.sessions, queries.Scope(), ctx.page, ctx.per_page,
                              address)
    messages = await ctx.read(queries.messages, queries.Scope(),
                              search.parse(f"ip:{address}"), 1, ctx.per_page)
    data = displayable({**found, "sessions_list": sessions.rows,
                        "messages_list": messages.rows})
    return Result(data, lambda: _client_page(ctx, data, sessions, messages))


def _client_page(ctx, c, sessions, messages):
    facts = [("Reverse DNS", c["reverse_dns"]),
             ("AS", f"AS{c['asn']} {c['as_name'] or ''}" if c["asn"] else None),
             ("Country", flag(c["country"])), ("City", c["city"]),
             ("First seen", when(c["first_seen"])), ("Last seen", when(c["last_seen"])),
             ("Sessions", charts.number(c["sessions"])),
             ("Messages", charts.number(c["messages"])), ("AUTH attempts", charts.number(c["auth"])),
             ("AbuseIPDB score", None if c["abuseipdb"] is None else str(c["abuseipdb"])),
             ("Block list", f"blocked by {c['blocked']}" if c["blocked"] else "not blocked")]
    items = []
    for label, value in facts:
        if value:
            items += [tags.dt(label), tags.dd(value)]
    body = [tags.h1("Client ", code(c["address"])), tags.dl(*items, class_="facts")]
    if ctx.may("admin") and not c["blocked"]:
        body.append(tags.form(
            tags.input(type="hidden", name="csrf", value=ctx.identity.csrf),
            tags.input(name="reason", placeholder="reason (optional)", size="30"),
            tags.button("Block this address", type="submit", class_="danger"),
            action=f"/clients/{quote(c['address'])}/block", method="post",
            class_="filters", id="block"))
    body += [tags.h2("Messages"),
             table(["Received (UTC)", "MAIL FROM", "Subject", "Flags"],
                   [tags.tr(tags.td(when(m["received"]), class_="nowrap"),
                            tags.td(m["mail_from"] or "<>", class_="addr"),
                            tags.td(tags.a(m["header_subject"] or "(no subject)",
                                           href=message_link(m["message_id"])),
                                    class_="subject"),
                            tags.td(*message_flags(m)))
                    for m in c["messages_list"]] or [empty_row(4, "No message.")]),
             tags.p(tags.a("All its messages", href=link("/messages", q=f"ip:{c['address']}")))
             if messages.more else "",
             tags.h2("Sessions"), pager(ctx, f"/clients/{quote(c['address'])}", sessions,
                                        "sessions"),
             table(["Started (UTC)", "Sensor", "HELO", "AUTH", "Messages", "Closed"],
                   [tags.tr(tags.td(tags.a(when(s["started"]),
                                           href=f"/sessions/{quote(s['session_id'])}"),
                                    class_="nowrap"),
                            tags.td(s["sensor"]), tags.td(s["helo"] or "", class_="addr"),
                            _num(s["auth_attempts"]), _num(s["messages"]),
                            tags.td(s["close_reason"] or ""))
                    for s in c["sessions_list"]] or [empty_row(6, "No session.")])]
    return layout(ctx, f"Client {c['address']}", *body)


@page(r"/clients/(?P<address>" + _ADDRESS + ")/block", "admin", method="POST")
async def client_block(ctx, address):
    """Put the address on the block list, as ``smtplatrine acl add`` does;
    each sensor refuses it from its next reload."""
    network = str(ipaddress.ip_network(_address(address)))
    reason = ctx.args.get("reason", "").strip()[:200] or f"blocked by {ctx.identity.name}"
    added = await ctx.app.write(acl_store.add, [network], [], ctx.app.clock.seconds(),
                                reason)
    if ctx.api:
        return Result({"network": network, "added": bool(added)}, None)
    return Redirect(f"/clients/{quote(address)}")


# Credentials.

@page(r"/credentials", "statistical", "Credentials", nav=True)
async def credentials(ctx):
    forensic = ctx.may("forensic")
    found = displayable(await ctx.read(pivots.credentials, ctx.scope, ctx.page,
                                       ctx.per_page, forensic))
    users = displayable(await ctx.read(pivots.top, ctx.scope, "username", 10))
    pairs = displayable(await ctx.read(pivots.top, ctx.scope, "credential", 10)) \
        if forensic else []
    data = dict(found.as_json("credentials"), top_usernames=users)
    if forensic:
        data["top_pairs"] = pairs
    return Result(data, lambda: _credentials(ctx, found, users, pairs, forensic))


def _credentials(ctx, found, users, pairs, forensic):
    headings = ["Mechanism", "Username"] + (["Password", ""] if forensic else []) + [
        "Times", "Clients", "First seen", "Last seen"]
    rows = []
    for r in found.rows:
        secret = []
        if forensic:
            exchange = link("/credentials/exchange", mechanism=r["mechanism"],
                            username=r["username"], password=r["password"],
                            **{k: ctx.args.get(k) for k in ("sensor", "since", "until")})
            secret = [tags.td(code(r["password"])),
                      tags.td(tags.a("raw exchange", href=exchange))]
        rows.append(tags.tr(tags.td(r["mechanism"]),
                            tags.td(_linked(ctx, "user", r["username"], code(r["username"]))),
                            *secret, _num(r["times"]), _num(r["clients"]),
                            tags.td(when(r["first_seen"]), class_="nowrap"),
                            tags.td(when(r["last_seen"]), class_="nowrap")))
    side = [tags.section(tags.h2("Top usernames"), charts.bars(
        "Top usernames", [(u["value"], u["n"], search_link(ctx, "user", u["value"]))
                          for u in users]), class_="chart-box")]
    if forensic:
        side.append(tags.section(tags.h2("Top pairs"), charts.bars(
            "Top pairs", [(":".join(json.loads(p["value"])[1:]), p["n"], None)
                          for p in pairs]), class_="chart-box"))
        side.append(tags.p("Wordlists of this range: ", *[
            tags.a(name, href=link(f"/credentials/wordlist/{kind}",
                                   **{k: ctx.args.get(k) for k in ("sensor", "since",
                                                                    "until")}),
                   class_="button") for kind, name in (("username", "usernames"),
                                                       ("password", "passwords"),
                                                       ("pair", "pairs"))]))
    else:
        side.append(tags.p("Passwords, the raw exchanges and the wordlists need the"
                           " forensic role.", class_="muted note"))
    return layout(ctx, "Credentials", tags.h1("Credentials"), filters(ctx, "/credentials"),
                  tags.div(*side, class_="charts"),
                  pager(ctx, "/credentials", found, "credentials"),
                  table(headings, rows or [empty_row(len(headings), "No AUTH attempt.")]),
                  pager(ctx, "/credentials", found, "credentials"))


@page(r"/credentials/exchange", "forensic", "AUTH exchange")
async def credential_exchange(ctx):
    args = [ctx.args.get(k, "") for k in ("mechanism", "username", "password")]
    rows = displayable(await ctx.read(pivots.exchanges, ctx.scope, *args))
    return Result({"exchanges": rows}, lambda: layout(
        ctx, "AUTH exchange", tags.h1("AUTH ", args[0], " as ", code(args[1])),
        table(["Time", "Client", "Session", "Challenge / response", "As sent"],
              [tags.tr(tags.td(when(r["time"]), class_="nowrap"),
                       tags.td(tags.a(code(r["client_ip"]),
                                      href=f"/clients/{quote(r['client_ip'])}")),
                       tags.td(tags.a("session", href=f"/sessions/{quote(r['session_id'])}")),
                       tags.td(code(f"{r['challenge']} {r['response']}")
                               if r["response"] else "", class_="wrap"),
                       tags.td(tags.pre("\n".join(f"{d}: {printable(t)}"
                                                  for d, t in r["transcript"]),
                                        class_="source"), class_="wrap"))
               for r in rows] or [empty_row(5, "No such exchange in this range.")])))


@page(r"/credentials/wordlist/(?P<kind>username|password|pair)", "forensic")
async def wordlist(ctx, kind):
    words = await ctx.read(pivots.wordlist, ctx.scope, kind)
    # One a line: a line break inside a value would start another word.
    lines = [w.replace("\r", "\\r").replace("\n", "\\n") for w in displayable(words)]
    return Download(("\n".join(lines) + "\n" if lines else "").encode("utf-8"),
                    f"{kind}s.txt")


# Recipients.

@page(r"/recipients", "statistical", "Recipients", nav=True)
async def recipients(ctx):
    found = displayable(await ctx.read(pivots.recipients, ctx.scope, ctx.page, ctx.per_page))
    domains = displayable(await ctx.read(pivots.top, ctx.scope, "rcpt_domain", 15))
    data = dict(found.as_json("recipients"), top_domains=domains)
    return Result(data, lambda: layout(
        ctx, "Recipients", tags.h1("Recipients"), filters(ctx, "/recipients"),
        tags.section(tags.h2("Top targeted domains"), charts.bars(
            "Top targeted domains", [(d["value"], d["n"], search_link(ctx, "to", d["value"]))
                                     for d in domains]), class_="chart-box"),
        pager(ctx, "/recipients", found, "recipients"),
        table(["Address", "User", "+tag", "Domain", "Messages", "First seen", "Last seen"],
              [tags.tr(tags.td(_linked(ctx, "to", r["address"]), class_="addr"),
                       tags.td(r["user"]), tags.td(r["tag"] or ""),
                       tags.td(_linked(ctx, "to", r["domain"])), _num(r["times"]),
                       tags.td(when(r["first_seen"]), class_="nowrap"),
                       tags.td(when(r["last_seen"]), class_="nowrap"))
               for r in found.rows] or [empty_row(7, "No recipient in this range.")]),
        pager(ctx, "/recipients", found, "recipients")))


# Attachments.

@page(r"/attachments", "statistical", "Attachments", nav=True)
async def attachments(ctx):
    forensic = ctx.may("forensic")
    found = displayable(await ctx.read(pivots.attachments, ctx.scope, ctx.page,
                                       ctx.per_page))
    if not forensic:
        for row in found.rows:
            row.pop("attachment_id")
    return Result(found.as_json("attachments"), lambda: layout(
        ctx, "Attachments", tags.h1("Attachments"), filters(ctx, "/attachments"),
        pager(ctx, "/attachments", found, "attachments"),
        table(["SHA-256", "Names seen", "Declared", "Detected", "Size", "Messages",
               "First seen", "Last seen", "Enrichment"] + (["Download"] if forensic else []),
              [_attachment_row(ctx, r, forensic) for r in found.rows]
              or [empty_row(10, "No attachment in this range.")]),
        pager(ctx, "/attachments", found, "attachments")))


def _attachment_row(ctx, r, forensic):
    verdicts = []
    vt = r["verdicts"].get("virustotal") or {}
    if "malicious" in vt:
        verdicts.append(badge(f"VirusTotal {vt['malicious']} malicious",
                              "bad" if vt["malicious"] else "ok"))
    otx = r["verdicts"].get("otx") or {}
    if otx.get("pulse_count"):
        verdicts.append(badge(f"OTX {otx['pulse_count']} pulses", "warn"))
    cells = [tags.td(_linked(ctx, "sha256", r["sha256"], code(r["sha256"][:16] + "…")),
                     title=r["sha256"]),
             tags.td(*[tags.div(n) for n in r["names"]], class_="wrap"),
             tags.td(", ".join(r["content_types"])), tags.td(r["detected"] or ""),
             tags.td(charts.number(r["size"] or 0) + " B", class_="num nowrap"),
             _num(r["times"]), tags.td(when(r["first_seen"]), class_="nowrap"),
             tags.td(when(r["last_seen"]), class_="nowrap"), tags.td(*verdicts)]
    if forensic:
        target = f"/attachments/{quote(r['attachment_id'] or '')}"
        cells.append(tags.td(tags.a("file", href=target + "/file"), " · ",
                             tags.a("zip", href=target + "/zip")) if r["attachment_id"]
                     else tags.td(""))
    return tags.tr(*cells)


# URLs and domains.

@page(r"/urls", "forensic", "URLs", nav=True)
async def urls(ctx):
    found = displayable(await ctx.read(pivots.urls, ctx.scope, ctx.page, ctx.per_page))
    hosts = displayable(await ctx.read(pivots.hosts, ctx.scope))
    data = dict(found.as_json("urls"), hosts=hosts)
    return Result(data, lambda: layout(
        ctx, "URLs", tags.h1("URLs and domains"), filters(ctx, "/urls"),
        tags.p("Defanged: copy them into your sandbox, never into a browser.",
               class_="muted"),
        tags.section(tags.h2("Hosts"), charts.bars(
            "Hosts", [(defang(h["host"]), h["messages"], search_link(ctx, "domain", h["host"]))
                      for h in hosts]), class_="chart-box"),
        pager(ctx, "/urls", found, "URLs"),
        table(["URL", "Messages", "First seen", "Last seen"],
              [tags.tr(tags.td(code(defang(r["url"])), class_="wrap"),
                       tags.td(_linked(ctx, "url", r["url"], charts.number(r["messages"])),
                               class_="num"),
                       tags.td(when(r["first_seen"]), class_="nowrap"),
                       tags.td(when(r["last_seen"]), class_="nowrap"))
               for r in found.rows] or [empty_row(4, "No URL in this range.")]),
        pager(ctx, "/urls", found, "URLs")))


# Campaigns.

_CAMPAIGN_FIELDS = {"attachment": "sha256", "url_host": "domain", "subject": "subject",
                    "mail_from_domain": "from"}


@page(r"/campaigns", "statistical", "Campaigns", nav=True)
async def campaigns(ctx):
    rows = displayable(await ctx.read(pivots.campaigns, ctx.scope))
    return Result({"campaigns": rows}, lambda: layout(
        ctx, "Campaigns", tags.h1("Campaigns"), filters(ctx, "/campaigns"),
        tags.p("Messages of the range that share an attachment, a URL host, a subject"
               " (numbers aside) or a sender domain: one row per group.", class_="muted"),
        table(["Shared", "Value", "Messages", "First", "Last", "Span"],
              [tags.tr(tags.td(pivots.CAMPAIGN_KINDS[r["by"]]),
                       tags.td(_linked(ctx, _CAMPAIGN_FIELDS[r["by"]], _term(r), _shown(r)),
                               class_="wrap"),
                       _num(r["messages"]), tags.td(when(r["first_seen"]), class_="nowrap"),
                       tags.td(when(r["last_seen"]), class_="nowrap"),
                       tags.td(_span(r["first_seen"], r["last_seen"]), class_="nowrap"))
               for r in rows] or [empty_row(6, "No two messages of this range share"
                                               " anything.")])))


def _term(row):
    """What the search looks for: a subject's words without its numbers."""
    if row["by"] == "subject":
        return " ".join(w for w in row["value"].replace("#", " ").split()
                        if any(c.isalnum() for c in w))
    return row["value"]


def _shown(row):
    return defang(row["value"]) if row["by"] == "url_host" else row["value"]


def _span(first, last):
    seconds = (datetime.fromisoformat(last.rstrip("Z"))
               - datetime.fromisoformat(first.rstrip("Z"))).total_seconds()
    for unit, size in (("d", 86400), ("h", 3600), ("min", 60)):
        if seconds >= size:
            return f"{seconds / size:.1f} {unit}"
    return f"{seconds:.0f} s"
