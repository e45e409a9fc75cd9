"""Windows executables: imphash, compile time, sections and their entropy,
signature, .NET, overlay (pefile)."""

from datetime import datetime, timezone

from smtplatrine.forensics import flags, preload


def is_pe(data):
    if data[:2] != b"MZ" or len(data) < 0x40:
        return False
    offset = int.from_bytes(data[0x3C:0x40], "little")
    return data[offset:offset + 4] == b"PE\x00\x00"


def prepare():
    preload("pefile", "ordlookup", "peutils")


def analyse(path, data):
    import pefile
    pe = pefile.PE(data=data, fast_load=True)
    try:
        pe.parse_data_directories(directories=[
            pefile.DIRECTORY_ENTRY[name] for name in (
                "IMAGE_DIRECTORY_ENTRY_IMPORT", "IMAGE_DIRECTORY_ENTRY_EXPORT",
                "IMAGE_DIRECTORY_ENTRY_SECURITY", "IMAGE_DIRECTORY_ENTRY_COM_DESCRIPTOR")])
        stamp = pe.FILE_HEADER.TimeDateStamp
        try:
            compiled = datetime.fromtimestamp(stamp, timezone.utc).isoformat()
        except (OverflowError, OSError, ValueError):
            compiled = None
        sections = [{"name": s.Name.rstrip(b"\x00").decode("latin-1")[:16],
                     "virtual_size": s.Misc_VirtualSize, "raw_size": s.SizeOfRawData,
                     "entropy": round(s.get_entropy(), 4),
                     "executable": bool(s.Characteristics & 0x20000000),
                     "writable": bool(s.Characteristics & 0x80000000)}
                    for s in pe.sections[:64]]
        imports = [entry.dll.decode("latin-1")[:255]
                   for entry in getattr(pe, "DIRECTORY_ENTRY_IMPORT", [])[:200]]
        security = pe.OPTIONAL_HEADER.DATA_DIRECTORY[
            pefile.DIRECTORY_ENTRY["IMAGE_DIRECTORY_ENTRY_SECURITY"]]
        com = pe.OPTIONAL_HEADER.DATA_DIRECTORY[
            pefile.DIRECTORY_ENTRY["IMAGE_DIRECTORY_ENTRY_COM_DESCRIPTOR"]]
        overlay = pe.get_overlay_data_start_offset()
        found = {
            "kind": "pe", "imphash": pe.get_imphash() or None,
            "compile_time": compiled, "timestamp": stamp,
            "machine": pefile.MACHINE_TYPE.get(pe.FILE_HEADER.Machine,
                                               hex(pe.FILE_HEADER.Machine)),
            "dll": pe.is_dll(), "subsystem": pefile.SUBSYSTEM_TYPE.get(
                pe.OPTIONAL_HEADER.Subsystem, str(pe.OPTIONAL_HEADER.Subsystem)),
            "sections": sections, "imports": imports,
            "exports": len(getattr(getattr(pe, "DIRECTORY_ENTRY_EXPORT", None),
                                   "symbols", []) or []),
            "signed": security.Size > 0, "dotnet": com.VirtualAddress != 0,
            "overlay": (len(data) - overlay) if overlay else 0,
        }
    finally:
        pe.close()
    found["flags"] = flags(
        pe=True, dll=found["dll"], signed=found["signed"], dotnet=found["dotnet"],
        packed=any(s["entropy"] > 7.2 and s["raw_size"] > 1024 for s in sections),
        writable_code=any(s["executable"] and s["writable"] for s in sections),
        overlay=found["overlay"])
    return found
