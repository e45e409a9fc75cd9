"""Enrichment after the commit: the service and the built-in enrichers."""
