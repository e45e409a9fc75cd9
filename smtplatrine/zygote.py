"""Zygotes: processes forked from the storing process at start that fork
its workers on request (the sandbox's analyses, :mod:`smtplatrine.enrich.
sandbox`, and the parse workers, :mod:`smtplatrine.parsers`).

A zygote is forked while the storing process has no thread (a fork of a
process with threads may inherit a lock held for ever) and can still read
everything (after the privilege drop the Python library may be out of
reach, so nothing may be imported later).  It becomes the unprivileged
user itself, dies with the storing process, keeps no descriptor but its
control socket (and, if asked, the log's output), and ignores the signals
sent to the process group.  The storing process, and each of its workers
in turn (they are forks of it and share the socket), send it requests on
that ``SOCK_SEQPACKET`` socket: one packet each, a short tag and
descriptors to hand over (:func:`send`, :func:`receive`).
"""

import ctypes
import gc
import os
import signal
import socket

from smtplatrine import privileges
from smtplatrine.child import die_with_parent

_PR_SET_NAME = 15


def fork(run, name, ids=None, output=False):
    """Fork a zygote named *name* (bytes) that becomes *ids* (a (uid,
    gid), if given) and runs ``run(control)``; (its control socket, its
    pid).  *output*: it keeps this process's standard output and error
    (where the log goes), else only the error output."""
    parent, child = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)
    pid = os.fork()
    if pid == 0:
        code = 1
        try:
            parent.close()
            _become(child, name, ids, output)
            run(child)
            code = 0
        finally:
            os._exit(code)
    child.close()
    return parent, pid


def _become(control, name, ids, output):
    null = os.open(os.devnull, os.O_RDWR)
    os.dup2(null, 0)
    if not output:
        os.dup2(null, 1)
    os.close(null)
    keep = {0, 1, 2, control.fileno()}
    for fd in map(int, os.listdir("/proc/self/fd")):
        if fd not in keep:
            try:
                os.close(fd)
            except OSError:
                pass
    if ids is not None:
        privileges.drop_privileges(*ids)
    else:
        privileges.no_new_privileges()
    die_with_parent()
    set_name(name)
    for signame in ("SIGTERM", "SIGINT", "SIGHUP"):
        signal.signal(getattr(signal, signame), signal.SIG_IGN)
    gc.freeze()


def set_name(name):
    """Name this process *name* (bytes, at most 15 shown) in ps and top."""
    ctypes.CDLL(None, use_errno=True).prctl(_PR_SET_NAME, ctypes.c_char_p(name), 0, 0, 0)


def send(control, tag, fds=()):
    """Send the zygote the request *tag* (bytes), handing over *fds*;
    raises OSError once it has gone."""
    socket.send_fds(control, [tag], list(fds))


def receive(control, most=16):
    """In the zygote: the next request, (tag, descriptors), or None once
    the storing process has gone."""
    try:
        tag, fds, _, _ = socket.recv_fds(control, 64, most)
    except OSError:
        return None
    if not tag:
        for fd in fds:
            os.close(fd)
        return None
    return tag, fds
