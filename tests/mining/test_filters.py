"""The selection rules (cpt_jax/mining/filters.py) on a constructed case: which candidates each rule
leaves out, in which order, and the counts."""

from __future__ import annotations

import numpy as np

from cpt_jax.mining.filters import MINING_RULES, select
from cpt_jax.mining.search import Candidates

NEG = -np.inf


def _case() -> tuple[Candidates, np.ndarray, np.ndarray]:
    scores = np.array([
        [0.95, 0.90, 0.79, 0.77, 0.75, 0.70, 0.60, NEG],
        [0.99, 0.95, -0.10, -0.20, -0.30, -0.40, NEG, NEG],
    ], np.float32)
    ids = np.array([[10, 11, 12, 13, 14, 15, 16, 0], [20, 21, 22, 23, 24, 25, 0, 1]])
    keys = np.arange(30, dtype=np.int64)
    keys[16] = keys[14]  # document 16 is a copy of document 14
    excluded = np.array([[1, 0], [0, 2]])
    positive_scores = np.array([0.8, -0.2], np.float32)
    return Candidates(scores, ids, np.full(2, np.nan, np.float32), excluded), positive_scores, keys


def test_each_rule_leaves_out_what_it_names_and_is_counted_once():
    candidates, positive_scores, keys = _case()
    selection = select(candidates, positive_scores, keys, num_negatives=1, min_rank=2, margin=0.05, max_score=0.92)
    # Row 0: rank 1 above the window; 0.90, 0.79, 0.77 >= 0.8 * 0.95 = 0.76 (within the margin);
    # 0.75 kept; 0.70 passes but one negative is asked for (surplus); 0.60 is a copy of the kept one.
    # Row 1 (positive score -0.2 <= 0: nothing at or above it): rank 1 above the window, 0.95 above
    # the ceiling, -0.10 and -0.20 within the margin, -0.30 kept, -0.40 surplus.
    np.testing.assert_array_equal(selection.ids, [[14], [24]])
    np.testing.assert_array_equal(selection.ranks, [[5], [5]])
    np.testing.assert_array_equal(selection.scores, np.array([[0.75], [-0.30]], np.float32))
    assert selection.counts == {
        "equal_to_positive": 1, "equal_to_query": 2, "above_window": 2, "above_ceiling": 1, "within_margin": 5,
        "duplicate_negative": 1, "surplus": 2,
    }
    assert list(selection.counts) == list(MINING_RULES)
    ranked = int(np.isfinite(candidates.scores).sum())
    left_out = sum(n for name, n in selection.counts.items() if not name.startswith("equal_to"))
    assert left_out + int(selection.per_query.sum()) == ranked  # every ranked candidate is accounted for


def test_rules_turned_off_keep_the_best_distinct_candidates():
    candidates, positive_scores, keys = _case()
    selection = select(candidates, positive_scores, keys, num_negatives=6)
    np.testing.assert_array_equal(selection.ids, [[10, 11, 12, 13, 14, 15], [20, 21, 22, 23, 24, 25]])
    np.testing.assert_array_equal(selection.ranks[0], [1, 2, 3, 4, 5, 6])
    assert selection.counts["above_window"] == selection.counts["within_margin"] == selection.counts["surplus"] == 0
    assert selection.counts["duplicate_negative"] == 1  # document 16 repeats 14


def test_a_query_with_too_few_candidates_is_padded():
    candidates, positive_scores, keys = _case()
    selection = select(candidates, positive_scores, keys, num_negatives=3, min_rank=5)
    np.testing.assert_array_equal(selection.ids, [[14, 15, -1], [24, 25, -1]])
    np.testing.assert_array_equal(selection.ranks, [[5, 6, 0], [5, 6, 0]])
    assert np.isnan(selection.scores[:, 2]).all()
    np.testing.assert_array_equal(selection.per_query, [2, 2])
