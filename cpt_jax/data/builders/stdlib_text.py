"""TFDS builder ``stdlib_text``: neighbouring document spans from the stdlib."""

from __future__ import annotations

import collections
from collections.abc import Iterator

from cpt_jax.data import stdlib_corpus, stdlib_text_pairs
from cpt_jax.data.builders.pair_builder import PairBuilder


class StdlibText(PairBuilder):
    """x, y: consecutive spans of one module/class docstring or pydoc topic."""

    PAIR_DESCRIPTION = "Neighbouring-span pairs from docstrings and pydoc topics (cpt-text style)."

    def _pairs(self, split: str, skipped: collections.Counter[str]) -> Iterator[tuple[str, stdlib_corpus.Pair]]:
        return stdlib_text_pairs.iter_text_pairs(split, skipped=skipped)
