#!/usr/bin/env python3
"""Attachment analysis: analyses per second and the sandbox's memory, on
the attachments of the shared corpus of real spam.

HOW TO RUN
    python3 bench/forensics.py            # 5 rounds over the corpus
    python3 bench/forensics.py --rounds 1

WHAT IT MEASURES (every figure beside baselines from the same run)
    The attachments of /work/shared/corpus/real-mail (parsed by
    smtplatrine.parse; zips, PDFs, HTML, images) go to a temporary
    attachment store.  Each round runs the filetype, archive, document and
    yara (one rule) analyses on every attachment:
      sandbox     through smtplatrine's sandbox, as the storing process
                  does: a zygote forks one limited child per analysis
                  (2 at once)
      in-process  the same functions called directly, one after another:
                  what the sandbox's forks and limits cost
      file+ssdeep Debian's ``file --mime-type`` and ``ssdeep`` run on each
                  attachment: the type and fuzzy hash (the filetype
                  analysis) by the reference tools, a process each
    Printed: analyses per second (wall), CPU milliseconds per analysis
    (children's user+system; in-process: this process's), the zygote's
    resident memory and the largest resident size a child reached (what it
    shares with the zygote included; "growth" is the difference).
    The machine may be shared and busy: CPU per analysis is the steadier
    figure.
"""

import argparse
import os
import resource
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from twisted.internet import defer, reactor  # noqa: E402

from smtplatrine.enrich.sandbox import AnalysisFailed, Sandbox  # noqa: E402
from smtplatrine.files import keep  # noqa: E402
from smtplatrine.forensics import archives, documents, filetype, rules  # noqa: E402
from smtplatrine.parse import parse  # noqa: E402
from tests.corpus import CORPUS  # noqa: E402

RULE = 'rule zip_in_mail { strings: $pk = { 50 4B 03 04 } condition: $pk at 0 }\n'


def corpus_files(store):
    paths = []
    for eml in sorted(CORPUS.glob("*.eml")):
        for attachment in parse(eml.read_bytes()).attachments:
            paths.append(store / keep(store, attachment.payload, attachment.sha256))
    return paths


def functions(store, rules_dir):
    documents.prepare()
    archives.prepare()
    compiled, _, _ = rules.compile_directory(rules_dir)
    limits = {"max_members": 1000, "max_bytes": 256 * 2**20,
              "max_member_bytes": 64 * 2**20, "max_ratio": 100, "max_depth": 5}
    return {
        "filetype": (filetype.analyse, {}),
        "archive": (archives.analyse, {"store": str(store), "limits": limits,
                                       "passwords": ["infected"]}),
        "document": (documents.analyse, {"store": str(store), "max_file": 64 * 2**20}),
        "yara": (lambda path, params: rules.match(compiled, path, 10), {}),
    }


def rss_kb(pid):
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    return 0


def in_process(paths, work, rounds):
    start, cpu = time.monotonic(), time.process_time()
    count = 0
    for _ in range(rounds):
        for path in paths:
            for function, params in work.values():
                try:
                    function(path, params)
                except Exception:
                    pass
                count += 1
    return count, time.monotonic() - start, time.process_time() - cpu


def tools(paths, rounds):
    start = time.monotonic()
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    for _ in range(rounds):
        for path in paths:
            subprocess.run(["file", "--mime-type", "-b", str(path)], capture_output=True)
            subprocess.run(["ssdeep", "-s", str(path)], capture_output=True)
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    cpu = (after.ru_utime + after.ru_stime) - (before.ru_utime + before.ru_stime)
    return rounds * len(paths), time.monotonic() - start, cpu


@defer.inlineCallbacks
def sandboxed(sandbox, paths, work, rounds, done):
    start = time.monotonic()
    failed = []
    for _ in range(rounds):
        calls = [sandbox.run(name, path, params)
                 for path in paths for name, (_, params) in work.items()]
        for result in (yield defer.DeferredList(calls, consumeErrors=True)):
            if not result[0]:
                result[1].trap(AnalysisFailed)
                failed.append(result[1].value.code)
    done.append((time.monotonic() - start, failed))
    reactor.stop()


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--rounds", type=int, default=5)
    options = parser.parse_args()
    tmp = Path(tempfile.mkdtemp(prefix="smtplatrine-bench-"))
    try:
        store = tmp / "attachments"
        rules_dir = tmp / "rules"
        rules_dir.mkdir()
        (rules_dir / "zip.yar").write_text(RULE)
        paths = corpus_files(store)
        work = functions(store, rules_dir)
        sandbox = Sandbox(memory=1024 * 2**20, seconds=30, workers=2)
        for name, (function, _) in work.items():
            sandbox.register(name, function)
        sandbox.start()
        zygote = rss_kb(sandbox.pid)
        sandbox.connect(reactor)
        done = []
        reactor.callWhenRunning(sandboxed, sandbox, paths, work, options.rounds, done)
        reactor.run()
        wall, failed = done[0]
        os.kill(sandbox.pid, 9)
        os.waitpid(sandbox.pid, 0)
        stats = sandbox.stats
        count, direct_wall, direct_cpu = in_process(paths, work, options.rounds)
        tool_count, tool_wall, tool_cpu = tools(paths, options.rounds)
        size = sum(p.stat().st_size for p in paths)
        print(f"corpus: {len(paths)} attachments, {size / 2**20:.1f} MB;"
              f" {options.rounds} rounds; {len(work)} analyses per attachment"
              f" (file+ssdeep: 2 tools per attachment)")
        print(f"{'':12} {'analyses':>9} {'per s':>8} {'CPU ms each':>12}")
        for name, n, seconds, cpu in (
                ("sandbox", stats["analyses"], wall, stats["cpu"]),
                ("in-process", count, direct_wall, direct_cpu),
                ("file+ssdeep", tool_count, tool_wall, tool_cpu)):
            print(f"{name:12} {n:9d} {n / seconds:8.1f} {1000 * cpu / n:12.1f}")
        print(f"sandbox: zygote {zygote / 1024:.0f} MB resident; largest child"
              f" {stats['peak_kb'] / 1024:.0f} MB (growth"
              f" {(stats['peak_kb'] - zygote) / 1024:.0f} MB); analyses failed:"
              f" {len(failed)} {sorted(set(failed))}")
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    main()
