"""The shared corpus of real captured mail: ``../shared/corpus/real-mail``
beside the repository (see its README), or where this machine keeps it."""

from pathlib import Path

_PLACES = [Path(__file__).resolve().parent.parent.parent / "shared",
           Path("/work/shared")]
CORPUS = next((p for p in _PLACES if p.is_dir()), _PLACES[0]) / "corpus" / "real-mail"


def corpus(name):
    """The raw bytes of corpus message *name*."""
    return (CORPUS / name).read_bytes()
