"""The mined pairs as PairedJsonl, and the stats file beside them; both written atomically.

One object per pair, in the pairs' order (a pair with no negative passing the rules is written
with an empty list, so the file trains the same pairs with or without its negatives):

    {"x": query, "y": positive, "negatives": [text, ...], "negative_scores": [float, ...],
     "negative_ranks": [int, ...], "positive_score": float}

It reads back with ``PairedJsonlSource(paths=(path,), negatives_field="negatives")`` (the other
fields are ignored there). Scores are cosine similarities under the mining model, rounded to 6
decimals; ranks are 1-based after the exclusions (mining/filters.py).
"""

from __future__ import annotations

import json
import os
from collections.abc import Sequence
from typing import Any

import numpy as np

from cpt_jax import atomic
from cpt_jax.mining.filters import MINING_RULES, Selection


def stats_path(output: str) -> str:
    """``mined.jsonl`` -> ``mined.stats.json`` (beside the output)."""
    return os.path.splitext(output)[0] + ".stats.json"


def _score(x: float) -> float:
    return round(float(x), 6)


def record_lines(
    queries: Sequence[str], positives: Sequence[str], positive_scores: np.ndarray, selection: Selection,
    texts: dict[int, str],
) -> list[str]:
    """The output lines: one JSON object per pair (see the module docstring)."""
    lines = []
    for row, (x, y) in enumerate(zip(queries, positives)):
        n = int((selection.ids[row] >= 0).sum())
        record = {
            "x": x,
            "y": y,
            "negatives": [texts[int(i)] for i in selection.ids[row, :n]],
            "negative_scores": [_score(s) for s in selection.scores[row, :n]],
            "negative_ranks": [int(r) for r in selection.ranks[row, :n]],
            "positive_score": _score(positive_scores[row]),
        }
        lines.append(json.dumps(record, ensure_ascii=False) + "\n")
    return lines


def write(output: str, lines: Sequence[str], stats: dict[str, Any]) -> str:
    """Writes the output and then its stats (each atomically); returns the stats path."""
    directory = os.path.dirname(os.path.abspath(output))
    os.makedirs(directory, exist_ok=True)
    atomic.write_text(output, "".join(lines))
    path = stats_path(output)
    atomic.write_json(path, stats, indent=2)
    return path


def summary(stats: dict[str, Any]) -> str:
    """The stats as the lines the CLI prints: what was read, each rule's count, what was written."""
    q = stats["queries"]
    lines = [
        f"pairs: {q['total']} (source drops: {stats['source_drops'] or 'none'}); corpus: {stats['corpus']['documents']} "
        f"documents; positives not in the corpus: {q['positive_not_in_corpus']}",
        "candidates left out, by rule (first rule that applies):",
    ]
    width = max(len(name) for name in MINING_RULES)
    lines += [f"  {name:<{width}}  {stats['counts'][name]}" for name in MINING_RULES]
    lines.append(
        f"negatives written: {stats['negatives_written']} ({q['full']} queries with {stats['rules']['num_negatives']}, "
        f"{q['short']} with fewer, {q['without_negatives']} with none)"
    )
    return "\n".join(lines)
