"""Deterministic mixture counts: how many rows each source gives a reader at each step.

A reader emits R rows per step. Cumulative counts A_k(s) (rows of source k in steps < s) follow
the normalised weights p_k by stick-breaking with exact rational arithmetic:

    M_0(s) = R * s
    A_k(s) = floor(q_k * M_k(s)),  q_k = p_k / (p_k + ... + p_{K-1})
    M_{k+1}(s) = M_k(s) - A_k(s) = ceil((1 - q_k) * M_k(s)),   A_{K-1}(s) = M_{K-1}(s)

Each M_k and A_k is a monotone function of a non-decreasing integer sequence, so the per-step
counts c_k(s) = A_k(s+1) - A_k(s) are never negative, for any weights and any R (the plain
"floor for all but the last, remainder to the last" rule can go negative, e.g. weights
(0.4, 0.4, 0.2) with R = 1). Every error is below one row per level, so |A_k(s) - p_k R s| < K,
and when every p_k R is an integer the counts are exactly p_k R at every step. No random state:
counts at any step are recomputed in O(K), so resuming needs only the step.

Batching by source (`Schedule(by_source=True)`): each step gives all R rows to one source. Which
one is the same stick-breaking with one row per step, started at an offset set by the seed:

    A_k(s) = R * (A1_k(s + o) - A1_k(o)),   A1 = cumulative counts with R = 1,  o = seed

so the sources take steps in exact proportion to their weights over every prefix of the run
(never a long streak of one source by chance), the seed shifts the pattern, and the step alone
says which source it reads: identical on every process, nothing to save for resume.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Sequence
from fractions import Fraction


def normalise(weights: Sequence[float]) -> tuple[Fraction, ...]:
    """Exact normalised weights. Each float is read as its shortest decimal (0.3 -> 3/10), so
    weights such as (0.3, 0.7) give exactly 3 and 7 rows of every 10."""
    if not weights or any(not w > 0 or math.isinf(w) for w in weights):
        raise ValueError(f"mixture weights {tuple(weights)} must be finite and positive (one per source).")
    exact = [Fraction(repr(float(w))) for w in weights]
    total = sum(exact)
    return tuple(w / total for w in exact)


def cumulative_counts(weights: Sequence[Fraction], rows_per_step: int, step: int) -> list[int]:
    """A_k(step): rows of each source in steps [0, step); sums to rows_per_step * step."""
    remaining = rows_per_step * step
    left = Fraction(1)  # weight of sources k..K-1
    counts = []
    for w in weights[:-1]:
        take = math.floor(w / left * remaining)
        counts.append(take)
        remaining -= take
        left -= w
    counts.append(remaining)
    return counts


def step_counts(weights: Sequence[Fraction], rows_per_step: int, step: int) -> list[int]:
    """c_k(step): rows of each source in step `step`; non-negative, sums to rows_per_step."""
    before = cumulative_counts(weights, rows_per_step, step)
    after = cumulative_counts(weights, rows_per_step, step + 1)
    return [a - b for a, b in zip(after, before)]


@dataclasses.dataclass(frozen=True)
class Schedule:
    """Rows per source per step for a reader of R rows: mixed (every source in every step) or by
    source (one source per step). weights: normalise()'d; offset: the seed (by source only)."""

    weights: tuple[Fraction, ...]
    rows_per_step: int
    by_source: bool = False
    offset: int = 0

    def cumulative(self, step: int) -> list[int]:
        """Rows of each source in steps [0, step)."""
        if not self.by_source:
            return cumulative_counts(self.weights, self.rows_per_step, step)
        start = cumulative_counts(self.weights, 1, self.offset)
        end = cumulative_counts(self.weights, 1, self.offset + step)
        return [self.rows_per_step * (b - a) for a, b in zip(start, end)]

    def step(self, step: int) -> list[int]:
        """Rows of each source in step `step`; non-negative, sums to rows_per_step."""
        return [b - a for a, b in zip(self.cumulative(step), self.cumulative(step + 1))]
