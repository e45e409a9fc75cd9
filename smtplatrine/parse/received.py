"""Received fields (RFC 5321 4.4): the clauses of each hop.

A Received value is read as the hops write it, not as the RFC's grammar
would have it: the word after each of ``from``, ``by``, ``with``, ``id``
and ``for`` outside comments (the first clause of each keyword), the first
IP address literal of the ``from`` clause, its comments included (a
bracketed literal before a bare one), and the date after the last ";" as
ISO 8601 in UTC.  A clause that is absent, or a date that is none, is None.
"""

import ipaddress
import re
from datetime import timezone
from email.utils import parsedate_to_datetime

from smtplatrine.parse.headers import uncommented
from smtplatrine.parse.records import Received

_RECEIVED_KEYWORDS = frozenset({"from", "by", "via", "with", "id", "for"})
_WORD = re.compile(r"\S+")
_BRACKETED_IP = re.compile(r"\[(?:IPv6:)?([0-9A-Fa-f:.]+)\]", re.I)
_BARE_IP = re.compile(r"(?<![\w.:-])(?:IPv6:)?([0-9A-Fa-f:.]++)(?![\w.:-])", re.I)


def read_received(value):
    """Read the clauses of a Received field value."""
    text, semicolon, date = value.rpartition(";")
    if not semicolon:
        text, date = value, ""
    clauses = _clauses(text)
    word = {key: first for key, (first, _) in clauses.items()}
    return Received(
        raw=value.strip(),
        from_host=word.get("from"),
        from_ip=_first_ip(clauses["from"][1]) if "from" in clauses else None,
        by_host=word.get("by"),
        protocol=word.get("with"),
        id=word.get("id"),
        for_=word["for"].strip("<>") if word.get("for") else None,
        date=_iso_date(date.strip()),
    )


def _clauses(text):
    """Each keyword of a Received value (outside comments) -> (the word after
    it, or None, and the text of its clause, comments included)."""
    marks = []  # [keyword, first word, keyword start, clause start]
    for start, end in uncommented(text):
        for token in _WORD.finditer(text, start, end):
            word = token.group()
            if word.lower() in _RECEIVED_KEYWORDS:
                marks.append([word.lower(), None, token.start(), token.end()])
            elif marks and marks[-1][1] is None:
                marks[-1][1] = word.rstrip(";,") or None
    clauses = {}
    for index, (key, word, _, start) in enumerate(marks):
        end = marks[index + 1][2] if index + 1 < len(marks) else len(text)
        clauses.setdefault(key, (word, text[start:end]))
    return clauses


def _first_ip(text):
    """The first IP address literal in *text*, preferring a bracketed one."""
    for pattern in (_BRACKETED_IP, _BARE_IP):
        for candidate in pattern.finditer(text):
            try:
                return str(ipaddress.ip_address(candidate.group(1)))
            except ValueError:
                continue
    return None


def _iso_date(text):
    """An RFC 5322 date as ISO 8601 in UTC, or None."""
    if not text or len(text) > 200:
        return None
    try:
        when = parsedate_to_datetime(text)
        if when.tzinfo is None:  # "-0000": UTC, origin unknown
            when = when.replace(tzinfo=timezone.utc)
        return when.astimezone(timezone.utc).isoformat()
    except (TypeError, ValueError, IndexError, OverflowError):
        return None
