"""Which searched documents become hard negatives, and how many each rule left out.

A query's candidates are its top ``max_rank`` documents after the exclusions (mining/search.py),
best first; a candidate's rank is its 1-based position there. Each candidate is counted under the
first rule below that leaves it out (so the counts add up to the candidates not written), and
the first ``num_negatives`` that pass every rule are written.

Mining keeps its own rule names (MINING_RULES) rather than adding them to the data layer's
DROP_RULES: those count inputs a source leaves out of training data (a record, a file), whereas
these count (query, document) candidates a selection passes over; one table for both would make
a source's drop counts mean two things. The stats file keeps them apart: the pairs' own drops
under their DROP_RULES names, the mining counts under these.
"""

from __future__ import annotations

import dataclasses

import numpy as np

from cpt_jax.mining.search import EQUAL_TO_POSITIVE, EQUAL_TO_QUERY, Candidates

# Every (query, document) candidate left out, by the first rule that applies; the first two are
# never ranked at all (search.py masks them), the rest are candidates within the top max_rank.
MINING_RULES: dict[str, str] = {
    "equal_to_positive": "a document equal to the query's positive after normalisation (whitespace collapsed and "
    "stripped, casefolded): the positive itself or a copy of it, never ranked",
    "equal_to_query": "a document equal to the query text itself after normalisation: never ranked",
    "above_window": "ranked above the window (rank < min_rank): the likeliest false negatives",
    "above_ceiling": "scoring at or above the absolute ceiling (score >= max_score)",
    "within_margin": "scoring at or above positive_score * (1 - margin), or at or above the positive's score when "
    "that is <= 0 (too close to the positive to be trusted as a negative)",
    "duplicate_negative": "equal (normalised) to a better-ranked negative already kept for the query",
    "surplus": "passed every rule after the query already had num_negatives (the best-ranked are kept)",
}


@dataclasses.dataclass(frozen=True)
class Selection:
    """The negatives kept, best first: ``ids [Q, n]`` int64 corpus positions (-1 pads a query
    with fewer), ``scores [Q, n]`` float32 (NaN pads), ``ranks [Q, n]`` int64 1-based (0 pads);
    ``counts``: candidates left out by MINING_RULES name."""

    ids: np.ndarray
    scores: np.ndarray
    ranks: np.ndarray
    counts: dict[str, int]

    @property
    def per_query(self) -> np.ndarray:
        """``[Q]`` negatives kept per query."""
        return (self.ids >= 0).sum(axis=1)


def select(
    candidates: Candidates,
    positive_scores: np.ndarray,
    doc_keys: np.ndarray,
    num_negatives: int,
    min_rank: int = 1,
    margin: float | None = None,
    max_score: float | None = None,
) -> Selection:
    """Applies the rules in MINING_RULES order (see the module docstring).

    Args:
      candidates: the search result (``[Q, K]`` scores and ids, K = the window's last rank).
      positive_scores: ``[Q]`` finite query-positive scores.
      doc_keys: ``[D]`` int64 text keys of the corpus (for duplicate_negative).
    """
    scores, ids = candidates.scores, candidates.ids
    ranked = np.isfinite(scores)  # [Q, K]; -inf: nothing left to rank
    ranks = np.broadcast_to(np.arange(1, scores.shape[1] + 1), scores.shape)
    rules = {"above_window": ranked & (ranks < min_rank)}
    left = ranked & ~rules["above_window"]
    if max_score is not None:
        rules["above_ceiling"] = left & (scores >= max_score)
        left &= ~rules["above_ceiling"]
    if margin is not None:
        pos = positive_scores[:, None]
        rules["within_margin"] = left & (scores >= np.minimum(pos * (1 - margin), pos))
        left &= ~rules["within_margin"]
    kept, duplicates, surplus = _first_distinct(left, doc_keys[np.where(ranked, ids, 0)], num_negatives)
    counts = {
        "equal_to_positive": int(candidates.excluded[:, EQUAL_TO_POSITIVE].sum()),
        "equal_to_query": int(candidates.excluded[:, EQUAL_TO_QUERY].sum()),
        **{name: int(mask.sum()) for name, mask in rules.items()},
        "duplicate_negative": duplicates,
        "surplus": surplus,
    }
    out_ids = np.full((scores.shape[0], num_negatives), -1, np.int64)
    out_scores = np.full(out_ids.shape, np.nan, np.float32)
    out_ranks = np.zeros(out_ids.shape, np.int64)
    for row, cols in enumerate(kept):
        out_ids[row, : len(cols)] = ids[row, cols]
        out_scores[row, : len(cols)] = scores[row, cols]
        out_ranks[row, : len(cols)] = cols + 1
    return Selection(out_ids, out_scores, out_ranks, {name: counts.get(name, 0) for name in MINING_RULES})


def _first_distinct(passed: np.ndarray, keys: np.ndarray, n: int) -> tuple[list[np.ndarray], int, int]:
    """Per row, the columns of the first ``n`` passed entries with distinct keys (in column order);
    also the counts of passed entries left out as duplicates and beyond ``n``."""
    kept, duplicates, surplus = [], 0, 0
    for row in range(passed.shape[0]):
        cols = np.flatnonzero(passed[row])
        _, first = np.unique(keys[row, cols], return_index=True)
        distinct = cols[np.sort(first)]
        duplicates += len(cols) - len(distinct)
        surplus += max(len(distinct) - n, 0)
        kept.append(distinct[:n])
    return kept, duplicates, surplus
