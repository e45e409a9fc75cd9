"""Windows shortcuts (.lnk): the target, its arguments, working directory,
icon and the machine that made it (LnkParse3)."""

import re

from smtplatrine.forensics import flags, preload
from smtplatrine.forensics.text import urls

SIGNATURE = b"L\x00\x00\x00\x01\x14\x02\x00"
_COMMANDS = re.compile(r"(?i)\b(powershell|pwsh|cmd|mshta|wscript|cscript|rundll32"
                       r"|regsvr32|certutil|bitsadmin|msiexec|curl|wmic|forfiles)"
                       r"(\.exe)?\b")


def is_lnk(data):
    return data.startswith(SIGNATURE)


def prepare():
    preload("LnkParse3")


def analyse(path, data):
    import io

    import LnkParse3
    lnk = LnkParse3.lnk_file(io.BytesIO(data))
    info = lnk.get_json()
    strings = info.get("data", {}) or {}
    link = info.get("link_info", {}) or {}
    tracker = next((block for block in (info.get("extra", {}) or {}).values()
                    if isinstance(block, dict) and "machine_identifier" in block), {})
    target = (link.get("local_base_path") or link.get("common_path_suffix")
              or strings.get("relative_path") or _id_list_path(info))
    found = {"kind": "lnk", "target": _clip(target),
             "arguments": _clip(strings.get("command_line_arguments"), 4096),
             "working_directory": _clip(strings.get("working_directory")),
             "icon_location": _clip(strings.get("icon_location")),
             "description": _clip(strings.get("description")),
             "machine_id": _clip(tracker.get("machine_identifier"), 64)}
    command = " ".join(v for v in (found["target"], found["arguments"]) if v)
    found["commands"] = sorted({m.group(1).lower() for m in _COMMANDS.finditer(command)})
    found["urls"] = urls(command)
    found["flags"] = flags(lnk=True, lnk_arguments=found["arguments"],
                           suspicious_command=found["commands"], urls=found["urls"])
    return found


def _id_list_path(info):
    items = (info.get("target", {}) or {}).get("items", []) or []
    parts = [str(i.get("primary_name") or i.get("data") or "") for i in items
             if isinstance(i, dict)]
    return "\\".join(p for p in parts if p) or None


def _clip(value, width=1024):
    if value is None:
        return None
    return str(value).rstrip("\x00")[:width]
