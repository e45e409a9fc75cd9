"""The test suite.  Under CI (tests/ci.py) hypothesis runs derandomised,
with no example database: the same examples every run."""

from tests.ci import in_ci

if in_ci():
    from hypothesis import settings

    settings.register_profile("ci", derandomize=True, database=None)
    settings.load_profile("ci")
