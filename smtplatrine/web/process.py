"""The dashboard process that ``twistd smtplatrine`` runs beside the SMTP
side, so that no page, however heavy its query, takes the SMTP side's CPU,
GIL or memory: ``python -m smtplatrine.web.process [UID GID]`` (see
smtplatrine.child).  It listens as root, drops its privileges, and serves
from a worker that is started again if it dies."""

import sys

from twisted.internet import protocol

from smtplatrine import child
from smtplatrine.web.service import WebService


class _EndOfInput(protocol.Protocol):
    """The server closes our input to stop us."""

    def __init__(self, ended):
        self._ended = ended

    def connectionLost(self, reason):
        self._ended()


class _Dashboard:
    """The dashboard as the child's worker: listening from the start."""

    def __init__(self, config, reactor, ids=None):
        self.web = WebService(config, reactor)
        self.web.bind()

    def commands(self, ended):
        return _EndOfInput(ended)

    def start(self):
        self.web.startService()

    def stop(self):
        return self.web.stopService()


def main(argv):
    child.main(argv, "the dashboard", _Dashboard)


if __name__ == "__main__":
    main(sys.argv[1:])
