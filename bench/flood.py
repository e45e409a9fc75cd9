"""Section 6, a flood: smtp-source at full speed for FLOOD_SECONDS against
the honeypot storing into SQLite, with its default flow control (MAIL held
back up to in_flow_delay while spool_backlog_messages wait to be stored).
It shows the spool's backlog staying near its bound, every message a client
got a 250 for stored, and a sibling client, one message at a time beside
the flood, getting each reply within about a second."""

import smtplib
import subprocess
import time

from bench.clients import HELO_NAME, MAIL_FROM, RCPT_TO, SMTP_SOURCE, SOURCE_OPTS, Background
from bench.servers import HOST, StoringHoneypot
from bench.report import say
from bench.stored import BacklogSampler, wait_stored
from smtplatrine.config import SMTP

FLOOD_SECONDS = 60      # quick: 15
FLOOD_SESSIONS = 20
SIBLING_EVERY = 0.5     # seconds between the sibling's messages
DRAIN_TIMEOUT = 600     # seconds for the backlog to be stored after the flood
SIBLING_MESSAGE = b"Subject: sibling\r\n\r\none message beside the flood\r\n"


class Sibling(Background):
    """While the with-block runs, a thread sends one message per
    connection every SIBLING_EVERY seconds, timing each reply: ``slowest``
    (seconds, the command it answered), ``sent`` (250s to the message)."""

    def __init__(self, port):
        super().__init__()
        self.port = port
        self.slowest = (0.0, "")
        self.sent = 0
        self.errors = []

    def timed(self, what, call, *args):
        start = time.monotonic()
        code, text = call(*args)
        took = time.monotonic() - start
        if took > self.slowest[0]:
            self.slowest = (took, what)
        return code, text

    def _run(self):
        while not self._stop.wait(SIBLING_EVERY):
            try:
                start = time.monotonic()
                client = smtplib.SMTP(HOST, self.port, timeout=30)
                took = time.monotonic() - start
                if took > self.slowest[0]:
                    self.slowest = (took, "connect and banner")
                try:
                    self.timed("EHLO", client.ehlo, HELO_NAME)
                    self.timed("MAIL", client.mail, MAIL_FROM)
                    self.timed("RCPT", client.rcpt, RCPT_TO)
                    self.timed("DATA", client.docmd, "DATA")
                    code, _ = self.timed("end of data", _data_end, client)
                    if code == 250:
                        self.sent += 1
                    self.timed("QUIT", client.docmd, "QUIT")
                finally:
                    client.close()
            except (OSError, smtplib.SMTPException) as e:
                self.errors.append(repr(e))


def _data_end(client):
    """Send the sibling's message after the 354 and read the reply."""
    client.send(SIBLING_MESSAGE + b".\r\n")
    return client.getreply()



def flood(port, seconds):
    """smtp-source -c at full speed for *seconds*, killed then: the 250s
    it got to DATA (its counter's last value)."""
    argv = [SMTP_SOURCE, *SOURCE_OPTS, "-c", "-d", "-s", str(FLOOD_SESSIONS),
            "-m", "100000000", "-l", "1024", f"{HOST}:{port}"]
    source = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    try:
        out, err = source.communicate(timeout=seconds)
    except subprocess.TimeoutExpired:
        source.terminate()
        out, err = source.communicate()
    counts = out.split(b"\r")
    return int(next((c for c in reversed(counts) if c.strip().isdigit()), b"0")), err.decode()


def section(tmp, opts):
    seconds = 15 if opts.quick else FLOOD_SECONDS
    bound = SMTP()
    say(f"\n== 6. Flood: smtp-source -d -s {FLOOD_SESSIONS} -l 1024 for {seconds} s at full"
        f" speed, a sibling client beside it ==")
    say(f"  flow control at its defaults: in_flow_delay = {bound.in_flow_delay:g} s,"
        f" spool_backlog_messages = {bound.spool_backlog_messages},"
        f" spool_backlog_bytes = {bound.spool_backlog_bytes}")
    server = StoringHoneypot(tmp, "sqlite")
    with server.running() as ready:
        if not ready:
            say("  honeypot did not start")
            return []
        cpu = server.cpu()
        start = time.monotonic()
        with BacklogSampler(server) as sampler, Sibling(server.port) as sibling:
            acknowledged, err = flood(server.port, seconds)
        flood_wall = time.monotonic() - start
        samples = sampler.samples
        expected = acknowledged + sibling.sent
        done, rows, why = wait_stored(server, expected, time.monotonic() + DRAIN_TIMEOUT,
                                      samples)
        drained = (done - start) if done is not None else None
        cpu = server.cpu() - cpu
    say(f"  flood: {acknowledged} messages acknowledged to smtp-source in {flood_wall:.1f} s"
        f" ({acknowledged / flood_wall:.0f} msg/s); sibling: {sibling.sent} acknowledged,"
        f" {len(sibling.errors)} errors{': ' + sibling.errors[0] if sibling.errors else ''}")
    say(f"  spool backlog (finished messages not yet stored) max {max(samples)},"
        f" bound {bound.spool_backlog_messages}")
    say(f"  sibling's slowest reply: {sibling.slowest[0]:.2f} s (to {sibling.slowest[1]};"
        f" a MAIL may be held up to in_flow_delay)")
    stored = (f"all stored {drained:.1f} s after the start" if drained is not None
              else f"NOT all stored: {why}")
    say(f"  rows in SQLite: {rows} for {expected} acknowledged (>= expected: a"
        f" message whose 250 smtp-source was killed before reading is stored too); {stored}")
    say(f"  CPU of the honeypot's processes: {cpu / max(rows, 1) * 1e6:.0f} us per stored"
        " message")
    if err.strip():
        say(f"  smtp-source said: {err.strip().splitlines()[-1]}")
    return [{"acknowledged": expected, "rows": rows, "max_backlog": max(samples),
             "slowest": sibling.slowest[0]}]


def targets(results):
    if not results:
        return [("flood: backlog bounded, all stored, sibling < 1 s", "n/a", None)]
    [r] = results
    bound = SMTP().spool_backlog_messages
    figure = (f"backlog max {r['max_backlog']} (bound {bound}), {r['rows']} stored for"
              f" {r['acknowledged']} acknowledged, sibling slowest {r['slowest']:.2f} s")
    ok = (r["max_backlog"] <= bound * 1.05 and r["rows"] >= r["acknowledged"]
          and r["slowest"] < 1.0)
    return [("flood: backlog bounded, all stored, sibling < 1 s", figure, ok)]
