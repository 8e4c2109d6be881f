"""TFDS builder ``stdlib_code``: (docstring, function code) pairs from the stdlib."""

from __future__ import annotations

import collections
from collections.abc import Iterator

from cpt_jax.data import stdlib_corpus
from cpt_jax.data.builders.pair_builder import PairBuilder


class StdlibCode(PairBuilder):
    """x: cleaned docstring; y: the function's source without its docstring."""

    PAIR_DESCRIPTION = "Docstring -> function code pairs (cpt-code style)."

    def _pairs(self, split: str, skipped: collections.Counter[str]) -> Iterator[tuple[str, stdlib_corpus.Pair]]:
        return stdlib_corpus.iter_code_pairs(split, skipped=skipped)
