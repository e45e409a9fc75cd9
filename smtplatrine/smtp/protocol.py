"""One SMTP session: the persona's replies, the capture, the limits.

:class:`SMTPSession` answers one connection as the persona
(:mod:`smtplatrine.persona`, a Debian Postfix 3.7) answers, and keeps all
the client sent: each message goes to the spool as its bytes come, its
metadata when it ends (``250 ... queued as`` only once both are on disk),
and the session record (:mod:`smtplatrine.smtp.record`) when the
connection closes.  Nothing is ever relayed: every recipient is accepted
but unknown users at the persona's own domains (refused as Postfix refuses
them, and kept all the same), so that scanners take the server for an open
relay and send their mail.

A :class:`~smtplatrine.smtp.framing.Framer` cuts the input into command
lines, DATA pieces and BDAT chunks, as Postfix cuts it; the session reads
them in the mode its last reply chose (``COMMAND``, ``DATA``, ``BDAT``, or
``AUTH`` for the lines of a SASL exchange).  Each verb is a ``do_VERB``
method, found in ``_COMMANDS``; the syntax of addresses and their
parameters is :mod:`smtplatrine.smtp.envelope`'s, SASL
:mod:`smtplatrine.smtp.auth`'s.

Commands are answered strictly in order: while one waits on a Deferred (a
spool commit, an error delay, a MAIL held back while storing lags) later
pipelined commands wait in the framer.

Answering stops (:meth:`SMTPSession._hold`) while the transport's write
buffer is full (the session is its push producer), while STARTTLS waits
for its handshake, and for the rest of a reactor turn once a session has
handled ``_COMMANDS_PER_TURN`` commands, so that one client never holds the
server.  Reading stops with it, but for a full write buffer: there reading
stops once more than 64 KB wait unanswered, as it does behind a pending
reply (a TLS layer pauses its producer until its handshake is done, and
must read to get it done).

Postfix's limits are kept: error replies past ``soft_error_limit`` wait
``error_sleep_time``, and at ``hard_error_limit`` the session ends; junk
commands past ``junk_command_limit`` count as errors; recipients past
``recipient_limit`` are refused.  A watchdog ends a session that is idle
(``timeout``), slow to finish a command line, too long
(``session_deadline``), or slower than ``min_data_rate`` in a message.
"""

import errno
import re
import secrets
import socket

import attrs

from twisted.internet.interfaces import (IHalfCloseableProtocol, IHandshakeListener,
                                         IPushProducer, ISSLTransport)
from twisted.internet.protocol import Protocol
from twisted.logger import Logger
from zope.interface import implementer

from smtplatrine.events import printable
from smtplatrine.persona import wire
from smtplatrine.smtp import auth, envelope
from smtplatrine.smtp.framing import Framer
from smtplatrine.capture import Identity, Metadata
from smtplatrine.smtp.record import Envelope, SessionRecord

log = Logger()

# What the next bytes are, as the last reply decided.
COMMAND, DATA, BDAT, AUTH = "command", "data", "bdat", "auth"
# Seconds a closing connection has to take its last reply.
ABORT_AFTER = 5
# Bytes read ahead while answering waits; past that, reading pauses.
_MAX_WAITING = 65536
# What stops reading as well as answering (see _hold).
_READING_HOLDS = frozenset({"waiting", "starttls", "turn"})
# Commands (or DATA and BDAT pieces) handled in one go; then the session
# waits for the next turn of the reactor, so that the others get theirs.
_COMMANDS_PER_TURN = 20
# Commands that Postfix counts against smtpd_junk_command_limit.
_JUNK = frozenset({"HELO", "EHLO", "RSET", "NOOP", "VRFY", "ETRN"})
# Recipients past the limit that are refused before each further one counts
# as an error (Postfix's smtpd_recipient_overshoot_limit, default 1000).
_RCPT_OVERSHOOT = 1000
# What separates the words of a command for Postfix: spaces and tabs.
_BLANKS = re.compile(r"[ \t]+")


def _spool_error(error):
    """The reply for a message the spool could not keep because of *error*,
    as Postfix's for its queue file."""
    return "too_big_for_disk" if getattr(error, "errno", None) == errno.EFBIG else "write_error"


def _is_utf8(text):
    """Whether *text* (surrogate-escaped bytes) was valid UTF-8."""
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


@implementer(IHandshakeListener, IHalfCloseableProtocol, IPushProducer)
class SMTPSession(Protocol):
    """The server side of one connection; ``factory`` holds what is shared.

    It is its transport's push producer: a full write buffer (a client that
    does not read its replies) pauses it until the buffer drains, so that
    what waits to be sent stays within the transport's ``bufferSize``
    (64 KB) and one reply.
    """

    def connectionMade(self):
        """Start the record, the framer and the watchdog; greet, after
        ``greet_delay`` if one is set (a client that talks first is
        flagged ``pregreet``)."""
        factory = self.factory
        self.config = factory.config.smtp
        self.features = factory.config.smtp_features
        self.persona = factory.persona
        self.clock = factory.clock
        self.identity = Identity.of(self.transport, factory.config.server.sensor_name)
        now = self.clock.seconds()
        self.record = SessionRecord(identity=self.identity, start=now)
        self._framer = Framer(self.config.line_length_limit, self.record.flag)
        # Why answering, and perhaps reading, waits (see _hold).
        self._holds = set()
        self._input_ended = False
        self._junk_commands = 0
        self._junk = False
        # What the client sent first, to tell SMTP from TLS, HTTP or binary.
        self.first_bytes = b""
        self._mode = COMMAND
        self._busy = False
        self._processing = False
        self._closing = False
        self._greeted = False
        self._envelope = None
        # The size the client last declared (MAIL ... SIZE=), as Postfix
        # keeps it.
        self._declared_size = 0
        self._file = None
        self._exchange = None
        self._authenticated = False
        self._last_activity = now
        self._line_started = None
        self._timer = None
        if ISSLTransport.providedBy(self.transport):
            self.record.tls = {"implicit": True}
        if hasattr(self.transport, "setTcpNoDelay"):
            # One write per reply: Nagle would only hold replies back.
            self.transport.setTcpNoDelay(True)
        self.transport.registerProducer(self, True)
        self._producing = True
        factory.events.emit("smtplatrine.session.connect", self.identity)
        self._schedule_watchdog()
        if self.config.greet_delay:
            self._busy = True
            self.clock.callLater(self.config.greet_delay, self._greet)
        else:
            self._greet()

    def _greet(self):
        """Send the banner, then answer what came before it."""
        self._greeted = True
        self._release()
        self._reply("greeting")
        self._process()

    def _release(self):
        """Answer again after a wait (greeting delay, error sleep, commit)."""
        self._busy = False

    def _hold(self, reason):
        """Stop answering for *reason*: "output" (the write buffer is
        full), "starttls" (until the handshake starts), "turn" (until the
        next turn of the reactor); and stop reading, but for "output".
        "waiting" (too much read and not answered) stops only reading."""
        reading = self._reading()
        self._holds.add(reason)
        if reading and not self._reading():
            self.transport.pauseProducing()

    def _unhold(self, reason):
        """Answer, and perhaps read, again once *reason* is gone."""
        if reason not in self._holds:
            return
        reading = self._reading()
        self._holds.remove(reason)
        if not reading and self._reading() and self.connected:
            self.transport.resumeProducing()

    def _reading(self):
        """Whether the transport should be read."""
        return not (self._holds & _READING_HOLDS or self._input_ended)

    # --- output flow: the transport pauses and resumes us ---------------------

    def pauseProducing(self):
        """The write buffer is full: answer nothing more for now."""
        self._hold("output")

    def resumeProducing(self):
        """The write buffer drained: answer what waits."""
        self._unhold("output")
        self._process()

    def stopProducing(self):
        """The connection is going; connectionLost does the rest."""

    # --- input -------------------------------------------------------------

    def dataReceived(self, data):
        """Give *data* to the framer and answer what it completes.  The
        first bytes are kept (to tell SMTP from TLS, HTTP or binary), and
        what came before the banner (``pregreet``, 512 bytes at most)."""
        self._last_activity = self.clock.seconds()
        if self._closing:
            return
        if not self.first_bytes:
            self.first_bytes = data[:16]
        if not self._greeted:
            self.record.flag("pregreet")
            self.record.pregreet += data[: 512 - len(self.record.pregreet)]
        self._framer.feed(data)
        self._process()

    def readConnectionLost(self):
        """The client shut its side (``shutdown(SHUT_WR)``): answer what it
        sent, then close, as Postfix does."""
        self._input_ended = True
        self._process()

    def writeConnectionLost(self):
        """Never called: the session does not close its writing side
        alone."""

    def _process(self):
        """Answer what the framer holds, a command (or the end of a DATA
        or a chunk) at a time, for as long as nothing holds answering and
        at most ``_COMMANDS_PER_TURN`` this reactor turn; then pause or
        resume reading by what waits unanswered."""
        if self._processing:
            return
        self._processing = True
        try:
            steps = 0
            while self._answering():
                if steps == _COMMANDS_PER_TURN:
                    self._hold("turn")
                    self.clock.callLater(0, self._next_turn)
                    break
                if self._mode == DATA:
                    progressed = self._data_step()
                elif self._mode == BDAT:
                    progressed = self._bdat_step()
                else:
                    progressed = self._command_step()
                if not progressed:
                    break
                steps += 1
            if self._framer.pending > _MAX_WAITING:
                self._hold("waiting")
            else:
                self._unhold("waiting")
            if self._input_ended and self._answering():
                # All that can be answered was: the rest is an unfinished
                # line or message, which Postfix drops without a reply.
                self._close()
        finally:
            self._processing = False

    def _answering(self):
        """Whether the next command may be answered now."""
        return not (self._busy or self._closing or self._holds - {"waiting"})

    def _next_turn(self):
        """A new reactor turn: answer the next ``_COMMANDS_PER_TURN``."""
        self._unhold("turn")
        self._process()

    def _command_step(self):
        """Answer one command line, if a whole one was read."""
        line = self._framer.line()
        if line is None:
            if self._framer.in_line and self._line_started is None:
                self._line_started = self.clock.seconds()
            return False
        self._line_started = None
        if self._framer.pending and not self._pipelining_allowed():
            self.record.flag("improper_pipelining")
        text = line.decode("utf-8", "surrogateescape")
        self.record.note(self.clock.seconds(), "C", text, self.config.transcript_limit)
        if self._mode == AUTH:
            self._auth_step(text)
        else:
            self._command(text)
        return True

    def _pipelining_allowed(self):
        """Whether the client may send the next command before this
        reply: with PIPELINING offered after EHLO, outside AUTH."""
        return (self.features.pipelining and self.record.helo_command == "EHLO"
                and self._mode == COMMAND)

    def _command(self, text):
        """Answer the command line *text* as Postfix parses it: the verb
        ends at the first space or tab, and the line at a NUL; a line that
        is not UTF-8 (with SMTPUTF8 on), or whose verb is forbidden (HTTP,
        a line not starting with a letter), is refused before its verb is
        looked up."""
        self.record.commands += 1
        # Postfix checks the whole line, even past a NUL, for UTF-8.
        utf8 = _is_utf8(text)
        if "\0" in text:
            # Postfix reads a command as a C string: it ends at the NUL.
            self.record.flag("nul_byte")
            text = text.partition("\0")[0]
        verb, *rest = _BLANKS.split(text.strip(" \t"), 1)
        arg = rest[0] if rest else ""
        verb = verb.upper()
        if self.features.smtputf8 and not utf8:
            self._reply("bad_utf8")
        elif not verb:
            self._reply("bad_syntax")
        elif (not "A" <= verb[0] <= "Z" or verb in self.persona.forbidden
              or verb.endswith(":")):
            self.record.flag("forbidden_command")
            self.record.close_reason = "forbidden_command"
            self._reply("forbidden", then=self._close)
        elif verb in self._COMMANDS:
            # Its reply counts it against the junk command limit.
            self._junk = verb in _JUNK
            self._COMMANDS[verb](self, arg)
        else:
            self.record.unknown_commands += 1
            self._reply("unknown")

    # --- commands ----------------------------------------------------------

    def do_HELO(self, arg, command="HELO"):
        """HELO name: any name is taken (and kept); the transaction and
        the HELO before it are forgotten."""
        if not arg:
            self._reply("helo_syntax" if command == "HELO" else "ehlo_syntax")
            return
        self._reset_transaction()
        self.record.helo, self.record.helo_command = arg, command
        self.factory.events.emit("smtplatrine.session.helo", self.identity,
                                 command=command, helo=printable(arg))
        if command == "HELO":
            self._reply("helo")
        else:
            self._write_reply(self._ehlo_lines())

    def do_EHLO(self, arg):
        """EHLO name: as HELO, answered with the EHLO keywords."""
        self.do_HELO(arg, "EHLO")

    def _ehlo_lines(self):
        """The EHLO reply: the persona's keywords of the features that are
        on (STARTTLS only before TLS and with a certificate)."""
        hostname = self.factory.config.server.hostname
        values = {"size": self.config.message_size_limit,
                  "mechanisms": " ".join(self.features.auth_mechanisms)}
        lines = [f"250 {hostname}"]
        for feature, keyword in self.persona.ehlo_keywords:
            if not getattr(self.features, feature):
                continue
            if feature == "starttls" and (self.record.tls or not self.factory.tls_options):
                continue
            if feature == "auth" and not self.features.auth_mechanisms:
                continue
            lines.append("250 " + keyword.format(**values))
        return lines

    def _needs_helo(self):
        """Refuse the command for want of HELO, if ``helo_required`` (as
        Postfix's ``smtpd_helo_required``); True if refused."""
        if self.config.helo_required and self.record.helo is None:
            self._reply("need_helo")
            return True
        return False

    def do_MAIL(self, arg):
        """MAIL FROM:<address> [parameters]: one transaction at a time; the
        path and its parameters checked as Postfix checks them (SIZE
        against the size limit and the spool's free space)."""
        if self._needs_helo():
            return
        if self._envelope is not None:
            self._reply("nested_mail")
            return
        try:
            path = envelope.parse(arg, "FROM", "mail_syntax", "bad_sender")
            envelope.check_mail_params(path, self.features)
        except envelope.EnvelopeError as e:
            if e.key == "too_big_for_disk":
                self._declared_size = 0  # Postfix's size is -1 then
            self._reply(e.key, arg=printable(e.arg))
            return
        # As in Postfix, a size refused stays declared for the MAILs after
        # it, until another is declared or the session is reset.
        if "SIZE" in path.params:
            self._declared_size = int(path.params["SIZE"])
        if self._declared_size > self.config.message_size_limit:
            self._reply("too_big")
            return
        if not self._has_room(self._declared_size):
            self._reply("no_space")
            return
        self._busy = True
        self.factory.spool.backlog.wait().addCallback(self._mail_ok, path)

    def _mail_ok(self, _, path):
        """Open the transaction of MAIL *path* and answer it, once the
        spool's backlog lets a new message in (at once, unless storing
        lags: see :class:`smtplatrine.spool.Backlog`)."""
        self._release()
        if self._closing:
            return
        self._start_transaction(path.address, path.params)
        self.factory.events.emit("smtplatrine.mail", self.identity,
                                 mail_from=printable(path.address))
        self._reply("mail_ok")
        self._process()

    def _has_room(self, size):
        """Whether the spool can take a message of *size* bytes, as
        Postfix's queue_minfree test at MAIL."""
        try:
            return self.factory.spool.has_room(
                size, self.config.message_size_limit, self.config.spool_min_free)
        except OSError as e:
            log.error("spool: cannot tell its free space: {error}", error=str(e))
            return False

    def _start_transaction(self, mail_from, params):
        """Open the envelope of a message from *mail_from* (None: a
        recipient or a message came without MAIL, which ``smtp_compliant
        = false`` lets through)."""
        self._envelope = Envelope(mail_from=mail_from, params=params,
                                  time=self.clock.seconds())
        # The message's recipients; the session record keeps a bounded copy.
        self._recipients = []
        self._rcpt_overshoot = 0
        self.record.keep_envelope(self._envelope, self.config.envelope_limit,
                                  self.config.envelope_bytes_limit)

    def do_RCPT(self, arg):
        """RCPT TO:<address> [parameters]: every address of the right
        syntax is accepted, whatever its domain, up to ``recipient_limit``
        a message, but an unknown user at a local domain (kept as
        rejected)."""
        if self._envelope is None and self.config.smtp_compliant:
            self._reply("need_mail")
            return
        utf8 = self._envelope is not None and "SMTPUTF8" in self._envelope.params
        try:
            path = envelope.parse(arg, "TO", "rcpt_syntax", "bad_recipient", utf8)
            envelope.check_rcpt_params(path, self.features)
        except envelope.EnvelopeError as e:
            self._reply(e.key, arg=printable(e.arg))
            return
        if self._envelope is None:
            self._start_transaction(None, {})
        if len(self._recipients) >= self.config.recipient_limit:
            self.record.flag("too_many_recipients")
            self._rcpt_overshoot += 1
            self._reply("too_many_rcpts", counts=self._rcpt_overshoot > _RCPT_OVERSHOOT)
            return
        unknown = self._unknown_user(path.address)
        self.record.keep_recipient(self._envelope, path.address,
                                   self.config.envelope_bytes_limit, rejected=unknown)
        self.factory.events.emit("smtplatrine.rcpt", self.identity,
                                 rcpt=printable(path.address), accepted=not unknown)
        if unknown:
            self._reply("unknown_user", arg=printable(envelope.internal_form(path.address)))
            return
        self._recipients.append(path.address)
        self._reply("rcpt_ok")

    def _unknown_user(self, address):
        """Whether *address* is at one of the persona's domains and none of
        its users' (Postfix's "User unknown in local recipient table")."""
        return self.factory.local.unknown(address, self.identity.dst_ip)

    def _transaction_error(self):
        """The persona's reply key when DATA or BDAT may not start yet."""
        if self.config.smtp_compliant:
            if self._envelope is None:
                return "need_rcpt"
            if not self._recipients:
                return "no_recipients"
        return None

    def do_DATA(self, arg):
        """DATA: 354, then the message, spooled as it comes, until the
        line that ends it (not after BDAT in the same transaction)."""
        error = self._transaction_error()
        if error is None and self._envelope is not None and self._envelope.chunks:
            error = "data_after_bdat"
        if error is None and arg:
            error = "data_syntax"
        if error:
            self._reply(error)
            return
        if self._framer.pending:
            self.record.flag("improper_pipelining")
        error = self._open_message("DATA")
        if error:
            self._reply(error)
            return
        self._framer.start_data()
        self._mode = DATA
        self._reply("data_go")

    def do_BDAT(self, arg):
        """BDAT size [LAST]: the next *size* bytes are the message's; each
        chunk is answered once it is read, the last with the queue id.
        A chunk is read whole even when refused (no transaction, or over
        the size limit); one whose size cannot be read ends the session."""
        words = arg.split()
        if not self.features.chunking:
            self._reply("unknown")
            return
        if (not 1 <= len(words) <= 2 or not envelope.is_number(words[0])
                or int(words[0]) > envelope.OFF_T_MAX
                or (len(words) == 2 and words[1].upper() != "LAST")):
            # Postfix cannot tell where the chunk ends, so it hangs up.
            self.record.close_reason = "bdat_syntax"
            self._reply("bdat_syntax", then=self._close)
            return
        size = int(words[0])
        self._chunk_last = len(words) == 2
        self._chunk_error = self._transaction_error()
        if self._chunk_error is None and self._file is None:
            self._chunk_error = self._open_message("BDAT")
        self._chunk_refusal = None
        if self._chunk_error is None:
            # As Postfix: a chunk that would take the message over the
            # limit is refused, and every later chunk of it discarded.
            if self._oversized:
                self._chunk_refusal = "chunk_discarded", {"size": size}
            elif self._file.size + size > self.config.message_size_limit:
                self._oversized = True
                self._chunk_refusal = "chunk_too_big", {}
        if self._envelope is not None:
            self._envelope.chunks += 1
        self._framer.start_chunk(size)
        self._mode = BDAT

    def do_RSET(self, arg):
        """RSET: the transaction is forgotten (its message file removed)."""
        if arg:
            self._reply("rset_syntax")
            return
        self._reset_transaction()
        self._reply("ok")

    def do_NOOP(self, arg):
        """NOOP: 250, whatever follows it."""
        self._reply("ok")

    def do_QUIT(self, arg):
        """QUIT: 221, then the close."""
        self._reply("bye", then=self._close)

    def do_VRFY(self, arg):
        """VRFY address [SMTPUTF8]: an unknown user at one of the persona's
        domains is refused as by RCPT, any other address confirmed (252),
        as an open relay would; words not quoted are refused as Postfix
        refuses them, and a domain not in ASCII without SMTPUTF8."""
        if not self.features.vrfy:
            self._reply("vrfy_disabled")
            return
        if not arg:
            self._reply("vrfy_syntax")
            return
        try:
            address, rest = envelope.split_address(arg)
        except ValueError:
            address, rest = "", ""
        words = rest.split()
        utf8 = [word.upper() for word in words] == ["SMTPUTF8"]
        domain = envelope.domain_of(address)
        if (not address or (words and not utf8)
                or (_BLANKS.search(address) and '"' not in address)
                or (domain is not None and not envelope.is_domain(domain, utf8))):
            self._reply("bad_recipient")
        elif self._unknown_user(address):
            self._reply("unknown_user", arg=printable(envelope.internal_form(address)))
        else:
            self._reply("vrfy", arg=printable(arg[:len(arg) - len(rest)]))

    def do_ETRN(self, arg):
        """ETRN domain: refused for any valid domain (or ``@domain``,
        ``#queue``) as Postfix refuses one it does not relay for."""
        if not self.features.etrn:
            self._reply("unknown")
        elif self._envelope is not None:
            self._reply("etrn_in_mail")
        elif not arg or _BLANKS.search(arg):
            self._reply("etrn_syntax")
        else:
            # Postfix skips one leading "@" or "#" (a domain or a queue).
            domain = arg[1:] if arg[0] in "@#" else arg
            if envelope.is_domain(domain):
                self._reply("etrn", arg=printable(domain))
            else:
                self._reply("etrn_invalid")

    def do_XCLIENT(self, arg, command="XCLIENT"):
        """XCLIENT attribute=value...: refused, as Postfix refuses a client
        that is not in its ``smtpd_authorized_xclient_hosts``."""
        if self._envelope is not None:
            self._reply("in_mail")
        elif not arg:
            self._reply("xclient_syntax", arg=command)
        else:
            self._reply("xclient_denied")

    def do_XFORWARD(self, arg):
        """XFORWARD attribute=value...: refused as XCLIENT is."""
        self.do_XCLIENT(arg, "XFORWARD")

    def do_STARTTLS(self, arg):
        """STARTTLS: 220, then the handshake; what the client sent after
        STARTTLS, before the handshake, is dropped and flagged
        ``starttls_injection``.  HELO and the transaction start again."""
        if not self.features.starttls or self.factory.tls_options is None:
            self._reply("unknown")
        elif arg:
            self._reply("tls_syntax")
        elif self.record.tls:
            self._reply("tls_active")
        else:
            if self._framer.pending:
                self.record.flag("starttls_injection")
            self._framer.clear()
            # Whatever comes before the handshake starts (the 220 may wait
            # out the error sleep) stays in the socket for the TLS engine,
            # never for SMTP, as in Postfix.
            self._hold("starttls")
            self._reply("tls_go", then=self._start_tls)
            self._reset_transaction()
            self.record.helo = self.record.helo_command = None
            self._authenticated = False

    def _start_tls(self):
        """The 220 was sent: hand the connection to TLS."""
        if self._framer.pending or self._plaintext_waiting():
            self.record.flag("starttls_injection")
        self._framer.clear()
        self.record.tls = {"implicit": False}
        self.transport.startTLS(self.factory.tls_options)
        self._unhold("starttls")

    def _plaintext_waiting(self):
        """Whether bytes wait in the socket that cannot begin a TLS
        handshake (a handshake record starts with 0x16)."""
        try:
            waiting = self.transport.getHandle().recv(
                1, socket.MSG_PEEK | socket.MSG_DONTWAIT)
        except (AttributeError, OSError):
            return False
        return waiting not in (b"", b"\x16")

    def handshakeCompleted(self):
        """Note the TLS version and cipher the client got."""
        connection = self.transport.getHandle()
        self.record.tls.update(version=connection.get_protocol_version_name(),
                               cipher=connection.get_cipher_name())
        self.factory.events.emit("smtplatrine.session.tls", self.identity,
                                 tls_version=self.record.tls["version"],
                                 tls_cipher=self.record.tls["cipher"])

    def do_AUTH(self, arg):
        """AUTH mechanism [initial response]: the credentials are captured
        (for CRAM-MD5, the challenge and the response), and accepted or
        refused as ``smtp_auth_accept`` says; not again once accepted, nor
        in a transaction."""
        if not self.features.auth or not self.features.auth_mechanisms:
            self._reply("auth_disabled")
            return
        if self._needs_helo():
            return
        words = _BLANKS.split(arg)
        if not arg or len(words) > 2:  # as Postfix: a mechanism, a response at most
            self._reply("auth_syntax")
            return
        if self._authenticated:
            self._reply("auth_twice")
            return
        if self._envelope is not None:
            self._reply("in_mail")
            return
        mechanism, *initial = words
        mechanism = mechanism.upper()
        if mechanism not in self.features.auth_mechanisms:
            self._reply("auth_mechanism")
            return
        nonce = f"{secrets.randbelow(10**10)}.{int(self.clock.seconds())}"
        self._exchange = auth.Exchange(
            mechanism, self.factory.config.server.hostname, nonce)
        self._auth_reply(lambda: self._exchange.start(initial[0] if initial else None),
                         "auth_bad_initial")

    def _auth_step(self, text):
        """The client's next line of a SASL exchange, *text*."""
        self._auth_reply(lambda: self._exchange.step(text), "auth_bad_base64")

    def _auth_reply(self, step, bad_base64):
        """Answer the SASL *step*: its next challenge, or the outcome;
        *bad_base64* is the reply key for a response that is not base64."""
        try:
            challenge = step()
        except auth.Aborted:
            self._end_auth("auth_aborted")
        except auth.BadBase64:
            self._end_auth(bad_base64)
        else:
            if challenge is not None:
                self._mode = AUTH
                self._reply("auth_challenge", arg=challenge)
            else:
                self._finish_auth()

    def _finish_auth(self):
        """Keep the attempt and answer it as ``smtp_auth_accept`` says."""
        attempt = attrs.asdict(self._exchange.attempt)
        accepted = self.config.smtp_auth_accept
        attempt.update(time=self.clock.seconds(), accepted=accepted)
        self.record.auth.append(attempt)
        self.factory.events.emit(
            "smtplatrine.login.attempt", self.identity,
            **{k: printable(v) if isinstance(v, str) else v
               for k, v in attempt.items() if k != "time"})
        self._authenticated = accepted
        self._end_auth("auth_ok" if accepted else "auth_failed")

    def _end_auth(self, key):
        """Leave the SASL exchange with the reply *key*."""
        self._exchange = None
        self._mode = COMMAND
        self._reply(key)

    _COMMANDS = {
        "HELO": do_HELO, "EHLO": do_EHLO, "MAIL": do_MAIL, "RCPT": do_RCPT,
        "DATA": do_DATA, "BDAT": do_BDAT, "RSET": do_RSET, "NOOP": do_NOOP,
        "QUIT": do_QUIT, "VRFY": do_VRFY, "ETRN": do_ETRN,
        "STARTTLS": do_STARTTLS, "AUTH": do_AUTH, "XCLIENT": do_XCLIENT,
        "XFORWARD": do_XFORWARD,
    }

    # --- message bodies ----------------------------------------------------

    def _open_message(self, transport):
        """Start spooling a message; the persona's reply key if that fails."""
        if self._envelope is None:
            self._start_transaction(None, {})
        self._envelope.transport = transport
        try:
            self._file = self.factory.spool.open(self.config.message_size_limit)
        except OSError as e:
            log.error("spool: cannot open a message file: {error}", error=str(e))
            self._envelope.outcome = "spool_error"
            return _spool_error(e)
        message_id = self._file.message_id
        self._envelope.message = str(message_id)
        self._envelope.queue_id = message_id.hex[:11].upper()
        self._data_start = self.clock.seconds()
        self._oversized = False
        self._framer.start_message()
        self._timer.cancel()
        self._schedule_watchdog()

    def _data_step(self):
        """Spool what DATA brought; True when it ended."""
        piece = self._framer.data()
        if piece is None:
            return False
        self._file.write(piece.body)
        if not piece.end:
            return False
        self._mode = COMMAND
        self._finish_message()
        return True

    def _bdat_step(self):
        """Spool what the chunk brought; True when it is whole."""
        piece = self._framer.chunk()
        if piece is None:
            return False
        if self._chunk_error is None:
            self._file.write(piece.body)
        if not piece.end:
            return False
        self._mode = COMMAND
        if self._chunk_error:
            self._reply(self._chunk_error)
        elif self._chunk_last:
            self._finish_message(self._chunk_refusal)
        elif self._chunk_refusal:
            key, values = self._chunk_refusal
            self._reply(key, **values)
        else:
            self._reply("chunk_ok", size=self._file.size)
        return True

    def _metadata(self, **status):
        """The metadata of the message ending now, with *status*."""
        envelope_ = self._envelope
        return Metadata(
            envelope_.message, self.identity, queue_id=envelope_.queue_id,
            transport=envelope_.transport, mail_from=envelope_.mail_from,
            mail_params=envelope_.params, rcpts=tuple(self._recipients),
            session_start=self.record.start, received=self.clock.seconds(),
            helo=self.record.helo,
            tls=self.record.tls, flags=tuple(sorted(self.record.flags)), **status)

    def _finish_message(self, refusal=None):
        """Commit the message; answer *refusal* (key, values) if given,
        else what the commit and the size limit make of it."""
        spool_file, self._file = self._file, None
        # Postfix counts a BDAT message in lines that end in CRLF.
        lines_size = spool_file.size + self._framer.crlf_shortfall
        accepted = (refusal is None and not spool_file.truncated
                    and lines_size <= self.config.message_size_limit)
        metadata = self._metadata(acknowledged=accepted, incomplete=False)
        envelope_ = self._envelope
        self._envelope = None
        self._declared_size = 0
        self._busy = True

        def committed(_):
            envelope_.outcome = "queued" if accepted else "too_big"
            # Acknowledged means the 250 was written: not to a connection
            # that is gone (or going) by now.
            acknowledged = accepted and not self._closing
            if accepted and not acknowledged:
                self.factory.spool.unacknowledged(spool_file)
            self.factory.events.emit(
                "smtplatrine.message.spooled", self.identity,
                message=envelope_.message, queue_id=envelope_.queue_id,
                size=spool_file.size, sha256=spool_file.sha256,
                acknowledged=acknowledged, truncated=spool_file.truncated)
            if not accepted:
                return refusal or ("message_too_big", {})
            self.record.messages += 1
            # As in Postfix, a delivered message forgives earlier errors
            # and junk commands.
            self.record.errors = self._junk_commands = 0
            if envelope_.transport == "BDAT":
                return "chunk_queued", {"queue_id": envelope_.queue_id,
                                        "size": lines_size}
            return "queued", {"queue_id": envelope_.queue_id}

        def failed(failure):
            self._spool_failed(failure, spool_file, envelope_)
            return _spool_error(failure.value), {}

        def answer(result):
            key, values = result
            self._release()
            self._reply(key, **values)
            self._process()

        d = self.factory.spool.commit(spool_file, metadata)
        d.addCallbacks(committed, failed).addCallback(answer)

    def _spool_failed(self, failure, spool_file, envelope_):
        """Log why *spool_file*, of *envelope_*, could not be kept (one line
        for a disk that refused it), and remove it: it was never
        acknowledged."""
        envelope_.outcome = "spool_error"
        if failure.check(OSError):
            log.error("spool: cannot keep message {message}: {error}",
                      message=spool_file.path.stem, error=str(failure.value))
        else:
            log.failure("spool: cannot keep message {message}", failure,
                        message=spool_file.path.stem)
        self.factory.spool.discard(spool_file)

    def _reset_transaction(self):
        """Forget the transaction and the size declared; its message file,
        if one was open, is removed (it was never acknowledged)."""
        if self._file is not None:
            self.factory.spool.discard(self._file)
            self._file = None
        self._envelope = None
        self._declared_size = 0

    # --- replies -----------------------------------------------------------

    def _reply(self, key, then=None, counts=True, **values):
        """Send the persona's reply *key*, filled with *values* (see
        :meth:`_write_reply`)."""
        lines = self.persona.reply(
            key, hostname=self.factory.config.server.hostname, **values)
        self._write_reply(lines, then, counts)

    def _write_reply(self, lines, then=None, counts=True):
        """Send one reply in one write, then call *then*.

        Error replies count (unless *counts* is false); past the soft limit
        every reply is delayed, and at the hard limit the session ends, as
        in Postfix.
        """
        code = lines[0][:3]
        delay = (self.config.error_sleep_time
                 if self.record.errors >= self.config.soft_error_limit
                 else 0)
        if counts and code[0] in "45" and code != "421":
            self.record.errors += 1
        if self._junk:
            # Postfix: past smtpd_junk_command_limit, each one is an error.
            self._junk = False
            self._junk_commands += 1
            if self._junk_commands > self.config.junk_command_limit + 1:
                self.record.errors += 1
        text = wire(lines)
        if delay and not self._closing:
            self._busy = True
            self.clock.callLater(delay, self._send_delayed, text, then)
        else:
            self._send(text, then)

    def _send_delayed(self, text, then):
        """Send a reply the error sleep held back, and answer on."""
        self._release()
        self._send(text, then)
        self._process()

    def _send(self, text, then):
        """Write the reply *text*, note it in the transcript, then call
        *then*, or end the session at the hard error limit."""
        if self._closing:
            return
        self.record.note(self.clock.seconds(), "S", text.rstrip("\r\n"),
                         self.config.transcript_limit)
        self.transport.write(text.encode("utf-8", "surrogateescape"))
        if then is not None:
            then()
        elif self.record.errors >= self.config.hard_error_limit:
            self.record.close_reason = "too_many_errors"
            self._reply("too_many_errors", then=self._close)

    def _close(self):
        """Close after the last reply; abort if that cannot be flushed (a
        client that does not read, a TLS handshake that never happened)."""
        self._closing = True
        if self._producing:
            # A transport with a producer would wait for it before closing.
            self._producing = False
            self.transport.unregisterProducer()
        self.transport.loseConnection()
        if self._timer is not None and self._timer.active():
            self._timer.cancel()
        self._timer = self.clock.callLater(ABORT_AFTER, self.transport.abortConnection)

    # --- deadlines ---------------------------------------------------------

    def _schedule_watchdog(self):
        """Wake the watchdog at the first deadline that may pass."""
        now = self.clock.seconds()
        config = self.config
        due = min(self._last_activity + config.timeout,
                  self.record.start + config.session_deadline)
        if self._line_started is not None:
            due = min(due, self._line_started + config.timeout)
        if self._file is not None:
            due = min(due, now + 10)
        self._timer = self.clock.callLater(max(due - now, 0), self._watchdog)

    def _watchdog(self):
        """End the session with 421 if a deadline passed (see the module's
        docstring), else wait for the next."""
        now = self.clock.seconds()
        config = self.config
        reason = None
        if now >= self.record.start + config.session_deadline:
            reason = "session_deadline"
        elif now >= self._last_activity + config.timeout:
            reason = "idle_timeout"
        elif (self._line_started is not None
              and now >= self._line_started + config.timeout):
            reason = "command_timeout"
        elif self._file is not None and config.min_data_rate:
            elapsed = now - self._data_start
            if elapsed >= 10 and self._framer.body_read / elapsed < config.min_data_rate:
                reason = "slow_data"
        if reason is None:
            self._schedule_watchdog()
            return
        self._timer = None
        self.record.close_reason = reason
        self.record.flag(reason)
        self._reply("timeout", then=self._close)

    # --- end ---------------------------------------------------------------

    def connectionLost(self, reason):
        """Keep what is left: a message cut short (``incomplete``, never
        acknowledged) and the session record."""
        self._closing = True
        if self._timer is not None and self._timer.active():
            self._timer.cancel()
        now = self.clock.seconds()
        if self._file is not None:
            if self._mode == DATA:
                self._file.write(self._framer.flush())
            spool_file, self._file = self._file, None
            self._envelope.outcome = "incomplete"
            self.factory.spool.commit(
                spool_file, self._metadata(acknowledged=False, incomplete=True)
            ).addErrback(self._spool_failed, spool_file, self._envelope)
            self.record.flag("incomplete_message")
        self.record.end = now
        self.record.close_reason = self.record.close_reason or "client"
        self.factory.events.emit(
            "smtplatrine.session.closed", self.identity,
            duration=now - self.record.start, messages=self.record.messages,
            commands=self.record.commands, reason=self.record.close_reason,
            tls_failed=bool(self.record.tls) and "version" not in self.record.tls,
            envelopes_dropped=self.record.envelopes_dropped,
            recipients_dropped=self.record.recipients_dropped)
        self.factory.session_closed(self)

