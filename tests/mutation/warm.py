"""What mutmut's fork server imports before it forks one process per
mutant (tests/mutation/preload.txt names this module): the test modules
of the run and what they import, with the run's hypothesis settings, so
that a mutant's process only runs its tests.

The reactor must not be among them: one installed here would be shared by
every mutant's process (its epoll descriptor with it), and the tests of
one mutant would see the events of another.  A test module that imports
``twisted.internet.reactor`` when imported stops the run here.
"""

import gc
import importlib
import sys
import tomllib
from pathlib import Path

# What installing the reactor in a mutant's process imports.
import twisted.internet.default  # noqa: F401
import twisted.internet.epollreactor  # noqa: F401

from hypothesis.internal import charmap

from tests.mutation import plugin  # noqa: F401 (the hypothesis settings)

ROOT = Path(__file__).resolve().parents[2]
SETTINGS = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["mutmut"]

for path in SETTINGS["pytest_add_cli_args_test_selection"]:
    if not path.endswith(".py"):
        continue
    name = ".".join(Path(path).with_suffix("").parts)
    importlib.import_module(name)
    if "twisted.internet.reactor" in sys.modules:
        sys.exit(f"{name} imports the reactor when imported: the mutants' "
                 "processes would share it; import it inside its tests")

# Hypothesis's table of Unicode characters, which its text strategies read
# (0.7 s), once here instead of in each mutant's process.
charmap.charmap()

gc.freeze()
