"""``twistd smtplatrine``: command-line options and the service they make."""

from twisted.logger import LogLevel
from twisted.python import usage

from smtplatrine import child, metrics, safety, service, storer
from smtplatrine import config as config_module
from smtplatrine.blocklist import BlockList
from smtplatrine.capture import Identity
from smtplatrine.disk import DiskWorker
from smtplatrine.events import Events
from smtplatrine.layout import DataDir
from smtplatrine.persona import PERSONAS
from smtplatrine.privileges import unprivileged_ids
from smtplatrine.smtp.factory import HoneypotFactory
from smtplatrine.spool import Spool
from smtplatrine.store import dialects
from smtplatrine.store.database import Database


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


def makeService(options, reactor=None):
    """One sensor: a :class:`~smtplatrine.service.InOrder` of the human
    log, the disk worker, the storing process (and the dashboard), the
    block list, a listener per endpoint and, last, the privilege drop;
    stopped in the reverse order, so that nothing acknowledged is lost.
    What the configuration makes impossible is one line for the
    operator, before anything starts."""
    if reactor is None:
        from twisted.internet import reactor
    config = options.config
    safety.check(config)
    sensor = config.server.sensor_name
    ids = unprivileged_ids(config.non_privileged.user, config.non_privileged.group)
    data_dir = DataDir.of(config)
    data_dir.make()
    data_dir.make_stores()
    cert, key, tls_options = service.tls_options(config, data_dir.tls)
    counting = metrics.prepare(config)
    top = service.InOrder()

    service.HumanLog(config, reactor).setServiceParent(top)

    disk = DiskWorker(reactor, data_dir.spool, ids)
    spool = Spool(data_dir.spool, disk, reactor, flow=config.smtp)
    service.DiskService(reactor, spool, disk, sensor).setServiceParent(top)

    events = None

    def lost(count):
        events.emit("smtplatrine.events.lost", Identity(sensor=sensor), count=count,
                    reason="the storing process did not take them in time (busy,"
                           " or starting again)")

    storing = storer.StoringProcess(reactor, config, ids, lost, spool.backlog.left)
    spool.ready = storing
    children = [storing]
    if config.web.enabled:
        children.append(child.ChildProcess(
            reactor, config, ids, "smtplatrine.web.process", "the dashboard",
            " (the SMTP side goes on)"))
    service.ChildrenService(children).setServiceParent(top)
    events = Events(reactor, [storing, *([metrics.EventMetrics()] if counting else [])],
                    LogLevel.levelWithName(config.logger.level))

    guard = service.guard(config, reactor)
    # The storing process makes and upgrades the schema.
    database = Database(dialects.from_config(config), create=False)
    blocklist = BlockList(guard, database, sensor, reactor,
                          config.protection.acl_reload_interval)
    service.BlockListService(reactor, blocklist, database,
                             config.store.retry_max_delay).setServiceParent(top)

    factory = HoneypotFactory(config, PERSONAS[config.smtp.persona], reactor, spool,
                              events, tls_options, guard)
    for description in options["listen"]:
        service.listener(reactor, description, factory, cert, key,
                         tls_options).setServiceParent(top)

    if ids is not None:
        service.PrivilegeDrop(ids, data_dir.owned).setServiceParent(top)
    return top
