"""MAIL FROM and RCPT TO arguments: the path and its ESMTP parameters.

Parsing is as lenient as Postfix's: anything between angle brackets is an
address (relay testers send ``<user%host@[ip]>``, ``<@route:user@host>``,
quoted locals, address literals), so that every such probe is accepted.
"""

import attrs


class EnvelopeError(Exception):
    """The argument is not acceptable; ``key`` names the persona's reply."""

    def __init__(self, key, arg=""):
        super().__init__(key)
        self.key = key
        self.arg = arg


# The largest size Postfix takes (an off_t); a larger one is refused otherwise.
OFF_T_MAX = 2**63 - 1


def is_number(text):
    """ASCII digits only, as Postfix reads a count (str.isdigit takes ²)."""
    return text.isascii() and text.isdigit()


# What splits an unquoted address in two for Postfix (3.7 refuses
# <a b>, <a\tb> and <a\rb>, and takes ESC, DEL and other controls).
_BLANKS = frozenset(" \t\r")


@attrs.frozen
class Path:
    address: str
    params: dict[str, str | None]


def _split_address(text):
    """``<addr> rest`` or ``addr rest`` into (addr, rest); quotes respected."""
    if not text.startswith("<"):
        address, _, rest = text.partition(" ")
        return address, rest
    quoted = False
    for i, char in enumerate(text):
        if char == '"' and text[i - 1] != "\\":
            quoted = not quoted
        elif char == ">" and not quoted:
            return text[1:i], text[i + 1:]
    raise ValueError("unbalanced angle brackets")


def parse(arg, keyword, syntax_key, address_key):
    """Parse ``FROM:<a@b> SIZE=10`` (*keyword* ``FROM``) into a :class:`Path`."""
    head = arg[:len(keyword) + 1]
    if head.upper() != keyword + ":":
        raise EnvelopeError(syntax_key)
    text = arg[len(keyword) + 1:].strip(" \t")
    if not text:
        raise EnvelopeError(syntax_key)
    try:
        address, rest = _split_address(text)
    except ValueError:
        raise EnvelopeError(address_key) from None
    if any(c in _BLANKS for c in address) and '"' not in address:
        raise EnvelopeError(address_key)
    params = {}
    for word in rest.split():
        name, eq, value = word.partition("=")
        params[name.upper()] = value if eq else None
    return Path(address, params)


def check_mail_params(params, size_limit, features):
    """Raise :class:`EnvelopeError` for MAIL parameters Postfix refuses."""
    for name, value in params.items():
        if name == "SIZE":
            if value is None or not is_number(value):
                raise EnvelopeError("size_syntax")
            if int(value) > OFF_T_MAX:
                raise EnvelopeError("too_big_for_disk")
            if int(value) > size_limit:
                raise EnvelopeError("too_big")
        elif name == "BODY" and (value or "").upper() in ("7BIT", "8BITMIME"):
            pass
        elif name == "SMTPUTF8" and features.smtputf8 and value is None:
            pass
        elif name in ("RET", "ENVID") and features.dsn:
            pass
        elif name == "AUTH":
            pass
        else:
            raise EnvelopeError("bad_option", _word(name, value))


def check_rcpt_params(params, features):
    for name, value in params.items():
        if not (name in ("NOTIFY", "ORCPT") and features.dsn):
            raise EnvelopeError("bad_option", _word(name, value))


def _word(name, value):
    return name if value is None else f"{name}={value}"
