"""The Block list page: the addresses, networks and countries every sensor
refuses (``acl_blacklist_ip``, ``acl_blacklist_geo``), with their reason,
when each was added, last hit and how often.

Admins add and remove entries here as ``smtplatrine acl`` does; each
sensor applies the change at its next reload of the list (``[protection]
acl_reload_interval``; the dashboard cannot signal sensors on other
hosts).  The other roles see the list without its forms: it holds
nothing they do not see on the other pages, and knowing a client is
blocked explains why it went quiet.
"""

import time

from twisted.web.template import tags

from smtplatrine import acl
from smtplatrine.store import acl as acl_store
from smtplatrine.store.queries import iso
from smtplatrine.web import templates
from smtplatrine.web.routing import HTTPError, Result, page

# At most so many entries in one request.
MAX_ENTRIES = 100
MAX_REASON = 200


def _rows(cursor, dialect):
    rows = acl_store.entries(cursor, dialect)
    for row in rows:
        for name in ("added", "last_seen", "expires"):
            row[name] = iso(row[name])
    return rows


@page(r"/blocklist", "statistical", "Block list", nav=True)
async def blocklist(ctx):
    rows = await ctx.read(_rows)
    return Result({"entries": rows}, lambda: _page(ctx, rows))


@page(r"/blocklist", "admin", method="POST")
async def blocklist_change(ctx):
    action = ctx.args.get("action")
    if action not in ("add", "remove"):
        raise HTTPError(400, "action is add or remove.")
    texts = ctx.args.get("entries", "").split()
    if not texts or len(texts) > MAX_ENTRIES:
        raise HTTPError(400, f"Give 1 to {MAX_ENTRIES} entries, separated by spaces.")
    try:
        entries = [acl.entry(text) for text in texts]
    except ValueError as e:
        raise HTTPError(400, str(e)[0].upper() + str(e)[1:] + ".") from None
    networks = [e for kind, e in entries if kind == "ip"]
    countries = [e for kind, e in entries if kind == "country"]
    if action == "add":
        reason = ctx.args.get("reason", "").strip()[:MAX_REASON] or None
        done = await ctx.app.write(acl_store.add, networks, countries,
                                   ctx.app.clock.seconds(), reason)
        verb = "Added"
    else:
        done = await ctx.app.write(acl_store.remove, networks, countries)
        verb = "Removed"
    interval = ctx.app.config.protection.acl_reload_interval
    said = (f"{verb} {' '.join(done) if done else 'nothing new'}. Each sensor applies the"
            f" list at its next reload, within [protection] acl_reload_interval"
            f" ({interval:g} s here).")
    rows = await ctx.read(_rows)
    return Result({"done": done, "message": said}, lambda: _page(ctx, rows, said))


def _page(ctx, rows, message=""):
    admin = ctx.may("admin")
    now = time.strftime("%Y-%m-%d %H:%M:%S", time.gmtime(ctx.app.clock.seconds()))

    def csrf():
        return tags.input(type="hidden", name="csrf", value=ctx.identity.csrf)

    def state(row):
        if row["expires"] is None:
            return ""
        expired = templates.when(row["expires"]) <= now
        return templates.badge(("expired " if expired else "until ")
                               + templates.when(row["expires"]),
                               "muted" if expired else "warn")

    def remove(row):
        if not admin:
            return ""
        return tags.form(csrf(), tags.input(type="hidden", name="entries", value=row["entry"]),
                         tags.button("Remove", type="submit", name="action", value="remove",
                                     class_="danger"),
                         action="/blocklist", method="post", class_="inline")

    body = [tags.h1("Block list"),
            tags.p(message, class_="notice", role="status") if message else ""]
    if admin:
        body.append(tags.form(
            csrf(),
            tags.label("Addresses, networks or countries ",
                       tags.input(name="entries", required="required", size="40",
                                  placeholder="192.0.2.7 198.51.100.0/24 2001:db8::/32 CN")),
            tags.label("Reason ", tags.input(name="reason", size="30",
                                             maxlength=str(MAX_REASON))),
            tags.button("Block", type="submit", name="action", value="add"),
            action="/blocklist", method="post", class_="filters"))
    body.append(templates.table(
        ["Entry", "Kind", "Reason", "Added (UTC)", "Last hit (UTC)", "Hits", "Ban", "Sensor",
         ""],
        [tags.tr(tags.td(templates.code(r["entry"])),
                 tags.td("country" if r["kind"] == "country" else "address"),
                 tags.td(r["reason"] or ""), tags.td(templates.when(r["added"]),
                                                     class_="nowrap"),
                 tags.td(templates.when(r["last_seen"]), class_="nowrap"),
                 tags.td(str(r["tries"]), class_="num"), tags.td(state(r)),
                 tags.td(r["sensor"] or ""), tags.td(remove(r)))
         for r in rows] or [templates.empty_row(9, "The block list is empty.")], "list"))
    if not admin:
        body.append(tags.p("Adding and removing entries needs the admin role.",
                           class_="muted note"))
    return templates.layout(ctx, "Block list", *body)
