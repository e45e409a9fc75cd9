"""YARA: the operator's rules, compiled once at start, matched in the
sandbox."""

import re
from pathlib import Path

# Rule files by their ending; matches kept of one file, strings of a match.
SUFFIXES = (".yar", ".yara", ".rule", ".rules")
MAX_MATCHES = 100
MAX_STRINGS = 20


class RuleError(Exception):
    """A rule file that does not compile; the message says which and why."""


def compile_directory(directory):
    """The rules of every rule file under *directory* (each file its own
    namespace, named by its path there), and the files that failed as
    (path, error) pairs; RuleError when the directory cannot be read."""
    import yara
    root = Path(directory)
    if not root.is_dir():
        raise RuleError(f"{directory} is not a directory")
    good, bad = {}, []
    for path in sorted(p for p in root.rglob("*") if p.suffix.lower() in SUFFIXES):
        namespace = str(path.relative_to(root))
        try:
            yara.compile(filepath=str(path))
        except yara.Error as e:
            # yara says "PATH(LINE): error"; the path is said already.
            where = re.match(r".*\((\d+)\): (.*)", str(e), re.S)
            bad.append((path, f"line {where[1]}: {where[2]}" if where else str(e)))
            continue
        good[namespace] = str(path)
    return (yara.compile(filepaths=good) if good else None), len(good), bad


def match(rules, path, seconds):
    """The rules of *rules* that match the file at *path*."""
    found = []
    for hit in rules.match(str(path), timeout=max(1, int(seconds))):
        found.append({"rule": hit.rule, "namespace": hit.namespace, "tags": list(hit.tags),
                      "meta": {k: v if isinstance(v, (int, bool)) else str(v)[:255]
                               for k, v in list(hit.meta.items())[:20]},
                      "strings": sorted({s.identifier for s in hit.strings})[:MAX_STRINGS]})
        if len(found) >= MAX_MATCHES:
            break
    return found
