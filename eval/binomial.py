"""Binomial noise of Scenette accuracies, by the normal approximation (p(1-p)/n per question type).

A cell's record holds accuracy (%) per question type and the number of questions per type; its Acc.
is the mean over types and its Rel. the mean over types of accuracy / unpruned accuracy. Both are
means of independent per-type proportions, so their variances are sums of the types' binomial ones.
"""

from __future__ import annotations

import math

Z95 = 1.959964  # two-sided 95 % quantile of the standard normal


def _proportions(record: dict) -> dict[str, tuple[float, int]]:
    """Per type: (fraction correct, questions)."""
    return {qtype: (record["accuracy"][qtype] / 100, record["questions"][qtype]) for qtype in record["accuracy"]}


def relative_half_width(record: dict, unpruned: dict) -> float:
    """95 % half-width (percentage points) of Rel., the unpruned accuracy held fixed (it is common to
    every point of a plot); over the types the unpruned model gets any right, as Rel. itself."""
    base = unpruned["accuracy"]
    terms = [
        p * (1 - p) / n / (base[qtype] / 100) ** 2 for qtype, (p, n) in _proportions(record).items() if base.get(qtype)
    ]
    return 100 * Z95 * math.sqrt(sum(terms)) / len(terms) if terms else 0.0


def difference_half_width(first: dict, second: dict) -> float:
    """95 % half-width (points) for the difference of Acc. between two runs of the same questions,
    treated as independent samples, each type's variance at the two runs' mean accuracy (so a type at
    100 % in one run and 97.5 % in the other still has noise)."""
    ours, theirs = _proportions(first), _proportions(second)
    variance = 0.0
    for qtype, (p, n) in ours.items():
        mean = (p + theirs[qtype][0]) / 2
        variance += 2 * mean * (1 - mean) / n
    return 100 * Z95 * math.sqrt(variance) / len(ours)
