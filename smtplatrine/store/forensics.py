"""Attachment forensics in the database: what each file is (its type and
fuzzy hashes), its flags, properties, URLs and YARA matches as rows, the
flags of each attachment row, and which files are similar.

Writes are called by the forensics enrichers in the transaction of their
result (per file) or for each sighting (per attachment row); reads are
plain ``f(cursor, dialect, ...)`` functions for export, the command line
and the dashboard.
"""

import json

from smtplatrine.forensics import fuzzy, names
from smtplatrine.forensics.text import host
from smtplatrine.store.records import text, utc

# Values kept of one kind for one file; widths of indexed columns.
MAX_ROWS = 200
_VALUE, _FLAG, _HOST = 255, 64, 255
# ssdeep's rolling window: two signatures share a 7-character piece or
# score 0.
NGRAM = fuzzy.ROLLING_WINDOW
_B64 = {c: i for i, c in enumerate(
    "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/")}


def _replace(cursor, dialect, table, sha256, provider, columns, rows):
    """The rows of (*sha256*, *provider*) in *table*, replaced by *rows*."""
    cursor.execute(dialect.sql(f"DELETE FROM {table} WHERE sha256 = ? AND provider = ?"),
                   (sha256, provider))
    rows = list(dict.fromkeys(rows))[:MAX_ROWS]
    if rows:
        cursor.executemany(dialect.insert(table, ["sha256", "provider", *columns],
                                          ignore=True),
                           [(sha256, provider, *row) for row in rows])


def save_findings(cursor, dialect, provider, sha256, flags=(), properties=(), urls=()):
    """Keep *provider*'s flags, (name, value) properties and URLs of the
    file *sha256*, in place of those it had."""
    _replace(cursor, dialect, "honeypot_file_flags", sha256, provider, ["flag"],
             [(str(flag)[:_FLAG],) for flag in flags])
    _replace(cursor, dialect, "honeypot_file_properties", sha256, provider,
             ["name", "value"],
             [(str(name)[:64], text(str(value), _VALUE)) for name, value in properties
              if value not in (None, "")])
    _replace(cursor, dialect, "honeypot_file_urls", sha256, provider,
             ["position", "url", "host"],
             [(i, text(url), text(host(url), _HOST)) for i, url in
              enumerate(list(dict.fromkeys(urls))[:MAX_ROWS])])


def ngrams(signature):
    """The (block size, 7-character piece as an integer) pairs of an
    ssdeep *signature*, as ssdeep compares them (runs of more than three
    equal characters cut to three)."""
    try:
        blocksize, first, second = signature.split(":", 2)
        blocksize = int(blocksize)
    except (AttributeError, ValueError):
        return []
    found = set()
    for size, part in ((blocksize, first), (2 * blocksize, second.split(",")[0])):
        part = fuzzy.collapse(part)
        for i in range(len(part) - NGRAM + 1):
            piece = part[i:i + NGRAM]
            if all(c in _B64 for c in piece):
                value = 0
                for c in piece:
                    value = value * 64 + _B64[c]
                found.add((size, value))
    return sorted(found)


def save_file(cursor, dialect, sha256, data, now):
    """Keep what the ``filetype`` enricher learnt of the file *sha256*."""
    ssdeep = data.get("ssdeep")
    blocksize = int(ssdeep.split(":", 1)[0]) if ssdeep else None
    columns = {"sha256": sha256, "size": data.get("size") or 0,
               "mime": text(data.get("mime"), _VALUE), "magic": text(data.get("magic")),
               "ssdeep": ssdeep, "ssdeep_blocksize": blocksize, "tlsh": data.get("tlsh"),
               "entropy": data.get("entropy"), "analysed": utc(now)}
    cursor.execute(dialect.upsert("honeypot_files", list(columns), ["sha256"], {
        name: "new" for name in columns if name != "sha256"}), list(columns.values()))
    cursor.execute(dialect.sql("DELETE FROM honeypot_file_ngrams WHERE sha256 = ?"),
                   (sha256,))
    pieces = ngrams(ssdeep) if ssdeep else []
    if pieces:
        cursor.executemany(dialect.insert("honeypot_file_ngrams",
                                          ["blocksize", "ngram", "sha256"], ignore=True),
                           [(size, value, sha256) for size, value in pieces])


def save_attachment_flags(cursor, dialect, message, sha256, mime):
    """Flag each attachment row of *message* with the content *sha256*
    (of type *mime*) by its name and declared type."""
    cursor.execute(dialect.sql(
        "SELECT attachment_id, filename, content_type FROM honeypot_attachments"
        " WHERE message_id = ? AND sha256 = ?"), (message, sha256))
    rows = cursor.fetchall()
    for attachment, filename, declared in rows:
        cursor.execute(dialect.sql(
            "DELETE FROM honeypot_attachment_flags WHERE attachment_id = ?"), (attachment,))
        flags = names.flags(filename, declared, mime)
        if flags:
            cursor.executemany(dialect.insert(
                "honeypot_attachment_flags", ["attachment_id", "flag", "message_id"],
                ignore=True), [(attachment, flag, message) for flag in flags])


def save_yara(cursor, dialect, sha256, matches):
    """Keep the YARA *matches* of the file *sha256*, in place of the old."""
    cursor.execute(dialect.sql("DELETE FROM honeypot_file_yara WHERE sha256 = ?"),
                   (sha256,))
    rows = {(text(m["namespace"], 128), text(m["rule"], 128)): " ".join(m["tags"])
            for m in matches[:MAX_ROWS]}
    if rows:
        cursor.executemany(dialect.insert("honeypot_file_yara",
                                          ["sha256", "namespace", "rule", "tags"]),
                           [(sha256, ns, rule, tags) for (ns, rule), tags in rows.items()])


# Reads


def file_analysis(cursor, dialect, sha256):
    """Everything known of the file *sha256*: its row of honeypot_files
    (or None), flags and properties by provider, URLs, YARA matches, the
    files inside it and the files it was found in."""
    cursor.execute(dialect.sql(
        "SELECT mime, magic, ssdeep, tlsh, entropy FROM honeypot_files WHERE sha256 = ?"),
        (sha256,))
    row = cursor.fetchone()
    found = {"sha256": sha256, "file": None if row is None else dict(zip(
        ("mime", "magic", "ssdeep", "tlsh", "entropy"), row))}
    cursor.execute(dialect.sql("SELECT provider, flag FROM honeypot_file_flags"
                               " WHERE sha256 = ? ORDER BY provider, flag"), (sha256,))
    found["flags"] = sorted({flag for _, flag in cursor.fetchall()})
    cursor.execute(dialect.sql("SELECT name, value FROM honeypot_file_properties"
                               " WHERE sha256 = ? ORDER BY name, value"), (sha256,))
    properties = {}
    for name, value in cursor.fetchall():
        properties.setdefault(name, []).append(value)
    found["properties"] = properties
    cursor.execute(dialect.sql("SELECT url FROM honeypot_file_urls WHERE sha256 = ?"
                               " ORDER BY provider, position"), (sha256,))
    found["urls"] = list(dict.fromkeys(url for (url,) in cursor.fetchall()))
    cursor.execute(dialect.sql("SELECT namespace, rule, tags FROM honeypot_file_yara"
                               " WHERE sha256 = ? ORDER BY namespace, rule"), (sha256,))
    found["yara"] = [{"namespace": ns, "rule": rule, "tags": tags.split()}
                     for ns, rule, tags in cursor.fetchall()]
    cursor.execute(dialect.sql(
        "SELECT name, size, member_sha256, parent_idx, flags FROM honeypot_file_members"
        " WHERE sha256 = ? ORDER BY provider, idx"), (sha256,))
    found["members"] = [{"name": name, "size": size, "sha256": member,
                         "parent": parent, "flags": json.loads(flags)}
                        for name, size, member, parent, flags in cursor.fetchall()]
    cursor.execute(dialect.sql(
        "SELECT DISTINCT sha256 FROM honeypot_file_members WHERE member_sha256 = ?"),
        (sha256,))
    found["found_in"] = sorted(s for (s,) in cursor.fetchall())
    return found


def attachment_flags(cursor, dialect, message):
    """The flags of each attachment row of *message*: {attachment_id: [flag]}."""
    cursor.execute(dialect.sql("SELECT attachment_id, flag FROM honeypot_attachment_flags"
                               " WHERE message_id = ? ORDER BY flag"), (message,))
    found = {}
    for attachment, flag in cursor.fetchall():
        found.setdefault(attachment, []).append(flag)
    return found


def similar(cursor, dialect, sha256, limit=50, threshold=30, distance=100,
            candidates=5000):
    """Files like *sha256*: those whose ssdeep scores at least *threshold*
    (0-100) against it, or whose TLSH lies within *distance* of it (among
    the ssdeep candidates and the latest *candidates* files of its MIME
    type), best first: [{sha256, mime, size, ssdeep_score, tlsh_distance}]."""
    try:
        import tlsh
    except ImportError:     # the forensics extra is not installed here
        tlsh = None
    cursor.execute(dialect.sql(
        "SELECT ssdeep, tlsh, mime FROM honeypot_files WHERE sha256 = ?"), (sha256,))
    row = cursor.fetchone()
    if row is None:
        return []
    signature, digest, mime = row
    pool = {}
    pieces = ngrams(signature) if signature else []
    for start in range(0, len(pieces), 200):
        chunk = pieces[start:start + 200]
        clauses = " OR ".join(["(blocksize = ? AND ngram = ?)"] * len(chunk))
        cursor.execute(dialect.sql(
            "SELECT DISTINCT f.sha256, f.ssdeep, f.tlsh, f.mime, f.size"
            " FROM honeypot_file_ngrams n JOIN honeypot_files f ON f.sha256 = n.sha256"
            f" WHERE {clauses}"), [v for pair in chunk for v in pair])
        for other in cursor.fetchall():
            pool[other[0]] = other
    if digest and mime:
        cursor.execute(dialect.sql(
            "SELECT sha256, ssdeep, tlsh, mime, size FROM honeypot_files"
            " WHERE mime = ? AND tlsh IS NOT NULL ORDER BY analysed DESC"
            f" LIMIT {int(candidates)}"), (mime,))
        for other in cursor.fetchall():
            pool.setdefault(other[0], other)
    found = []
    for other, other_signature, other_digest, other_mime, size in pool.values():
        if other == sha256:
            continue
        score = (fuzzy.compare(signature, other_signature)
                 if signature and other_signature else 0)
        apart = (tlsh.diff(digest, other_digest)
                 if tlsh and digest and other_digest else None)
        if score >= threshold or (apart is not None and apart <= distance):
            found.append({"sha256": other, "mime": other_mime, "size": size,
                          "ssdeep_score": score, "tlsh_distance": apart})
    found.sort(key=lambda f: (-f["ssdeep_score"], f["tlsh_distance"]
                              if f["tlsh_distance"] is not None else 10**6, f["sha256"]))
    return found[:limit]


def file_names(cursor, dialect, digests):
    """The names each file of *digests* was sent (or found) under:
    {sha256: [name, ...]}, at most 10 each."""
    found = {}
    for start in range(0, len(digests), 500):
        chunk = digests[start:start + 500]
        marks = ", ".join("?" * len(chunk))
        cursor.execute(dialect.sql(
            "SELECT DISTINCT sha256, filename FROM honeypot_attachments"
            f" WHERE sha256 IN ({marks}) AND filename IS NOT NULL"), chunk)
        for digest, name in cursor.fetchall():
            if len(found.setdefault(digest, [])) < 10:
                found[digest].append(name)
    return {digest: sorted(values) for digest, values in found.items()}
