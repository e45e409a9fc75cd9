"""pytest plugin for the mutation run's pytest passes (mutmut's stats, the
run on unmutated code): the same hypothesis settings as the mutants' runs
(tests/mutation/__main__.py).

A mutant is killed by its first failing test, so hypothesis, derandomised,
tries at most EXAMPLES examples per test and does not shrink what it
finds: a survivor still meets every test, a killed mutant costs little.
"""

from hypothesis import Phase, settings

EXAMPLES = 25

settings.register_profile(
    "mutation", derandomize=True, database=None, deadline=None,
    phases=[Phase.explicit, Phase.reuse, Phase.generate])
settings.load_profile("mutation")


def fewer_examples(test):
    """Bound the examples of the hypothesis *test* (a method) to EXAMPLES."""
    test = getattr(test, "__func__", test)
    chosen = getattr(test, "_hypothesis_internal_use_settings", None)
    if chosen is not None and chosen.max_examples > EXAMPLES:
        test._hypothesis_internal_use_settings = settings(chosen, max_examples=EXAMPLES)


def pytest_collection_modifyitems(items):
    for item in items:
        fewer_examples(item.obj)
