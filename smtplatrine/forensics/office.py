"""Office documents: VBA and Excel 4.0 macros, auto-exec and suspicious
keywords, URLs in macros (oletools' olevba); remote templates and other
external relationships of OOXML files."""

import re
import zipfile

from smtplatrine.forensics import flags, preload
from smtplatrine.forensics.text import urls

OLE = b"\xd0\xcf\x11\xe0\xa1\xb1\x1a\xe1"
# Office formats olevba reads, by how they start.
_STARTS = (OLE, b"PK\x03\x04", b"<?xml", b"MIME-Version", b"ID;P", b"Content-Type",
           b"Content-Location")
_EXTERNAL = re.compile(rb'<Relationship\b[^>]*?TargetMode="External"[^>]*>', re.I)
_TARGET = re.compile(rb'Target="([^"]{1,2048})"', re.I)
_TYPE = re.compile(rb'Type="[^"]*/([A-Za-z]+)"', re.I)
# Text kept of one macro module, and keywords of one kind.
MAX_ITEMS = 50


def is_office(data):
    """Whether olevba should look at *data*."""
    head = data[:4096].lstrip()
    if head.startswith(b"PK\x03\x04"):
        return b"[Content_Types].xml" in data[:65536] or b"word/" in data[:65536] \
            or b"xl/" in data[:65536] or b"ppt/" in data[:65536]
    if head.startswith(b"<?xml"):
        return b"urn:schemas-microsoft-com:office" in head or b"progid=\"Word" in head \
            or b"pkg:package" in head
    return head.startswith(_STARTS)


def prepare():
    preload("olefile", "oletools", "pcodedmp", "msoffcrypto", "cryptography.hazmat.backends",
            "cryptography.hazmat.primitives")


def analyse(path, data):
    from oletools.olevba import VBA_Parser
    found = {"kind": "office", "format": None, "macros": False, "xlm_macros": False,
             "encrypted": False, "autoexec": [], "suspicious": [], "modules": [],
             "urls": [], "external": [], "flags": []}
    try:
        parser = VBA_Parser(str(path), data=data, relaxed=True)
    except Exception as e:
        found["error"] = f"{e.__class__.__name__}"[:100]
        parser = None
    if parser is not None:
        try:
            found["format"] = parser.type
            found["encrypted"] = bool(parser.detect_is_encrypted())
            found["macros"] = bool(parser.detect_vba_macros())
            found["xlm_macros"] = bool(getattr(parser, "contains_xlm_macros", False))
            if found["macros"] or found["xlm_macros"]:
                for _, _, name, code in parser.extract_all_macros():
                    code = code if isinstance(code, str) else code.decode("latin-1")
                    found["modules"].append({"name": str(name)[:255],
                                             "lines": code.count("\n") + 1,
                                             "head": code[:500]})
                    if len(found["modules"]) >= MAX_ITEMS:
                        break
                for kind, keyword, description in parser.analyze_macros() or []:
                    item = {"keyword": str(keyword)[:255],
                            "description": str(description)[:255]}
                    if kind == "AutoExec" and len(found["autoexec"]) < MAX_ITEMS:
                        found["autoexec"].append(item)
                    elif kind == "Suspicious" and len(found["suspicious"]) < MAX_ITEMS:
                        found["suspicious"].append(item)
                    elif kind == "IOC":
                        found["urls"].extend(urls(str(keyword)))
        finally:
            parser.close()
    if data.startswith(b"PK\x03\x04"):
        found["external"] = _external(path)
    found["urls"] = list(dict.fromkeys(found["urls"] + [
        e["target"] for e in found["external"]
        if re.match(r"(?i)(https?|ftp)://|\\\\", e["target"])]))[:MAX_ITEMS]
    found["flags"] = flags(
        vba_macros=found["macros"], xlm_macros=found["xlm_macros"],
        autoexec=found["autoexec"], suspicious_keywords=found["suspicious"],
        encrypted=found["encrypted"], external_relationship=found["external"],
        remote_template=any(e["type"].lower() == "attachedtemplate"
                            for e in found["external"]),
        urls=found["urls"])
    return found


def _external(path):
    """The external relationships (remote templates, linked objects) of
    an OOXML file: [{type, target}]."""
    found = []
    try:
        with zipfile.ZipFile(path) as archive:
            for info in archive.infolist()[:1000]:
                if not info.filename.endswith(".rels") or info.file_size > 2**20:
                    continue
                for rel in _EXTERNAL.findall(archive.read(info)):
                    target, kind = _TARGET.search(rel), _TYPE.search(rel)
                    found.append({"type": kind.group(1).decode("ascii") if kind else "",
                                  "target": target.group(1).decode("utf-8", "replace")
                                  if target else ""})
                    if len(found) >= MAX_ITEMS:
                        return found
    except (zipfile.BadZipFile, OSError, ValueError, NotImplementedError):
        pass
    return found
