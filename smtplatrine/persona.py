"""The MTAs we imitate: every reply text, the banner and the EHLO keywords.

A persona is data only.  Reply templates are formatted with ``hostname`` and,
where a reply quotes the client, ``arg`` (already escaped by the caller); the
protocol never writes a reply that is not in its persona.  The Postfix entry
was checked against a private Postfix 3.7 (Debian 12) instance, probe by probe
(``tests/data/postfix_replies.json``).
"""

import attrs


@attrs.frozen
class Persona:
    name: str
    # EHLO keywords in the order the MTA lists them, each with the
    # ``[smtp_features]`` option that turns it on.
    ehlo_keywords: tuple[tuple[str, str], ...]
    replies: dict[str, str]
    # Verbs refused with the "forbidden" reply and a close, as are lines that
    # do not start with a letter (Postfix's smtpd_forbidden_commands).
    forbidden: frozenset[str] = frozenset()

    def reply(self, key, **values):
        """The reply *key* as lines of text, without line endings."""
        return self.replies[key].format(**values).split("\n")


POSTFIX = Persona(
    name="postfix",
    ehlo_keywords=(
        ("pipelining", "PIPELINING"),
        ("size", "SIZE {size}"),
        ("vrfy", "VRFY"),
        ("etrn", "ETRN"),
        ("starttls", "STARTTLS"),
        ("auth", "AUTH {mechanisms}"),
        ("enhancedstatuscodes", "ENHANCEDSTATUSCODES"),
        ("eightbitmime", "8BITMIME"),
        ("dsn", "DSN"),
        ("smtputf8", "SMTPUTF8"),
        ("chunking", "CHUNKING"),
    ),
    forbidden=frozenset({"CONNECT", "GET", "POST"}),
    replies={
        "greeting": "220 {hostname} ESMTP Postfix (Debian/GNU)",
        "helo": "250 {hostname}",
        "helo_syntax": "501 Syntax: HELO hostname",
        "ehlo_syntax": "501 Syntax: EHLO hostname",
        "ok": "250 2.0.0 Ok",
        "mail_ok": "250 2.1.0 Ok",
        "rcpt_ok": "250 2.1.5 Ok",
        "data_go": "354 End data with <CR><LF>.<CR><LF>",
        "data_syntax": "501 5.5.4 Syntax: DATA",
        "queued": "250 2.0.0 Ok: queued as {queue_id}",
        "chunk_ok": "250 2.0.0 Ok: {size} bytes",
        "chunk_queued": "250 2.0.0 Ok: {size} bytes queued as {queue_id}",
        "bye": "221 2.0.0 Bye",
        "need_helo": "503 5.5.1 Error: send HELO/EHLO first",
        "need_mail": "503 5.5.1 Error: need MAIL command",
        "need_rcpt": "503 5.5.1 Error: need RCPT command",
        "no_recipients": "554 5.5.1 Error: no valid recipients",
        "nested_mail": "503 5.5.1 Error: nested MAIL command",
        "mail_syntax": "501 5.5.4 Syntax: MAIL FROM:<address>",
        "rcpt_syntax": "501 5.5.4 Syntax: RCPT TO:<address>",
        "bad_sender": "501 5.1.7 Bad sender address syntax",
        "bad_recipient": "501 5.1.3 Bad recipient address syntax",
        "unknown_user": "550 5.1.1 <{arg}>: Recipient address rejected:"
                        " User unknown in local recipient table",
        "size_syntax": "501 5.5.4 Bad message size syntax",
        "bad_option": "555 5.5.4 Unsupported option: {arg}",
        "bad_ret": "501 5.5.4 Bad RET parameter syntax",
        "bad_envid": "501 5.5.4 Bad ENVID parameter syntax",
        "bad_notify": "501 5.5.4 Error: Bad NOTIFY parameter syntax",
        "bad_orcpt": "501 5.5.4 Error: Bad ORCPT parameter syntax",
        "too_big": "552 5.3.4 Message size exceeds fixed limit",
        "message_too_big": "552 5.3.4 Error: message file too big",
        "chunk_too_big": "552 5.3.4 Chunk exceeds message size limit",
        "chunk_discarded": "551 5.0.0 Discarded {size} bytes after earlier error",
        "too_big_for_disk": "552 5.3.4 Message size exceeds file system imposed limit",
        "too_many_rcpts": "452 4.5.3 Error: too many recipients",
        "unknown": "500 5.5.2 Error: command not recognized",
        "bad_syntax": "500 5.5.2 Error: bad syntax",
        "bad_utf8": "500 5.5.2 Error: bad UTF-8 syntax",
        "forbidden": "221 2.7.0 Error: I can break rules, too. Goodbye.",
        "rset_syntax": "501 5.5.4 Syntax: RSET",
        "vrfy": "252 2.0.0 {arg}",
        "vrfy_syntax": "501 5.5.4 Syntax: VRFY address [SMTPUTF8]",
        "vrfy_disabled": "502 5.5.1 VRFY command is disabled",
        "etrn_syntax": "500 Syntax: ETRN domain",
        "etrn": "459 <{arg}>: service unavailable",
        "etrn_invalid": "501 Error: invalid parameter syntax",
        "etrn_in_mail": "503 Error: MAIL transaction in progress",
        "xclient_syntax": "501 5.5.4 Syntax: {arg} attribute=value...",
        "xclient_denied": "550 5.7.0 Error: insufficient authorization",
        "bdat_syntax": "521 5.5.4 Syntax: BDAT count [LAST]",
        "data_after_bdat": "503 5.5.1 Error: DATA after BDAT",
        "too_many_errors": "421 4.7.0 {hostname} Error: too many errors",
        "timeout": "421 4.4.2 {hostname} Error: timeout exceeded",
        "busy": "421 4.7.0 {hostname} Error: too many connections",
        "busy_client": "421 4.7.0 {hostname} Error: too many connections from {arg}",
        "client_rejected": "554 5.7.1 <unknown[{arg}]>: Client host rejected:"
                           " Access denied",
        "write_error": "451 4.3.0 Error: queue file write error",
        "no_space": "452 4.3.1 Insufficient system storage",
        "tls_go": "220 2.0.0 Ready to start TLS",
        "tls_syntax": "501 5.5.4 Syntax: STARTTLS",
        "tls_active": "554 5.5.1 Error: TLS already active",
        "auth_disabled": "503 5.5.1 Error: authentication not enabled",
        "auth_syntax": "501 5.5.4 Syntax: AUTH mechanism",
        "auth_twice": "503 5.5.1 Error: already authenticated",
        "in_mail": "503 5.5.1 Error: MAIL transaction in progress",
        "auth_mechanism": "535 5.7.8 Error: authentication failed:"
                          " Invalid authentication mechanism",
        "auth_ok": "235 2.7.0 Authentication successful",
        "auth_failed": "535 5.7.8 Error: authentication failed:"
                       " (reason unavailable)",
        "auth_aborted": "501 5.7.0 Authentication aborted",
        "auth_bad_initial": "535 5.7.8 Error: authentication failed:"
                            " Invalid base64 data in initial response",
        "auth_bad_base64": "535 5.7.8 Error: authentication failed:"
                           " Invalid base64 data in continued response",
        "auth_challenge": "334 {arg}",
    },
)

def wire(lines):
    """The reply *lines* as sent: ``250-first``, ..., ``250 last``, CRLF each."""
    return "".join(
        line[:3] + ("-" if i < len(lines) - 1 else " ") + line[4:] + "\r\n"
        for i, line in enumerate(lines))


PERSONAS = {persona.name: persona for persona in [POSTFIX]}
