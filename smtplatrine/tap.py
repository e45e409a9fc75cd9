"""``twistd smtplatrine``: command-line options and the service they make."""

from twisted.python import usage

from smtplatrine import config as config_module
from smtplatrine.service import HoneypotService


class Options(usage.Options):
    synopsis = "[--config DIR] [--listen ENDPOINT]..."
    longdesc = ("Run the SMTP honeypot.  ENDPOINT is a Twisted endpoint string:"
                " tcp:25, ssl:465, systemd:domain=INET:index=0, ...; without"
                " --listen, [server] listen of the configuration is used.")
    optParameters = [
        ["config", "c", None,
         "directory of *.ini files (default: built-in defaults, see etc/)"],
    ]

    def __init__(self):
        super().__init__()
        self["listen"] = []

    def opt_listen(self, description):
        """Listen on ENDPOINT (repeatable); replaces [server] listen."""
        self["listen"].append(description)

    opt_l = opt_listen

    def postOptions(self):
        try:
            self.config = config_module.load(self["config"])
        except config_module.ConfigError as e:
            raise usage.UsageError(str(e)) from None
        self["listen"] = self["listen"] or list(self.config.server.listen)
        if not self["listen"]:
            raise usage.UsageError("nothing to listen on: give --listen ENDPOINT"
                                   " or set [server] listen")


def makeService(options):
    from twisted.internet import reactor
    return HoneypotService(options.config, options["listen"], reactor)
