"""A twisted.web server that records every request it gets, one line each
(method and path) in a file: the place hostile mail points at, where the
browser tests count what reached it.

    python -m tests.spy HOST PORT FILE
"""

import sys

from twisted.internet import reactor
from twisted.web import resource, server


class Recorder(resource.Resource):
    isLeaf = True

    def __init__(self, path):
        super().__init__()
        self._file = open(path, "a", buffering=1, encoding="utf-8")

    def render(self, request):
        self._file.write(f"{request.method.decode()} {request.uri.decode()}\n")
        request.setHeader(b"Content-Type", b"text/plain")
        return b"fetched"


def main(host, port, path):
    site = server.Site(Recorder(path))
    reactor.listenTCP(int(port), site, interface=host)
    reactor.callWhenRunning(print, "ready", flush=True)
    reactor.run()


if __name__ == "__main__":
    main(*sys.argv[1:])
