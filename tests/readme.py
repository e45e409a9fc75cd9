"""The plugin examples of README.rst, installed as a reader would."""

import re
import sys
from pathlib import Path

import twisted.plugins

ROOT = Path(__file__).resolve().parent.parent


def install_example(testcase, filename):
    """Write the README's example ``twisted/plugins/FILENAME`` into a
    twisted/plugins directory and put it on the plugin path (as Twisted
    does for each such directory on sys.path), for the test's duration."""
    text = (ROOT / "README.rst").read_text()
    block = text.split(f"``twisted/plugins/{filename}``", 1)[1]
    block = block.split(".. code-block:: python\n\n", 1)[1]
    code = "\n".join(line[4:] for line in re.match(r"((?:    .*\n|\n)+)", block)
                     .group(1).splitlines())
    plugins = Path(testcase.mktemp()) / "twisted" / "plugins"
    plugins.mkdir(parents=True)
    (plugins / filename).write_text(code)
    testcase.patch(twisted.plugins, "__path__", [*twisted.plugins.__path__, str(plugins)])
    testcase.addCleanup(sys.modules.pop, f"twisted.plugins.{filename[:-3]}", None)
