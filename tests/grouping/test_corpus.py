"""Grouping that people trust: every pair of corpus notices gets the verdict a person would give."""

from __future__ import annotations

from collections import Counter
from itertools import combinations

from shared.fingerprint import fingerprint
from tests.grouping.corpus import CORPUS, Case

LANGUAGES = ("ruby/", "python/", "node/", "browser/", ".NET/", "java/", "go/", "php/")


def wrong_verdicts(cases: list[Case], prints: dict[str, str]) -> list[str]:
    """Every pair whose fingerprints disagree with its labels, described for a failure message."""
    wrong = []
    for a, b in combinations(cases, 2):
        same_label = a.group == b.group
        same_print = prints[a.name] == prints[b.name]
        if same_label != same_print:
            verdict = "split" if same_label else "merged"
            wrong.append(f"{verdict}: [{a.group}] {a.name}  <->  [{b.group}] {b.name}")
    return wrong


def test_corpus_is_big_and_varied() -> None:
    names = [c.name for c in CORPUS]
    assert len(CORPUS) >= 60
    assert len(set(names)) == len(names), [n for n, k in Counter(names).items() if k > 1]
    for prefix in LANGUAGES:
        assert sum(n.startswith(prefix) for n in names) >= 4, prefix
    protocols = Counter(c.notice["protocol"] for c in CORPUS)
    assert set(protocols) == {"exceptioner", "crashlog", "sentry", "airbrake", "exceptionless", "hoptoad"}, (
        protocols
    )
    sizes = Counter(c.group for c in CORPUS)
    assert sum(1 for n in sizes.values() if n > 1) >= 20  # plenty of "same" verdicts, not only "different"


def test_every_pair_verdict_is_right() -> None:
    prints = {c.name: fingerprint(c.notice) for c in CORPUS}
    pairs = len(CORPUS) * (len(CORPUS) - 1) // 2
    wrong = wrong_verdicts(CORPUS, prints)
    same = sum(1 for a, b in combinations(CORPUS, 2) if a.group == b.group)
    summary = (
        f"grouping corpus: {pairs - len(wrong)}/{pairs} pair verdicts right "
        f"({len(CORPUS)} notices, {len(set(c.group for c in CORPUS))} groups, {same} same-group pairs)"
    )
    print(summary)
    assert not wrong, summary + "\n" + "\n".join(wrong)
