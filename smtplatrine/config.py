"""Configuration: INI files in one directory, read into frozen attrs objects.

Every option has its default here, or, for the sections of plugins
(``[output_NAME]``, ``[enricher_NAME]``), in the options class the plugin
declares; ``etc/*.ini`` documents the same options with the same defaults.
A section may appear in any ``*.ini`` file of the directory; an unknown
section or key, a value of the wrong kind or a required value missing
raises :class:`ConfigError`, one line for each, naming the file, the
section, the key and what is allowed.
"""

import configparser
from pathlib import Path

import attrs
from attrs import validators as v


class ConfigError(Exception):
    """The configuration cannot be used; the message says where and why."""


def _allowed(text):
    """Field metadata: what a value may be, said to the operator."""
    return {"allowed": text}


_positive = v.gt(0)
_non_negative = v.ge(0)


@attrs.frozen
class Server:
    sensor_name: str = attrs.field(default="smtplatrine", validator=v.min_len(1))
    hostname: str = attrs.field(
        default="mail.example.com",
        validator=v.matches_re(r"[A-Za-z0-9]([A-Za-z0-9.-]{0,252})"),
        metadata=_allowed("a DNS host name such as mail.example.com"),
    )
    listen: tuple[str, ...] = ("tcp:25", "tcp:587", "ssl:465")
    data_dir: str = attrs.field(default="data", validator=v.min_len(1))
    tls_certificate: str = ""
    tls_private_key: str = ""


@attrs.frozen
class NonPrivileged:
    user: str = attrs.field(default="nobody", validator=v.min_len(1))
    group: str = attrs.field(default="nogroup", validator=v.min_len(1))


@attrs.frozen
class Protection:
    max_connections: int = attrs.field(default=1000, validator=_positive)
    max_connections_per_client: int = attrs.field(default=50, validator=_non_negative)
    client_ipv6_prefix: int = attrs.field(default=64, validator=v.and_(_positive, v.le(128)),
                                          metadata=_allowed("a prefix length, 1 to 128"))
    max_connection_rate: int = attrs.field(default=100, validator=_non_negative)
    rate_window: float = attrs.field(default=60.0, validator=_positive)
    acl_action: str = attrs.field(default="reject", validator=v.in_(["reject", "close"]),
                                  metadata=_allowed("reject or close"))
    acl_reload_interval: float = attrs.field(default=60.0, validator=_positive)


@attrs.frozen
class SmartACL:
    enabled: bool = True
    window: float = attrs.field(default=60.0, validator=_positive)
    max_connections: int = attrs.field(default=600, validator=_non_negative)
    max_messages: int = attrs.field(default=300, validator=_non_negative)
    max_mismatches: int = attrs.field(default=5, validator=_non_negative)
    ban_time: float = attrs.field(default=3600.0, validator=_positive)


@attrs.frozen
class SMTP:
    persona: str = attrs.field(
        default="postfix",
        validator=v.in_(["postfix"]),
        metadata=_allowed("postfix"),
    )
    smtp_compliant: bool = True
    helo_required: bool = False
    smtp_auth_accept: bool = False
    # A Debian 12 server with Postfix: the users of base-passwd's
    # passwd.master, those of systemd, dbus, OpenSSH and Postfix, and
    # Debian's one alias, postmaster.
    local_users: tuple[str, ...] = (
        "root", "daemon", "bin", "sys", "sync", "games", "man", "lp", "mail", "news",
        "uucp", "proxy", "www-data", "backup", "list", "irc", "_apt", "nobody",
        "systemd-network", "systemd-timesync", "messagebus", "sshd", "postfix",
        "postmaster")
    local_domains: tuple[str, ...] = ("localhost.localdomain", "localhost")
    greet_delay: float = attrs.field(default=0.0, validator=_non_negative)
    line_length_limit: int = attrs.field(default=2048, validator=v.ge(512))
    message_size_limit: int = attrs.field(default=10240000, validator=_positive)
    recipient_limit: int = attrs.field(default=1000, validator=_positive)
    soft_error_limit: int = attrs.field(default=10, validator=_non_negative)
    hard_error_limit: int = attrs.field(default=20, validator=_positive)
    error_sleep_time: float = attrs.field(default=1.0, validator=_non_negative)
    timeout: float = attrs.field(default=300.0, validator=_positive)
    session_deadline: float = attrs.field(default=3600.0, validator=_positive)
    min_data_rate: int = attrs.field(default=500, validator=_non_negative)
    transcript_limit: int = attrs.field(default=500, validator=_non_negative)
    envelope_limit: int = attrs.field(default=1000, validator=_non_negative)
    envelope_bytes_limit: int = attrs.field(default=524288, validator=_non_negative)
    junk_command_limit: int = attrs.field(default=100, validator=_positive)
    spool_min_free: int = attrs.field(default=0, validator=_non_negative)
    in_flow_delay: float = attrs.field(default=1.0, validator=_non_negative)
    spool_backlog_messages: int = attrs.field(default=1000, validator=_positive)
    spool_backlog_bytes: int = attrs.field(default=2**30, validator=_positive)
    smtp_attachments_store: bool = True
    smtp_attachments_path: str = attrs.field(default="attachments", validator=v.min_len(1))


@attrs.frozen
class Features:
    pipelining: bool = True
    size: bool = True
    vrfy: bool = True
    etrn: bool = True
    starttls: bool = True
    auth: bool = True
    auth_mechanisms: tuple[str, ...] = attrs.field(
        default=("PLAIN", "LOGIN"),
        validator=v.deep_iterable(v.in_(["PLAIN", "LOGIN", "CRAM-MD5"])),
        metadata=_allowed("a list of PLAIN, LOGIN, CRAM-MD5"),
    )
    enhancedstatuscodes: bool = True
    eightbitmime: bool = True
    dsn: bool = True
    smtputf8: bool = True
    chunking: bool = True


_LEVELS = ["debug", "info", "warn", "error"]
# Syslog facilities by name.
FACILITIES = ["kern", "user", "mail", "daemon", "auth", "syslog", "lpr", "news",
              "uucp", "cron", "authpriv", *(f"local{i}" for i in range(8))]


def facility(default):
    """A field naming a syslog facility."""
    return attrs.field(default=default, validator=v.in_(FACILITIES),
                       metadata=_allowed(", ".join(FACILITIES)))


@attrs.frozen
class Logger:
    level: str = attrs.field(
        default="info", validator=v.in_(_LEVELS), metadata=_allowed(", ".join(_LEVELS))
    )
    file: str = "smtplatrine.log"
    syslog: bool = False
    syslog_facility: str = facility("mail")


@attrs.frozen
class Metrics:
    listen: str = ""


@attrs.frozen
class Engine:
    engine_backend: str = attrs.field(
        default="sqlite", validator=v.in_(["sqlite", "mysql"]),
        metadata=_allowed("sqlite or mysql"))


@attrs.frozen
class SQLite:
    sqlite_path: str = attrs.field(default="smtplatrine.sqlite", validator=v.min_len(1))


@attrs.frozen
class MySQL:
    mysql_auto_create_db: bool = True
    mysql_host: str = attrs.field(default="localhost", validator=v.min_len(1))
    mysql_port: int = attrs.field(
        default=3306, validator=v.and_(_positive, v.le(65535)),
        metadata=_allowed("a TCP port, 1 to 65535"))
    mysql_socket: str = ""
    mysql_database: str = attrs.field(
        default="smtplatrine", validator=v.matches_re(r"[A-Za-z0-9_]{1,64}"),
        metadata=_allowed("letters, digits and _ (at most 64)"))
    mysql_username: str = attrs.field(default="root", validator=v.min_len(1))
    mysql_password: str = ""
    mysql_connections: int = attrs.field(default=4, validator=_positive)


@attrs.frozen
class Store:
    raw_in_database: bool = True
    parse_workers: str = attrs.field(
        default="auto", validator=v.matches_re(r"auto|[1-9][0-9]{0,2}"),
        metadata=_allowed("auto (one per usable CPU) or a whole number, 1 to 999"))
    parse_seconds: float = attrs.field(default=10.0, validator=_positive)
    parse_max_depth: int = attrs.field(default=32, validator=_positive)
    parse_max_parts: int = attrs.field(default=1000, validator=_positive)
    parse_max_header_bytes: int = attrs.field(default=262144, validator=_positive)
    retry_max_delay: float = attrs.field(default=60.0, validator=_positive)


def _url(default):
    return attrs.field(default=default, validator=v.matches_re(r"https?://[^\s?#]+"),
                       metadata=_allowed("an http:// or https:// URL"))


@attrs.frozen
class Meta:
    meta_enable: bool = True
    meta_timeout: float = attrs.field(default=20.0, validator=_positive)
    meta_concurrency: int = attrs.field(default=4, validator=_positive)
    meta_cache_ttl: float = attrs.field(default=604800.0, validator=_positive)
    meta_negative_ttl: float = attrs.field(default=86400.0, validator=_positive)
    meta_queue_interval: float = attrs.field(default=60.0, validator=_positive)
    meta_retry_delay: float = attrs.field(default=60.0, validator=_positive)
    geoip_enable: bool = True
    geoip_main_file: str = "/var/lib/GeoIP/GeoLite2-City.mmdb"
    geoip_asn_file: str = "/var/lib/GeoIP/GeoLite2-ASN.mmdb"
    rdns_enable: bool = True
    rdns_server: str = attrs.field(
        default="",
        validator=v.matches_re(r"|[0-9.]+:[0-9]{1,5}|\[[0-9A-Fa-f:.]+\]:[0-9]{1,5}"),
        metadata=_allowed("empty (/etc/resolv.conf) or ADDRESS:PORT, [IPv6]:PORT"))
    rdns_timeout: float = attrs.field(default=5.0, validator=_positive)
    abuseipdb_enable: bool = False
    abuseipdb_key: str = ""
    abuseipdb_url: str = _url("https://api.abuseipdb.com/api/v2")
    abuseipdb_per_minute: int = attrs.field(default=0, validator=_non_negative)
    abuseipdb_per_day: int = attrs.field(default=1000, validator=_non_negative)
    vt_enable: bool = False
    vt_key: str = ""
    vt_url: str = _url("https://www.virustotal.com/api/v3")
    vt_per_minute: int = attrs.field(default=4, validator=_non_negative)
    vt_per_day: int = attrs.field(default=500, validator=_non_negative)
    otx_enable: bool = False
    otx_key: str = ""
    otx_url: str = _url("https://otx.alienvault.com/api/v1")
    otx_per_minute: int = attrs.field(default=10, validator=_non_negative)
    otx_per_day: int = attrs.field(default=1000, validator=_non_negative)
    sandbox_workers: int = attrs.field(default=2, validator=_positive)
    sandbox_memory: int = attrs.field(default=1024, validator=v.ge(64))
    sandbox_seconds: float = attrs.field(default=30.0, validator=_positive)
    sandbox_files: int = attrs.field(default=64, validator=v.ge(16))


@attrs.frozen
class Web:
    enabled: bool = True
    listen: tuple[str, ...] = ("tcp:8025:interface=127.0.0.1",)
    session_idle: float = attrs.field(default=1800.0, validator=_positive)
    session_lifetime: float = attrs.field(default=43200.0, validator=_positive)
    login_failures: int = attrs.field(default=5, validator=_positive)
    login_window: float = attrs.field(default=900.0, validator=_positive)
    page_size: int = attrs.field(default=50, validator=v.and_(_positive, v.le(500)),
                                 metadata=_allowed("a whole number, 1 to 500"))
    secure_cookie: bool = False


@attrs.frozen
class Config:
    server: Server = Server()
    non_privileged: NonPrivileged = NonPrivileged()
    protection: Protection = Protection()
    smart_acl: SmartACL = SmartACL()
    smtp: SMTP = SMTP()
    smtp_features: Features = Features()
    logger: Logger = Logger()
    metrics: Metrics = Metrics()
    engine: Engine = Engine()
    sqlite: SQLite = SQLite()
    mysql: MySQL = MySQL()
    store: Store = Store()
    meta: Meta = Meta()
    web: Web = Web()
    # The options of the plugins' sections, by section name.
    plugins: dict = attrs.Factory(dict)

    def data_path(self, path):
        """A path from the configuration, relative paths under data_dir."""
        return Path(self.server.data_dir) / path

    def options(self, section, cls):
        """The options of the plugin section *section*, an instance of
        *cls* (its defaults when the section was not read)."""
        return self.plugins.get(section) or cls()


def plugin_sections():
    """{section: options class} of the installed plugins:
    ``[output_NAME]`` of every output, ``[enricher_NAME]`` of every
    enricher that declares options.  Of two plugins with one name the
    first found counts, as when they are run."""
    from smtplatrine.interfaces import IEnricher, IEventOutput, discover
    return {f"{kind}_{plugin.name}": attrs.resolve_types(plugin.options)
            for kind, interface in (("output", IEventOutput), ("enricher", IEnricher))
            for plugin in discover(interface)
            if getattr(plugin, "options", None) is not None}


_TRUE = {"1", "true", "yes", "on"}
_FALSE = {"0", "false", "no", "off"}


def _parse(field, raw):
    """Turn the INI text *raw* into a value of *field*'s type."""
    kind = field.type
    if kind is bool:
        if raw.lower() in _TRUE | _FALSE:
            return raw.lower() in _TRUE
        raise ValueError
    if kind == tuple[str, ...]:
        return tuple(raw.split())
    return kind(raw)


def _describe(field):
    if "allowed" in field.metadata:
        return field.metadata["allowed"]
    names = {bool: "true or false", int: "a whole number", float: "a number",
             str: "a non-empty text", tuple[str, ...]: "a list separated by spaces"}
    text = names[field.type]
    validator = field.validator
    if isinstance(validator, type(v.gt(0))):
        text += f" {validator.compare_op} {validator.bound}"
    return text


def _section(cls, filename, section, items, errors):
    """The values of *items* for the options class *cls*; a line in
    *errors* for each that is not one."""
    fields = {f.name: f for f in attrs.fields(cls)}
    values = {}
    for key, raw in items:
        if key not in fields:
            errors.append(f"{filename} [{section}] {key}: unknown option;"
                          f" known options are {', '.join(fields)}")
            continue
        field = fields[key]
        try:
            value = _parse(field, raw.strip())
            attrs.validate(attrs.evolve(cls(), **{key: value}))
        except (ValueError, TypeError):
            errors.append(f"{filename} [{section}] {key} = {raw.strip()!r}:"
                          f" expected {_describe(field)}")
            continue
        values[key] = value
    return values


def _unknown_section(filename, name, known, plugins):
    for kind in ("output", "enricher"):
        if name.startswith(kind + "_"):
            installed = sorted(s[len(kind) + 1:] for s in plugins if s.startswith(kind + "_"))
            what = "output" if kind == "output" else "enricher with options"
            return (f"{filename} [{name}]: no {what} named {name[len(kind) + 1:]!r}"
                    f" is installed; installed: {', '.join(installed) or 'none'}")
    return (f"{filename} [{name}]: unknown section; known sections are"
            f" {', '.join([*known, *plugins])}")


def _missing(options, section, filename):
    """Lines for the required options of *options* left empty while it is
    on (or has no switch)."""
    if not getattr(options, "enabled", True):
        return []
    return [f"{filename} [{section}] {f.name}: required"
            f"{' when enabled = true' if hasattr(options, 'enabled') else ''};"
            f" expected {_describe(f)}"
            for f in attrs.fields(type(options))
            if f.metadata.get("required") and getattr(options, f.name) in ("", ())]


def load(directory=None, plugins=None):
    """Read every ``*.ini`` file in *directory* (defaults when None), with
    the plugin sections *plugins* ({section: options class}; by default
    those of the installed plugins, :func:`plugin_sections`)."""
    if plugins is None:
        plugins = plugin_sections()
    known = {f.name: f.type for f in attrs.fields(Config) if f.name != "plugins"}
    classes = dict(known, **plugins)
    sections = {name: {} for name in classes}
    where = dict.fromkeys(classes, "the configuration")
    errors = []
    if directory is not None:
        directory = Path(directory)
        if not directory.is_dir():
            raise ConfigError(f"{directory}: not a configuration directory")
        for path in sorted(directory.glob("*.ini")):
            parser = configparser.ConfigParser(interpolation=None)
            parser.optionxform = str
            try:
                parser.read(path, encoding="utf-8")
            except (configparser.Error, UnicodeDecodeError) as e:
                raise ConfigError(f"{path.name}: cannot be read: {e}") from None
            for name in parser.sections():
                if name not in classes:
                    errors.append(_unknown_section(path.name, name, known, plugins))
                    continue
                where[name] = path.name
                sections[name].update(_section(classes[name], path.name, name,
                                               parser.items(name), errors))
    built = {name: classes[name](**values) for name, values in sections.items()}
    for name in plugins:
        errors.extend(_missing(built[name], name, where[name]))
    if errors:
        raise ConfigError("\n".join(errors))
    return Config(**{name: built[name] for name in known},
                  plugins={name: built[name] for name in plugins})
