"""The dashboard process that ``twistd smtplatrine`` runs beside the SMTP
side, so that no page, however heavy its query, takes the SMTP side's CPU,
GIL or memory: ``python -m smtplatrine.web.process [UID GID]`` (see
smtplatrine.child).  It listens as root, drops its privileges, and serves
from a worker that is started again if it dies."""

import sys

from twisted.internet import protocol
from twisted.internet import stdio
from twisted.logger import Logger

from smtplatrine import child, privileges
from smtplatrine.web.service import WebService

# Named: run as ``python -m``, this module is __main__.
log = Logger(namespace="smtplatrine.web.process")


class _EndOfInput(protocol.Protocol):
    """The server closes our input to stop us."""

    def __init__(self, ended):
        self._ended = ended

    def connectionLost(self, reason):
        self._ended()


def _work(web, reactor):
    stdio.StandardIO(_EndOfInput(reactor.stop), reactor=reactor)
    reactor.callWhenRunning(web.startService)
    reactor.addSystemEventTrigger("before", "shutdown", web.stopService)
    reactor.run(installSignalHandlers=False)


def main(argv):
    # Each fork gets a reactor of its own (poll keeps no kernel state).
    from twisted.internet import pollreactor
    pollreactor.install()
    from twisted.internet import reactor

    config = child.take_configuration()
    if config is None:
        return
    try:
        web = WebService(config, reactor)
        web.bind()
        privileges.load_codecs()
        if argv:
            privileges.drop_privileges(int(argv[0]), int(argv[1]))
    except SystemExit as e:
        log.critical("{message}", message=str(e))
        sys.exit(child.FATAL)
    except Exception:
        log.failure("smtplatrine: cannot prepare the dashboard")
        sys.exit(child.FATAL)
    child.supervise(lambda: _work(web, reactor), "the dashboard",
                    config.store.retry_max_delay)


if __name__ == "__main__":
    main(sys.argv[1:])
