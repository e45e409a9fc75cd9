"""Attachment forensics: what runs on hostile files, in the sandbox's
children only (see smtplatrine.enrich.sandbox); ``names`` alone, which
reads no file, runs in the storing process.

Each analysis is ``analyse(path, params) -> dict`` over a file of the
attachment store, bounded in what it reads and returns, and imports its
libraries when the enricher starts (so that the sandbox holds them).
"""
