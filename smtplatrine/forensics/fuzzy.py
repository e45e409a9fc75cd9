"""Comparing ssdeep signatures as ssdeep 2.14 does (``ssdeep -d``): two
files score 0 to 100.  Works on signatures only, never on a file."""

SPAMSUM_LENGTH = 64
ROLLING_WINDOW = 7
MIN_BLOCKSIZE = 3


def _parts(signature):
    size, first, second = signature.split(":", 2)
    return int(size), first, second.split(",", 1)[0]


def collapse(part):
    """*part* with runs of more than three equal characters cut to three."""
    out = []
    for c in part:
        if len(out) >= 3 and out[-1] == out[-2] == out[-3] == c:
            continue
        out.append(c)
    return "".join(out)


def _distance(a, b):
    """Edit distance with insertion and removal 1, replacement 2."""
    previous = list(range(len(b) + 1))
    for i, ca in enumerate(a, 1):
        current = [i]
        for j, cb in enumerate(b, 1):
            current.append(min(previous[j] + 1, current[j - 1] + 1,
                               previous[j - 1] + (0 if ca == cb else 2)))
        previous = current
    return previous[-1]


def _common(a, b):
    """Whether *a* and *b* share a piece of ROLLING_WINDOW characters."""
    pieces = {a[i:i + ROLLING_WINDOW] for i in range(len(a) - ROLLING_WINDOW + 1)}
    return any(b[i:i + ROLLING_WINDOW] in pieces
               for i in range(len(b) - ROLLING_WINDOW + 1))


def _score(a, b, blocksize):
    if len(a) > SPAMSUM_LENGTH or len(b) > SPAMSUM_LENGTH or not _common(a, b):
        return 0
    score = _distance(a, b) * SPAMSUM_LENGTH // (len(a) + len(b))
    score = 100 * score // SPAMSUM_LENGTH
    if score >= 100:
        return 0
    score = 100 - score
    if blocksize >= (99 + ROLLING_WINDOW) // ROLLING_WINDOW * MIN_BLOCKSIZE:
        return score
    return min(score, blocksize // MIN_BLOCKSIZE * min(len(a), len(b)))


def compare(one, other):
    """The ssdeep score (0-100) of two signatures; 0 for a malformed one."""
    try:
        size1, a1, a2 = _parts(one)
        size2, b1, b2 = _parts(other)
    except (AttributeError, ValueError):
        return 0
    if size1 != size2 and size1 * 2 != size2 and size2 * 2 != size1:
        return 0
    a1, a2, b1, b2 = map(collapse, (a1, a2, b1, b2))
    if size1 == size2 and a1 == b1 and a2 == b2:
        return 100
    if size1 == size2:
        return max(_score(a1, b1, size1), _score(a2, b2, size1 * 2))
    if size1 * 2 == size2:
        return _score(b1, a2, size2)
    return _score(a1, b2, size1)
