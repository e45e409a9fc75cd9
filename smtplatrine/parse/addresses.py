"""The addresses of the To and Cc fields (RFC 5322 3.4).

Each address-list is read leniently, as spam writes it: quoted display
names and comments are skipped, the address in angle brackets is taken
(the last, if several), a bare ``local@domain`` otherwise; group names are
dropped.  Addresses are lower-cased, each kept once per field kind.
"""

import re

from smtplatrine.parse.headers import QUOTED_STRING, uncommented

_ANGLE_ADDRESS = re.compile(r"<([^<>]*)>")
_ADDR_SPEC = re.compile(r"[^@\s]+@[^@\s]+")


def read_addresses(ctx, fields):
    """(kind, address) for each address in the To and Cc fields."""
    found = {}
    for name, value in fields:
        kind = name.lower()
        if kind in ("to", "cc"):
            for address in _address_list(ctx.clean(value)):
                found.setdefault((kind, address), None)
    return tuple(found)


def _address_list(value):
    """The addr-specs of an address-list field value, lower-cased."""
    value = QUOTED_STRING.sub(" ", value)
    value = "".join([value[start:end] for start, end in uncommented(value)])
    for item in value.split(","):
        angles = _ANGLE_ADDRESS.findall(item)
        for word in angles[-1:] if angles else item.split():
            address = word.rpartition(":")[2].strip().strip(";").lower()
            if _ADDR_SPEC.fullmatch(address):
                yield address
