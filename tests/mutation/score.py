"""The score of a mutation run, per module: ``python -m tests.mutation.score``
in the checkout, after ``mutmut run`` (tox -e mutation runs both).

A mutant counts as killed when a test failed on it or it made the tests
run past their time; one listed in tests/mutation/equivalent.txt (it
behaves as the code does) is left out of the count.  Every other mutant
(survived, or reached by no test) is written with its diff to
mutants/survivors.txt.  Exits 1 if a module scores under THRESHOLD %, or was not run whole.

equivalent.txt holds one block per equivalent mutant, blocks separated by
a blank line: the file and the function (``Class.method``), then the
diff's lines as ``- old`` and ``+ new``, then ``= why`` in one line.  A
mutant matches on file, function and those lines (whitespace aside), so
the list survives edits elsewhere in a module.
"""

import sys
from collections import Counter
from pathlib import Path

from mutmut.mutation.diff_apply import get_diff_for_mutant
from mutmut.mutation.data import SourceFileMutationData
from mutmut.stats import status_by_exit_code
from mutmut.utils.file_utils import walk_mutatable_files
from mutmut.utils.format_utils import orig_function_and_class_names_from_key

THRESHOLD = 90.0
HERE = Path(__file__).parent
EQUIVALENT = HERE / "equivalent.txt"
SURVIVORS = Path("mutants") / "survivors.txt"
DETECTED = {"killed", "timeout", "segfault"}


def normal(line):
    """*line* with its runs of white space made one space."""
    return " ".join(line.split())


def key(path, function, removed, added):
    return (str(path), function, tuple(map(normal, removed)), tuple(map(normal, added)))


def read_equivalent(text):
    """The keys and reasons of the blocks of equivalent.txt."""
    listed = {}
    for number, block in enumerate(text.split("\n\n"), 1):
        lines = [line for line in block.strip().splitlines() if not line.startswith("#")]
        if not lines:
            continue
        path, _, function = lines[0].partition(" ")
        removed = [line[2:] for line in lines[1:] if line.startswith("- ")]
        added = [line[2:] for line in lines[1:] if line.startswith("+ ")]
        why = [line[2:] for line in lines[1:] if line.startswith("= ")]
        if not function or not (removed or added) or len(why) != 1:
            sys.exit(f"{EQUIVALENT}: block {number} needs 'file function', "
                     "'- old'/'+ new' lines and one '= why' line")
        listed[key(path, function.strip(), removed, added)] = why[0]
    return listed


def changed_lines(diff):
    """The removed and added lines of a unified *diff*."""
    lines = diff.splitlines()[2:]  # past the --- and +++ lines
    return ([line[1:] for line in lines if line.startswith("-")],
            [line[1:] for line in lines if line.startswith("+")])


def function_of(mutant):
    function, cls = orig_function_and_class_names_from_key(mutant)
    return f"{cls}.{function}" if cls else function


def main():
    listed = read_equivalent(EQUIVALENT.read_text())
    matched = set()
    rows, survivors = [], []
    for path in walk_mutatable_files():
        data = SourceFileMutationData(path=path)
        data.load()
        count = Counter()
        for mutant, code in sorted(data.exit_code_by_key.items()):
            status = status_by_exit_code[code]
            if status == "not checked":
                count["unchecked"] += 1
                continue
            if status in DETECTED:
                count["killed"] += 1
                continue
            diff = get_diff_for_mutant(mutant, path=path)
            found = key(path, function_of(mutant), *changed_lines(diff))
            if found in listed:
                matched.add(found)
                count["equivalent"] += 1
            else:
                count["left"] += 1
                survivors.append(f"# {mutant}: {status}\n{diff}\n")
        if data.exit_code_by_key:
            rows.append((str(path), len(data.exit_code_by_key), count))
    SURVIVORS.write_text("\n".join(survivors))

    low = []
    print(f"{'module':40} {'mutants':>7} {'killed':>6} {'equiv.':>6} {'left':>5} {'score':>6}")
    for path, total, count in rows:
        if count["unchecked"]:
            print(f"{path:40} {total:7} not run: {count['unchecked']} mutants")
            low.append(path)
            continue
        score = 100.0 * count["killed"] / max(total - count["equivalent"], 1)
        print(f"{path:40} {total:7} {count['killed']:6} {count['equivalent']:6} "
              f"{count['left']:5} {score:5.1f}%")
        if score < THRESHOLD:
            low.append(path)
    for stale in sorted(set(listed) - matched):
        print(f"equivalent.txt: no surviving mutant of {stale[0]} {stale[1]} "
              f"changes {' / '.join(stale[2])!r}: remove the entry if the code changed")
    print(f"{len(survivors)} mutants left, with their diffs: {SURVIVORS}")
    if low:
        sys.exit(f"under {THRESHOLD:.0f} % killed, or not run: {', '.join(low)}: "
                 "see the survivors' diffs and test what they change")


if __name__ == "__main__":
    main()
