"""MAIL FROM and RCPT TO arguments: the path and its ESMTP parameters.

Parsing is as lenient as Postfix's: anything between angle brackets is an
address (relay testers send ``<user%host@[ip]>``, ``<@route:user@host>``,
quoted locals, address literals), so that every such probe is accepted.
"""

import re

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
    # Parameters given more than once (params keeps the last).
    repeated: frozenset[str] = frozenset()


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
    params, repeated = {}, set()
    for word in rest.split():
        name, eq, value = word.partition("=")
        name = name.upper()
        if name in params:
            repeated.add(name)
        params[name] = value if eq else None
    return Path(address, params, frozenset(repeated))


_XTEXT_ESCAPE = re.compile(r"\+(?![0-9A-Fa-f]{2})")


def _xtext_escapes(text):
    """True if every "+" in *text* starts a hex pair (RFC 3461 xtext)."""
    return _XTEXT_ESCAPE.search(text) is None


def _envid(value):
    return bool(value) and all("!" <= c <= "~" for c in value) and _xtext_escapes(value)


def _notify(value):
    words = [word for word in value.upper().split(",") if word]
    return bool(words) and (words == ["NEVER"]
                            or set(words) <= {"SUCCESS", "FAILURE", "DELAY"})


def _orcpt(value):
    kind, semicolon, address = value.partition(";")
    return bool(kind and semicolon) and _xtext_escapes(address)


# DSN parameters (RFC 3461) as Postfix 3.7 checks them, and the reply key
# for a value it refuses or a parameter given twice.
_DSN = {
    "RET": (lambda value: value.upper() in ("FULL", "HDRS"), "bad_ret"),
    "ENVID": (_envid, "bad_envid"),
    "NOTIFY": (_notify, "bad_notify"),
    "ORCPT": (_orcpt, "bad_orcpt"),
}


def _check_dsn(path, name, value):
    valid, key = _DSN[name]
    if value is None:
        raise EnvelopeError("bad_option", name)
    if name in path.repeated or not valid(value):
        raise EnvelopeError(key)


def check_mail_params(path, size_limit, features):
    """Raise :class:`EnvelopeError` for MAIL parameters Postfix refuses."""
    for name, value in path.params.items():
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
            _check_dsn(path, name, value)
        elif name == "AUTH":
            pass
        else:
            raise EnvelopeError("bad_option", _word(name, value))


def check_rcpt_params(path, features):
    """Raise :class:`EnvelopeError` for RCPT parameters Postfix refuses."""
    for name, value in path.params.items():
        if not (name in ("NOTIFY", "ORCPT") and features.dsn):
            raise EnvelopeError("bad_option", _word(name, value))
        _check_dsn(path, name, value)


def _word(name, value):
    return name if value is None else f"{name}={value}"
