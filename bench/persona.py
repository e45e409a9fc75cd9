#!/usr/bin/env python3
"""How much of the persona is Postfix: every probe recorded from the real
Postfix 3.7.11 (tests/data/postfix_replies.json) replayed to the honeypot
in memory, with its default settings but for what the probe's variant
changed (AUTH off but for the SASL variants, the size limit of D, HELO
required for B); the share of replies that are Postfix's byte for byte
(queue ids and CRAM-MD5 challenges aside), and of probes answered so
throughout.  Prints only, never asserts.

    python3 bench/persona.py [--list]     # --list: the probes that differ
"""

import argparse
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from smtplatrine.testing import make_factory  # noqa: E402
from tests.test_persona import FILLED, PROBES, config_for, converse, normalise  # noqa: E402


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--list", action="store_true", help="name the probes that differ")
    opts = parser.parse_args()
    replies = identical = probes = whole = 0
    differ = []
    with tempfile.TemporaryDirectory() as tmp:
        for i, probe in enumerate(PROBES):
            exchange = probe["exchange"]
            if any(sent == FILLED for sent, _ in exchange):
                continue  # its full disk is the tests' (tests/test_hostile_postfix.py)
            factory = make_factory(Path(tmp) / str(i), config_for(probe), tls_options=object())
            got, _, _ = converse(factory, exchange, None)
            same = [normalise(a) == normalise(b) for a, b in zip(got, (r for _, r in exchange))]
            probes += 1
            replies += len(same)
            identical += sum(same)
            if all(same):
                whole += 1
            else:
                differ.append((probe["name"], len(same) - sum(same)))
    print(f"probes replayed: {probes}, identical throughout: {whole}"
          f" ({100 * whole / probes:.1f} %)")
    print(f"replies: {replies}, identical to Postfix's: {identical}"
          f" ({100 * identical / replies:.1f} %)")
    if opts.list:
        for name, count in differ:
            print(f"  {name}: {count} repl{'y' if count == 1 else 'ies'} differ")


if __name__ == "__main__":
    main()
