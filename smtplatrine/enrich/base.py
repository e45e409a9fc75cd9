"""What the built-in enrichers share: the fields every enricher has, and
configuration from ``[meta]``."""

import attrs
from twisted.logger import Logger

log = Logger()


@attrs.frozen
class Enricher:
    """The cache times and quotas of IEnricher (set by ``configure``)."""
    ttl: float = 0.0
    negative_ttl: float = 0.0
    per_minute: int = 0
    per_day: int = 0


def cache_times(settings):
    """The ``ttl`` and ``negative_ttl`` fields from the ``[meta]`` settings."""
    return {"ttl": settings.meta_cache_ttl, "negative_ttl": settings.meta_negative_ttl}


@attrs.frozen
class HTTPEnricher(Enricher):
    """An enricher asking a provider's HTTP API at *url* with *key*."""
    key: str = ""
    url: str = ""
    http: object = None
    clock: object = None

    # The prefix of its [meta] options, as the seed named them.
    prefix = ""

    def configure(self, context):
        """Configured from ``PREFIX_enable``, ``_key``, ``_url``,
        ``_per_minute`` and ``_per_day``; None when off or without a key
        (said in one warning)."""
        settings, prefix = context.settings, self.prefix
        if not getattr(settings, f"{prefix}_enable"):
            return None
        key = getattr(settings, f"{prefix}_key")
        if not key:
            log.warn("{name} is enabled but [meta] {prefix}_key is empty, so it is"
                     " off: set the API key, or {prefix}_enable = false",
                     name=self.name, prefix=prefix)
            return None
        return attrs.evolve(
            self, key=key, url=getattr(settings, f"{prefix}_url").rstrip("/"),
            http=context.http, clock=context.reactor,
            per_minute=getattr(settings, f"{prefix}_per_minute"),
            per_day=getattr(settings, f"{prefix}_per_day"), **cache_times(settings))
