"""PDF documents: JavaScript, OpenAction and other automatic actions,
launch actions, embedded files, forms and URLs (pypdf), and pdfid's
keyword counts of the raw bytes, which a broken file still has."""

import re

from smtplatrine.forensics import flags, preload
from smtplatrine.forensics.text import urls

# Raw keywords counted as pdfid does.
KEYWORDS = ("obj", "endobj", "stream", "endstream", "xref", "trailer", "startxref",
            "/Page", "/Encrypt", "/ObjStm", "/JS", "/JavaScript", "/AA", "/OpenAction",
            "/AcroForm", "/JBIG2Decode", "/RichMedia", "/Launch", "/EmbeddedFile",
            "/XFA", "/URI", "/SubmitForm", "/GoToR", "/GoToE")
# Objects visited, JavaScript kept, embedded files and URLs listed.
MAX_OBJECTS = 50000
MAX_SCRIPT = 2000
MAX_ITEMS = 50
_HEX_NAME = re.compile(rb"/[A-Za-z]*#[0-9A-Fa-f]{2}")


def is_pdf(data):
    return b"%PDF-" in data[:1024]


def prepare():
    preload("pypdf")


def _counts(data):
    counts = {}
    for keyword in KEYWORDS:
        pattern = re.escape(keyword.encode()) + rb"(?![A-Za-z0-9])"
        counts[keyword] = len(re.findall(pattern, data))
    return counts


def analyse(path, data, store, max_file):
    import logging

    from pypdf import PdfReader
    logging.disable(logging.CRITICAL)
    counts = _counts(data)
    found = {"kind": "pdf", "pages": None, "encrypted": bool(counts["/Encrypt"]),
             "javascript": [], "actions": [], "launch": [], "embedded": [], "urls": [],
             "forms": bool(counts["/AcroForm"]), "xfa": bool(counts["/XFA"]),
             "keywords": {k: v for k, v in counts.items() if v}, "flags": []}
    files = []
    walker = _Walker(found, files, store, max_file)
    try:
        import io
        reader = PdfReader(io.BytesIO(data), strict=False)
        if reader.is_encrypted:
            found["encrypted"] = True
            try:
                reader.decrypt("")
            except Exception:
                pass
        found["pages"] = len(reader.pages)
        walker.visit(reader.trailer)
    except Exception as e:
        found["error"] = e.__class__.__name__[:100]
    found["urls"] = list(dict.fromkeys(found["urls"]))[:MAX_ITEMS]
    found["flags"] = flags(
        javascript=found["javascript"] or counts["/JS"] or counts["/JavaScript"],
        openaction=counts["/OpenAction"] or "OpenAction" in found["actions"],
        auto_action=counts["/AA"] or "AA" in found["actions"],
        launch=found["launch"] or counts["/Launch"],
        embedded_file=found["embedded"] or counts["/EmbeddedFile"],
        form=found["forms"], xfa=found["xfa"], submit_form=counts["/SubmitForm"],
        richmedia=counts["/RichMedia"], encrypted=found["encrypted"],
        urls=found["urls"], obfuscated_names=_HEX_NAME.search(data))
    return found, files


class _Walker:
    """Visits every object reachable from the trailer, once."""

    def __init__(self, found, files, store, max_file):
        self.found = found
        self.files = files
        self.store = store
        self.max_file = max_file
        self.seen = set()
        self.count = 0

    def visit(self, root):
        from pypdf.generic import ArrayObject, DictionaryObject, IndirectObject
        stack = [root]
        while stack and self.count < MAX_OBJECTS:
            item = stack.pop()
            if isinstance(item, IndirectObject):
                key = (item.idnum, item.generation)
                if key in self.seen:
                    continue
                self.seen.add(key)
                try:
                    item = item.get_object()
                except Exception:
                    continue
            self.count += 1
            if isinstance(item, DictionaryObject):
                self.dictionary(item)
                stack.extend(item.values())
            elif isinstance(item, ArrayObject):
                stack.extend(item)

    def dictionary(self, item):
        found = self.found
        kind = str(item.get("/S", ""))
        for key in ("/OpenAction", "/AA"):
            if key in item:
                found["actions"].append(key[1:])
        if kind == "/JavaScript" or "/JS" in item:
            script = _text(item.get("/JS"))
            if len(found["javascript"]) < MAX_ITEMS:
                found["javascript"].append(script[:MAX_SCRIPT])
            found["urls"].extend(urls(script))
        if kind == "/Launch":
            target = item.get("/F") or item.get("/Win")
            if len(found["launch"]) < MAX_ITEMS:
                found["launch"].append(_text(target)[:1024])
        if kind in ("/URI", "/SubmitForm", "/GoToR", "/GoToE", "/ImportData"):
            target = item.get("/URI") if kind == "/URI" else item.get("/F")
            text = _text(target)
            if text:
                found["urls"].append(text[:2048])
        if str(item.get("/Type", "")) == "/Filespec" and "/EF" in item:
            self.embedded(item)

    def embedded(self, spec):
        import hashlib

        from smtplatrine.files import keep
        name = _text(spec.get("/UF") or spec.get("/F")) or "embedded"
        try:
            stream = spec["/EF"].get_object().get("/F").get_object()
            content = stream.get_data()
        except Exception:
            content = None
        entry = {"name": name[:1024], "size": None if content is None else len(content)}
        if len(self.found["embedded"]) >= MAX_ITEMS:
            return
        self.found["embedded"].append(entry)
        if content is None or len(content) > self.max_file:
            return
        digests = {"sha256": hashlib.sha256(content).hexdigest(),
                   "md5": hashlib.md5(content, usedforsecurity=False).hexdigest(),
                   "sha1": hashlib.sha1(content, usedforsecurity=False).hexdigest()}
        keep(self.store, content, digests["sha256"], sync=False)
        self.files.append({"name": entry["name"], "size": len(content), "parent": None,
                           "position": len(self.files), "flags": [], **digests})


def _text(value):
    """A PDF string, name or stream as text."""
    from pypdf.generic import StreamObject
    try:
        value = value.get_object() if hasattr(value, "get_object") else value
        if isinstance(value, StreamObject):
            value = value.get_data()[:65536]
        if isinstance(value, bytes):
            return value.decode("latin-1")
        if isinstance(value, dict):
            return _text(value.get("/F") or value.get("/UF") or "")
        return str(value) if value is not None else ""
    except Exception:
        return ""
