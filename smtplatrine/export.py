"""``smtplatrine export``: stored messages as JSON lines, one per message,
with their session, headers, Received chain, URLs, attachments (with the
members found inside them, and what the analysis found), recipients and
enrichment results, for SIEM ingestion and scripts."""

import base64
import json

from smtplatrine.store import queries


def messages(connection, dialect, scope, raw=True):
    """Each stored message in *scope* (a queries.Scope), as one JSON-ready
    dict, the raw message (if *raw*) in base64 as ``raw_base64``."""
    for record in queries.export(connection, dialect, scope, raw):
        data = record.pop("raw", None)
        if data is not None:
            record["raw_base64"] = base64.b64encode(data).decode("ascii")
        yield record


def write(stream, records):
    """Write *records* as JSON lines; how many."""
    count = 0
    for record in records:
        stream.write(json.dumps(record, ensure_ascii=False, sort_keys=True) + "\n")
        count += 1
    return count
