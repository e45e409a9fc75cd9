"""The start-up safety check: refuse a configuration that would expose the
database beyond loopback without a password, keep the attacker-facing
process as root, or hand our own code or the system's to the unprivileged
user.

smtplatrine has no code that sends mail and no option that could make it
relay; what can be got dangerously wrong is what surrounds it.
"""

import grp
import ipaddress
import os
import pwd
import sys
from pathlib import Path

import smtplatrine


def _loopback(host):
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False        # a name: it may resolve anywhere


def _inside(path, directory):
    return path == directory or directory in path.parents


def problems(config, running_as_root=None):
    """What is unsafe in *config*, one line each (empty: nothing)."""
    found = []
    mysql = config.mysql
    if (config.engine.engine_backend == "mysql" and not mysql.mysql_socket
            and not _loopback(mysql.mysql_host) and not mysql.mysql_password):
        found.append(
            f"[mysql] mysql_host = {mysql.mysql_host} is not loopback and"
            f" mysql_password is empty: the database would take anyone who"
            f" reaches it; set a password (or use localhost or mysql_socket)")
    if running_as_root is None:
        running_as_root = os.getuid() == 0
    user = config.non_privileged
    if running_as_root and (_id(pwd.getpwnam, user.user, "pw_uid") == 0
                            or _id(grp.getgrnam, user.group, "gr_gid") == 0):
        found.append(
            f"[non_privileged] user = {user.user}, group = {user.group} would keep"
            f" the process that talks to attackers root; name an unprivileged"
            f" user and group (nobody, nogroup)")
    ours = [Path(smtplatrine.__file__).resolve().parent.parent,
            Path(sys.prefix).resolve()]
    given = [("[server] data_dir", Path(config.server.data_dir))]
    if config.smtp.smtp_attachments_store:
        given.append(("[smtp] smtp_attachments_path",
                      config.data_path(config.smtp.smtp_attachments_path)))
    for name, path in given:
        path = path.resolve()
        if any(_inside(code, path) for code in ours):
            found.append(
                f"{name} = {path} holds smtplatrine's code or Python; it is given"
                f" to the unprivileged user, who could then change them; choose"
                f" a directory of its own (/var/lib/smtplatrine)")
    return found


def _id(lookup, name, field):
    try:
        return getattr(lookup(name), field)
    except KeyError:
        return None         # unknown: unprivileged_ids() says so


def check(config):
    """Stop start-up with one line for the first problem of *config*."""
    found = problems(config)
    if found:
        raise SystemExit(f"smtplatrine: unsafe configuration: {found[0]}")
