"""The one way every process of smtplatrine stops being root: the user and
group of [non_privileged], no capability left, none to regain."""

import contextlib
import ctypes
import encodings
import grp
import importlib
import os
import pkgutil
import pwd
from pathlib import Path


def unprivileged_ids(user, group):
    """The (uid, gid) to become when running as root, else None."""
    if os.getuid() != 0:
        return None
    try:
        return pwd.getpwnam(user).pw_uid, grp.getgrnam(group).gr_gid
    except KeyError as e:
        raise SystemExit(f"smtplatrine: [non_privileged] names an unknown user"
                         f" or group ({e.args[0]}); create it or change"
                         f" server.ini") from None


def load_codecs():
    """Load every codec now: they load lazily from the Python library, which
    the new user may not be able to read (a Python installed under /root,
    say), and captured mail may name any charset."""
    for module in pkgutil.iter_modules(encodings.__path__, "encodings."):
        with contextlib.suppress(ImportError):
            importlib.import_module(module.name)
    # So does the idna package's table, which treq needs for any host name.
    with contextlib.suppress(ImportError):
        importlib.import_module("idna.uts46data")


def drop_privileges(uid, gid):
    """Become *uid* and *gid*, with no capability and no way to regain one."""
    drop_bounding_set()
    os.setgroups([])
    os.setgid(gid)
    os.setuid(uid)
    no_new_privileges()
    left = capabilities()
    if any(left.values()):
        raise SystemExit(f"smtplatrine: capabilities left after becoming uid {uid}:"
                         f" {left}; refusing to run with them")


_PR_CAPBSET_DROP, _PR_SET_NO_NEW_PRIVS = 24, 38


def _prctl(option, value):
    libc = ctypes.CDLL(None, use_errno=True)
    if libc.prctl(option, value, 0, 0, 0) != 0:
        error = ctypes.get_errno()
        raise OSError(error, os.strerror(error))


def drop_bounding_set():
    """Remove every capability from the bounding set, so that nothing this
    process runs later can gain one (needs CAP_SETPCAP, which root has)."""
    last = int(Path("/proc/sys/kernel/cap_last_cap").read_text())
    for capability in range(last + 1):
        try:
            _prctl(_PR_CAPBSET_DROP, capability)
        except OSError as e:
            raise SystemExit(f"smtplatrine: cannot drop capability {capability}"
                             f" from the bounding set ({e.strerror}); start as"
                             f" root with CAP_SETPCAP, or use systemd socket"
                             f" activation (contrib/)") from None


def no_new_privileges():
    """No set-user-ID program or file capability can raise us again."""
    _prctl(_PR_SET_NO_NEW_PRIVS, 1)


def capabilities(status="/proc/self/status"):
    """The capability sets of this process: {"CapEff": int, ...}."""
    return {line.split(":")[0]: int(line.split()[1], 16)
            for line in Path(status).read_text().splitlines()
            if line.startswith("Cap")}
