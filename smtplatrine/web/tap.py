"""``twistd smtplatrine-web``: the dashboard alone, e.g. on an analysis host
that reads the MariaDB many sensors write to."""

from twisted.python import usage

from smtplatrine import config as config_module
from smtplatrine import privileges
from smtplatrine.web.service import WebService


class Options(usage.Options):
    synopsis = "[--config DIR]"
    longdesc = ("Run the smtplatrine dashboard on [web] listen, reading the database"
                " of the configuration.")
    optParameters = [
        ["config", "c", None,
         "directory of *.ini files (default: built-in defaults, see etc/)"],
    ]

    def postOptions(self):
        try:
            self.config = config_module.load(self["config"])
        except config_module.ConfigError as e:
            raise usage.UsageError(str(e)) from None


class StandaloneWebService(WebService):
    """The dashboard in twistd's own process: listening as root, then the
    user and group of [non_privileged]."""

    def privilegedStartService(self):
        self.bind()
        user = self.config.non_privileged
        ids = privileges.unprivileged_ids(user.user, user.group)
        if ids is not None:
            privileges.load_codecs()
            privileges.drop_privileges(*ids)
        super().privilegedStartService()


def makeService(options):
    from twisted.internet import reactor
    return StandaloneWebService(options.config, reactor)
