"""Configuration: INI files in one directory, read into frozen attrs objects.

Every option has its default here; ``etc/*.ini`` documents the same options
with the same defaults.  A section may appear in any ``*.ini`` file of the
directory; an unknown section or key, or a value of the wrong kind, raises
:class:`ConfigError` naming the file, the section, the key and what is allowed.
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
    smtp_auth_accept: bool = False
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
        default=("PLAIN", "LOGIN", "CRAM-MD5"),
        validator=v.deep_iterable(v.in_(["PLAIN", "LOGIN", "CRAM-MD5"])),
        metadata=_allowed("a list of PLAIN, LOGIN, CRAM-MD5"),
    )
    enhancedstatuscodes: bool = True
    eightbitmime: bool = True
    dsn: bool = True
    smtputf8: bool = True
    chunking: bool = True


_LEVELS = ["debug", "info", "warn", "error"]
_FACILITIES = ["kern", "user", "mail", "daemon", "auth", "syslog", "lpr", "news",
               "uucp", "cron", "authpriv", *(f"local{i}" for i in range(8))]


def _facility(default):
    return attrs.field(default=default, validator=v.in_(_FACILITIES),
                       metadata=_allowed(", ".join(_FACILITIES)))


@attrs.frozen
class Logger:
    level: str = attrs.field(
        default="info", validator=v.in_(_LEVELS), metadata=_allowed(", ".join(_LEVELS))
    )
    file: str = "smtplatrine.log"
    syslog: bool = False
    syslog_facility: str = _facility("mail")


@attrs.frozen
class OutputFile:
    enabled: bool = True
    path: str = "events.jsonl"


@attrs.frozen
class OutputSyslog:
    enabled: bool = False
    facility: str = _facility("local0")


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
    output_file: OutputFile = OutputFile()
    output_syslog: OutputSyslog = OutputSyslog()
    engine: Engine = Engine()
    sqlite: SQLite = SQLite()
    mysql: MySQL = MySQL()
    store: Store = Store()
    meta: Meta = Meta()
    web: Web = Web()

    def data_path(self, path):
        """A path from the configuration, relative paths under data_dir."""
        return Path(self.server.data_dir) / path


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


def _section(cls, filename, section, items):
    fields = {f.name: f for f in attrs.fields(cls)}
    values = {}
    for key, raw in items:
        if key not in fields:
            raise ConfigError(
                f"{filename} [{section}] {key}: unknown option;"
                f" known options are {', '.join(fields)}"
            )
        field = fields[key]
        try:
            values[key] = _parse(field, raw.strip())
            attrs.validate(attrs.evolve(cls(), **{key: values[key]}))
        except (ValueError, TypeError):
            raise ConfigError(
                f"{filename} [{section}] {key} = {raw.strip()!r}:"
                f" expected {_describe(field)}"
            ) from None
    return values


def load(directory=None):
    """Read every ``*.ini`` file in *directory* (defaults when None)."""
    sections = {f.name: {} for f in attrs.fields(Config)}
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
                if name not in sections:
                    raise ConfigError(
                        f"{path.name} [{name}]: unknown section;"
                        f" known sections are {', '.join(sections)}"
                    )
                cls = attrs.fields_dict(Config)[name].type
                sections[name].update(
                    _section(cls, path.name, name, parser.items(name))
                )
    return Config(**{
        name: attrs.fields_dict(Config)[name].type(**values)
        for name, values in sections.items()
    })
