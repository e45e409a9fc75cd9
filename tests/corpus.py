"""The shared corpus of real captured mail (``../shared/corpus/real-mail``
beside the repository; see its README)."""

from pathlib import Path

CORPUS = Path(__file__).resolve().parent.parent.parent / "shared" / "corpus" / "real-mail"


def corpus(name):
    """The raw bytes of corpus message *name*."""
    return (CORPUS / name).read_bytes()
