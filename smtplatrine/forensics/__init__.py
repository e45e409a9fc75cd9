"""Attachment forensics: what runs on hostile files, in the sandbox's
children only (see smtplatrine.enrich.sandbox); ``names`` alone, which
reads no file, runs in the storing process.

Each analysis is ``analyse(path, params) -> dict`` over a file of the
attachment store, bounded in what it reads and returns, and imports its
libraries when the enricher starts (so that the sandbox holds them).
"""

import contextlib
import importlib
import pkgutil


def preload(*names):
    """Import the modules *names* and every module inside them, now: the
    sandbox runs as the unprivileged user, who may not reach the Python
    library (a Python under /root), and libraries import parts of
    themselves only as the data they meet asks for them."""
    for name in names:
        module = importlib.import_module(name)
        for info in pkgutil.walk_packages(getattr(module, "__path__", []), f"{name}.",
                                          onerror=lambda _: None):
            with contextlib.suppress(Exception):
                importlib.import_module(info.name)


def flags(**conditions):
    """The names of *conditions* that hold, sorted: an analysis's flags."""
    return sorted(name for name, holds in conditions.items() if holds)
