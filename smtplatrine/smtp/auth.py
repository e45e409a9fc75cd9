"""AUTH capture: PLAIN, LOGIN and CRAM-MD5 exchanges, nothing verified.

An :class:`Exchange` is fed the client's base64 lines and answers with the
next challenge, or with the finished attempt: what the client claimed
(username, password, or the CRAM-MD5 challenge and response, which is
enough to crack the password offline).
"""

import base64
import binascii

import attrs


class Aborted(Exception):
    """The client sent ``*``."""


class BadBase64(Exception):
    """The client's line is not base64."""


@attrs.define
class Attempt:
    mechanism: str
    username: str | None = None
    password: str | None = None
    authzid: str | None = None
    challenge: str | None = None
    response: str | None = None


def _decode(line):
    line = line.strip()
    if line == "*":
        raise Aborted()
    if line == "=":
        return ""
    try:
        raw = base64.b64decode(line.encode("ascii"), validate=True)
    except (binascii.Error, UnicodeEncodeError):
        raise BadBase64() from None
    return raw.decode("utf-8", "surrogateescape")


def _encode(text):
    return base64.b64encode(text.encode("utf-8")).decode("ascii")


class Exchange:
    """One AUTH exchange; :meth:`step` returns a challenge or None when done."""

    def __init__(self, mechanism, hostname, nonce):
        self.attempt = Attempt(mechanism)
        self._steps = {
            "PLAIN": [self._plain],
            "LOGIN": [self._login_user, self._login_password],
            "CRAM-MD5": [self._cram],
        }[mechanism]
        self._first_challenge = {
            "PLAIN": "",
            "LOGIN": _encode("Username:"),
            "CRAM-MD5": _encode(f"<{nonce}@{hostname}>"),
        }[mechanism]
        if mechanism == "CRAM-MD5":
            self.attempt.challenge = f"<{nonce}@{hostname}>"

    def start(self, initial):
        """Begin with the optional initial response of ``AUTH MECH initial``."""
        if initial is None or self.attempt.mechanism == "CRAM-MD5":
            return self._first_challenge
        if initial.strip() == "*":
            # Only a response cancels; for Postfix, "*" is no base64.
            raise BadBase64()
        return self.step(initial)

    def step(self, line):
        """Take the client's next line; the next challenge, or None."""
        value = _decode(line)
        return self._steps.pop(0)(value)

    def _plain(self, value):
        parts = value.split("\0")
        if len(parts) == 3:
            self.attempt.authzid, self.attempt.username, self.attempt.password = parts
        else:
            self.attempt.response = value

    def _login_user(self, value):
        self.attempt.username = value
        return _encode("Password:")

    def _login_password(self, value):
        self.attempt.password = value

    def _cram(self, value):
        username, _, digest = value.rpartition(" ")
        self.attempt.username = username
        self.attempt.response = digest
