"""Local attachment analysis, as enrichers of attachments (kind ``sha256``):

``filetype``  what the file really is (libmagic), its fuzzy hashes (ssdeep,
              TLSH) and entropy; each attachment row flagged by its name
              and declared type against that
``archive``   the members of zip, 7z, rar, tar/gz, cab, iso/img and TNEF
              files, recursively, each kept as an attachment of its own;
              encrypted ones tried with the passwords the message offers
``document``  Office macros, PDF actions and embedded files, PE headers,
              HTML forms and scripts, shortcut targets
``yara``      the operator's YARA rules ([enricher_yara] rules = DIR)

Each runs in the sandbox (smtplatrine.enrich.sandbox), never in the
storing process; results go to honeypot_enrichment like any enricher's,
and to tables of their own (smtplatrine.store.forensics) to search and
join on.  Each has a section ``[enricher_NAME]`` (``enabled`` and more),
declared by its ``options`` class; the configured enricher keeps the
values read as ``settings``.
"""

import functools

import attrs
from attrs import validators as v
from twisted.logger import Logger
from twisted.plugin import IPlugin
from zope.interface import implementer

from smtplatrine.enrich.base import Enricher, cache_times
from smtplatrine.enrich.sandbox import AnalysisFailed
from smtplatrine.interfaces import IEnricher, LookupFailed, Member, Result, option
from smtplatrine.store import forensics as store

log = Logger()

_MB = 2**20
# Members listed in a result (all of them are rows of honeypot_file_members).
LISTED = 100


_COUNT = "a whole number > 0"


@attrs.frozen
class FileTypeOptions:
    enabled: bool = True


@attrs.frozen
class ArchiveOptions:
    enabled: bool = True
    max_members: int = option(1000, v.gt(0), _COUNT)
    max_expanded_mb: int = option(256, v.gt(0), _COUNT)
    max_member_mb: int = option(64, v.gt(0), _COUNT)
    max_ratio: int = option(100, v.gt(1), "a whole number > 1")
    max_depth: int = option(5, v.gt(0), _COUNT)
    max_passwords: int = option(20, v.ge(0), "a whole number >= 0")


@attrs.frozen
class DocumentOptions:
    enabled: bool = True


@attrs.frozen
class YaraOptions:
    enabled: bool = True
    rules: str = option("", allowed="a directory of YARA rule files, or empty")


@attrs.frozen
class _Analyser(Enricher):
    """What the forensics enrichers share: the file from the attachment
    store, analysed in the sandbox; a sandbox failure (a bomb, a crash, a
    hang) is a result with its flag, not a lookup failure."""
    kinds = ("sha256",)
    files: object = None
    sandbox: object = None
    settings: object = None
    clock: object = None
    timeout: float = 0.0

    def configure(self, context):
        options = context.options or self.options()
        if not options.enabled:
            return None
        if context.files is None:
            log.warn("{name} is off: it needs the attachments on disk ([smtp]"
                     " smtp_attachments_store = true)", name=self.name)
            return None
        if context.sandbox is None:
            log.warn("{name} is off: there is no sandbox to run it in", name=self.name)
            return None
        try:
            function = self.prepare(options)
        except ImportError as e:
            log.warn("{name} is off: it needs {module} (pip install"
                     " 'smtplatrine[forensics]')", name=self.name, module=e.name)
            return None
        if function is None:
            return None
        context.sandbox.register(self.name, function)
        seconds = context.settings.sandbox_seconds
        return attrs.evolve(self, files=context.files, sandbox=context.sandbox,
                            settings=options, clock=context.reactor, timeout=30 * seconds,
                            **cache_times(context.settings))

    async def lookup(self, kind, indicator, sighting=None):
        path = self.files.path(indicator)
        if path is None:
            raise LookupFailed("the file is not in the attachment store")
        try:
            answer = await self.sandbox.run(self.name, path, self.params(sighting))
        except AnalysisFailed as e:
            if e.code == "unavailable":
                raise LookupFailed(str(e), transient=True) from None
            return Result({"error": e.code, "reason": e.reason[:500], "flags": [e.code]})
        return self.result(answer)

    def params(self, sighting):
        return {"store": str(self.files.directory)}

    def result(self, answer):
        return Result(answer)


def _members(found):
    """The Members of an analysis's ``files``."""
    return tuple(Member(f["name"], f["size"], f["sha256"], f.get("md5"), f.get("sha1"),
                        f.get("parent"), f.get("position", 0), tuple(f.get("flags", ())))
                 for f in found)


@implementer(IPlugin, IEnricher)
@attrs.frozen
class FileType(_Analyser):
    """What the file is, by its content, and its fuzzy hashes."""
    name = "filetype"
    options = FileTypeOptions

    def prepare(self, options):
        from smtplatrine.forensics import filetype
        filetype.prepare()
        return filetype.analyse

    def summary(self, data):
        return {"mime": data.get("mime"), "ssdeep": data.get("ssdeep"),
                "tlsh": data.get("tlsh"), "error": data.get("error")}

    def save(self, cursor, dialect, kind, indicator, data):
        if "error" in data:
            store.save_findings(cursor, dialect, self.name, indicator, data["flags"])
            return
        store.save_file(cursor, dialect, indicator, data, self.clock.seconds())

    def sighted(self, cursor, dialect, sighting, data):
        if data.get("mime"):
            store.save_attachment_flags(cursor, dialect, sighting.message,
                                        sighting.indicator, data["mime"])


@implementer(IPlugin, IEnricher)
@attrs.frozen
class Archive(_Analyser):
    """The members of an archive, recursively, within the bounds."""
    name = "archive"
    options = ArchiveOptions
    sightings = True

    def prepare(self, options):
        from smtplatrine.forensics import archives, filetype
        filetype.prepare()
        archives.prepare()
        return archives.analyse

    def params(self, sighting):
        from smtplatrine.forensics.passwords import candidates
        o = self.settings
        passwords = candidates(sighting.body if sighting else "", o.max_passwords)
        return {"store": str(self.files.directory),
                "passwords": passwords[:o.max_passwords + 3],
                "depth": sighting.depth if sighting else 0,
                "name": sighting.filename if sighting else None,
                "limits": {"max_members": o.max_members,
                           "max_bytes": o.max_expanded_mb * _MB,
                           "max_member_bytes": o.max_member_mb * _MB,
                           "max_ratio": o.max_ratio, "max_depth": o.max_depth}}

    def result(self, answer):
        if answer is None:
            return Result(None)
        files = answer.pop("files")
        answer["files"] = [{k: f[k] for k in ("name", "size", "sha256", "parent", "flags")}
                           for f in files[:LISTED]]
        locked = "encrypted" in answer["flags"] and "password_found" not in answer["flags"]
        # Locked without a password: the next message may offer one.
        return Result(answer, ttl=0.0 if locked else None, files=_members(files))

    def summary(self, data):
        return {"archive": data.get("format"), "members": data.get("members"),
                "extracted": data.get("extracted"), "password": data.get("password"),
                "flags": " ".join(data.get("flags", []))}

    def save(self, cursor, dialect, kind, indicator, data):
        properties = [("format", f) for f in data.get("formats", [])]
        properties.append(("password", data.get("password")))
        store.save_findings(cursor, dialect, self.name, indicator, data.get("flags", []),
                            properties)


@implementer(IPlugin, IEnricher)
@attrs.frozen
class Document(_Analyser):
    """What an Office file, a PDF, an executable, an HTML file or a
    shortcut does."""
    name = "document"
    options = DocumentOptions

    def prepare(self, options):
        from smtplatrine.forensics import documents
        documents.prepare()
        return documents.analyse

    def params(self, sighting):
        return {"store": str(self.files.directory), "max_file": 64 * _MB}

    def result(self, answer):
        if answer is None:
            return Result(None)
        return Result(answer, files=_members(answer.pop("files", [])))

    def summary(self, data):
        return {"document": data.get("kind"), "imphash": data.get("imphash"),
                "flags": " ".join(data.get("flags", [])),
                "urls": len(data.get("urls", []))}

    def save(self, cursor, dialect, kind, indicator, data):
        properties = [(name, data.get(name)) for name in (
            "kind", "imphash", "compile_time", "machine", "target", "arguments",
            "machine_id", "format", "title")]
        forms = data.get("forms") if isinstance(data.get("forms"), list) else []
        properties += [("form_action", f["action"]) for f in forms if f.get("action")]
        properties += [("embedded", e["name"]) for e in data.get("embedded", [])]
        store.save_findings(cursor, dialect, self.name, indicator, data.get("flags", []),
                            properties, data.get("urls", []))


@implementer(IPlugin, IEnricher)
@attrs.frozen
class Yara(_Analyser):
    """The operator's YARA rules that match the file."""
    name = "yara"
    options = YaraOptions

    def prepare(self, options):
        from smtplatrine.forensics import rules
        if not options.rules:
            return None
        try:
            compiled, count, bad = rules.compile_directory(options.rules)
        except rules.RuleError as e:
            log.error("[enricher_yara] rules = {rules}: {error}; yara is off",
                      rules=options.rules, error=str(e))
            return None
        for path, error in bad:
            log.error("YARA rule file {path} does not compile ({error}); it is left"
                      " out until it is fixed and smtplatrine restarted",
                      path=str(path), error=error)
        if compiled is None:
            log.error("[enricher_yara] rules = {rules}: no rule file compiles; yara is"
                      " off", rules=options.rules)
            return None
        log.info("yara: {count} rule file(s) from {rules}", count=count,
                 rules=options.rules)
        return functools.partial(_match, compiled)

    def params(self, sighting):
        return {"seconds": 10}

    def result(self, answer):
        return Result({"matches": answer} if answer else None)

    def summary(self, data):
        return {"rules": " ".join(sorted({m["rule"] for m in data.get("matches", [])}))}

    def save(self, cursor, dialect, kind, indicator, data):
        if "matches" in data:
            store.save_yara(cursor, dialect, indicator, data["matches"])


def _match(compiled, path, params):
    from smtplatrine.forensics import rules
    return rules.match(compiled, path, params["seconds"])
