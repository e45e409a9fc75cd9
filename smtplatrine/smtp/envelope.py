"""MAIL FROM and RCPT TO arguments: the path and its ESMTP parameters.

Parsing is as lenient as Postfix's: anything between angle brackets is an
address (relay testers send ``<user%host@[ip]>``, ``<@route:user@host>``,
quoted locals, address literals), so that every such probe is accepted.
"""

import ipaddress
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
_LABEL = re.compile(r"[A-Za-z0-9_](?:[A-Za-z0-9_-]{0,61}[A-Za-z0-9_])?")
# A label of an internationalised domain name: any non-ASCII character too.
_UTF8_LABEL = re.compile(r"[A-Za-z0-9_\x80-\U0010ffff]"
                         r"(?:[A-Za-z0-9_\x80-\U0010ffff-]{0,61}[A-Za-z0-9_\x80-\U0010ffff])?")


def is_domain(text, utf8=False):
    """A host name (not all numeric; non-ASCII only if *utf8*) or an
    address literal, as Postfix's valid_hostname, valid_utf8_hostname and
    valid_mailhost_literal take them."""
    if text.startswith("[") and text.endswith("]"):
        return literal_address(text) is not None
    # A name may end in the dot of the root.
    labels = text.removesuffix(".").split(".")
    label = _UTF8_LABEL if utf8 else _LABEL
    return (len(text) <= 255 and all(map(label.fullmatch, labels))
            and not all(label.isdigit() for label in labels))


def literal_address(text):
    """The IP address of the address literal *text* (``[192.0.2.1]``,
    ``[IPv6:2001:db8::1]``), or None."""
    literal = text[1:-1]
    try:
        if literal[:5].upper() == "IPV6:":
            return ipaddress.IPv6Address(literal[5:])
        return ipaddress.IPv4Address(literal)
    except ValueError:
        return None


@attrs.frozen
class Path:
    address: str
    params: dict[str, str | None]
    # Parameters given more than once (params keeps the last).
    repeated: frozenset[str] = frozenset()
    # Each parameter as the client wrote it, for the reply that quotes it.
    words: dict[str, str] = attrs.Factory(dict)


def _unquoted(text, char):
    """The indexes of *char* in *text* outside double quotes."""
    quoted = False
    for i, c in enumerate(text):
        if c == '"' and text[i - 1:i] != "\\":
            quoted = not quoted
        elif c == char and not quoted:
            yield i


def split_address(text):
    """The address of ``<addr> rest`` (or ``addr rest``) and the rest, as
    Postfix's smtpd cuts it: the address word runs to the first blank
    outside angle brackets and quotes; in it, any number of "<" before the
    address and at least as many ">" after it (extra ones are taken, as
    are blanks next to the brackets), nothing else."""
    depth, quoted, end = 0, False, len(text)
    for i, c in enumerate(text):
        if c == '"' and text[i - 1:i] != "\\":
            quoted = not quoted
        elif quoted:
            continue
        elif c == "<":
            depth += 1
        elif c == ">":
            depth = max(depth - 1, 0)
        elif c in " \t" and not depth:
            end = i
            break
    word, rest = text[:end], text[end:]
    opens = len(word) - len(word.lstrip("<"))
    inner = word[opens:]
    close = next(_unquoted(inner, ">"), len(inner))
    address, tail = inner[:close], inner[close:]
    if tail.strip(">") or len(tail) < opens:
        raise ValueError("not an address")
    return address.strip(" \t"), rest


def domain_of(address):
    """The domain of *address* (after its last "@" outside quotes), or None."""
    at = list(_unquoted(address, "@"))
    return address[at[-1] + 1:] if at else None


def parse(arg, keyword, syntax_key, address_key, utf8=False):
    """Parse ``FROM:<a@b> SIZE=10`` (*keyword* ``FROM``) into a :class:`Path`;
    an address with a domain that is not one (non-ASCII only if *utf8*)
    is refused with *address_key*."""
    head = arg[:len(keyword) + 1]
    if head.upper() != keyword + ":":
        raise EnvelopeError(syntax_key)
    text = arg[len(keyword) + 1:].strip(" \t")
    if not text:
        raise EnvelopeError(syntax_key)
    try:
        address, rest = split_address(text)
    except ValueError:
        raise EnvelopeError(address_key) from None
    if any(c in _BLANKS for c in address) and '"' not in address:
        raise EnvelopeError(address_key)
    if not address and keyword != "FROM":
        # Only the sender may be null (<>).
        raise EnvelopeError(address_key)
    params, repeated, words = {}, set(), {}
    for word in rest.split():
        name, eq, value = word.partition("=")
        name = name.upper()
        if name in params:
            repeated.add(name)
        params[name] = value if eq else None
        words[name] = word
    domain = domain_of(address)
    if domain is not None and not is_domain(domain, utf8 or "SMTPUTF8" in params):
        raise EnvelopeError(address_key)
    return Path(address, params, frozenset(repeated), words)


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
        raise EnvelopeError("bad_option", path.words[name])
    if name in path.repeated or not valid(value):
        raise EnvelopeError(key)


def check_mail_params(path, features):
    """Raise :class:`EnvelopeError` for MAIL parameters Postfix refuses
    (the size declared is the session's to weigh)."""
    for name, value in path.params.items():
        if name == "SIZE":
            if value is None or not is_number(value):
                raise EnvelopeError("size_syntax")
            if int(value) > OFF_T_MAX:
                raise EnvelopeError("too_big_for_disk")
        elif name == "BODY" and (value or "").upper() in ("7BIT", "8BITMIME"):
            pass
        elif name == "SMTPUTF8" and features.smtputf8 and value is None:
            pass
        elif name in ("RET", "ENVID") and features.dsn:
            _check_dsn(path, name, value)
        elif name == "AUTH":
            pass
        else:
            raise EnvelopeError("bad_option", path.words[name])


def check_rcpt_params(path, features):
    """Raise :class:`EnvelopeError` for RCPT parameters Postfix refuses."""
    for name, value in path.params.items():
        if not (name in ("NOTIFY", "ORCPT") and features.dsn):
            raise EnvelopeError("bad_option", path.words[name])
        _check_dsn(path, name, value)


def internal_form(address):
    """*address* as Postfix quotes it in a reply: without its source route
    (``@a,@b:``) and its quotes."""
    if address.startswith("@"):
        colon = next(_unquoted(address, ":"), None)
        if colon is not None:
            address = address[colon + 1:]
    return address.replace('"', "")


@attrs.frozen
class LocalRecipients:
    """Who has a mailbox here, as Postfix's local recipient table tells.

    An address is local when its domain is the host name, one of
    *domains* (``mydestination``) or the literal of the address the client
    connected to; a bare name is at the host name (``myorigin``).  Postfix
    resolves a local address once more when its local part holds an
    address: ``user@host``, ``user%host`` (the percent hack) or
    ``host!user`` (a bang path).  A local user is one of *users*, in any
    case, with or without a ``+extension``.
    """

    hostname: str
    domains: frozenset[str]
    users: frozenset[str]

    @classmethod
    def from_config(cls, hostname, config):
        """The local recipients of the ``[smtp]`` section *config*."""
        return cls(hostname.lower(),
                   frozenset(domain.lower().rstrip(".") for domain in config.local_domains),
                   frozenset(user.lower() for user in config.local_users))

    def unknown(self, address, server_ip):
        """Whether *address* is at a local domain (for a client connected
        to *server_ip*) and no local user's."""
        address = internal_form(address)
        while True:
            local, at, domain = address.rpartition("@")
            if not at:
                local, domain = address, self.hostname
            if not self._is_local(domain, server_ip):
                return False
            if "@" in local:
                address = local
            elif "%" in local:
                user, _, host = local.rpartition("%")
                address = f"{user}@{host}"
            elif "!" in local:
                host, _, user = local.partition("!")
                address = f"{user}@{host}"
            else:
                user = local.lower()
                return user not in self.users and user.partition("+")[0] not in self.users

    def _is_local(self, domain, server_ip):
        domain = domain.lower().rstrip(".")
        if domain.startswith("[") and domain.endswith("]"):
            literal = literal_address(domain)
            return literal is not None and literal == _address(server_ip)
        return domain == self.hostname or domain in self.domains


def _address(ip):
    """The IP address *ip* (an IPv4 address mapped into IPv6 as IPv4)."""
    try:
        address = ipaddress.ip_address(ip)
    except ValueError:
        return None
    return getattr(address, "ipv4_mapped", None) or address
