"""What /proc tells of a server under test: its memory, open files, CPU
time and processes."""

import contextlib
import os
from pathlib import Path

from tests.process import children

SETTLE = 1.0            # seconds to let a server settle before reading its memory
CLOCK_TICKS = os.sysconf("SC_CLK_TCK")


def memory(pid):
    """VmRSS, VmHWM and RssAnon of a process, in bytes."""
    mem = {}
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            key, _, rest = line.partition(":")
            if key in ("VmRSS", "VmHWM", "RssAnon"):
                mem[key] = int(rest.split()[0]) * 1024
    return mem


def reset_peak(pid):
    """Set VmHWM of *pid* back to its VmRSS (proc(5), clear_refs 5), so
    that a peak read later is one reached since; False where this
    process may not (another user's process, when not root)."""
    try:
        Path(f"/proc/{pid}/clear_refs").write_text("5")
    except OSError:
        return False
    return True


def open_fds(pid):
    """How many file descriptors the process has open."""
    return len(os.listdir(f"/proc/{pid}/fd"))


def descendants(pid):
    """The pids of every process under `pid`."""
    found, todo = [], children(pid)
    while todo:
        child = todo.pop()
        found.append(child)
        todo += children(child)
    return found


def helper_memories(pid):
    """Memory of the processes under server `pid` (the honeypot's disk
    worker and storing processes, and the zygotes forked from the storing
    process, by the name they give themselves: smtplatrine-par, the parse
    workers, smtplatrine-sbx, the sandbox), by pid: (name, memory)."""
    found = {}
    for child in descendants(pid):
        with contextlib.suppress(OSError):
            comm = Path(f"/proc/{child}/comm").read_text().strip()
            words = Path(f"/proc/{child}/cmdline").read_bytes().split(b"\0")
            name = comm if comm.startswith("smtplatrine-") else next(
                (w.decode() for w in words if w.startswith(b"smtplatrine.")), words[0].decode())
            mem = memory(child)
            if "VmHWM" in mem:  # not a zombie
                found[child] = (name, mem)
    return found


def cpu_seconds(pid):
    """User and system CPU time of `pid` and every process under it so far,
    those that ended included (a parent adds its waited-for children's)."""
    ticks = 0
    for process in [pid, *descendants(pid)]:
        with contextlib.suppress(OSError):
            fields = Path(f"/proc/{process}/stat").read_text().rpartition(")")[2].split()
            # utime, stime, cutime, cstime: fields 14 to 17 of proc(5)
            ticks += sum(int(f) for f in fields[11:15])
    return ticks / CLOCK_TICKS
