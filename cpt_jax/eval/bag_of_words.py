"""The bag-of-words baseline of the linear probes: TF-IDF vectors as an Encoder.

The vocabulary and IDF weights are fitted on the task's training texts only; every split is
then encoded with them, so the baseline goes through the same probe
(:func:`cpt_jax.eval.linear_probe.linear_probe`) as the dense encoders.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
from sklearn.feature_extraction.text import TfidfVectorizer

# Enough for the labelled tasks here (a few thousand short texts) while the probe's dense
# [n, features] matrix stays small.
DEFAULT_MAX_FEATURES = 2048


class TfidfEncoder:
    """Sublinear TF-IDF over word unigrams and bigrams, L2-normalised (a text with no known
    word is the zero vector); one vocabulary for both sides."""

    def __init__(self, train_texts: Sequence[str], max_features: int = DEFAULT_MAX_FEATURES) -> None:
        self._vectorizer = TfidfVectorizer(
            max_features=max_features, ngram_range=(1, 2), sublinear_tf=True, dtype=np.float32
        ).fit(list(train_texts))

    @property
    def dim(self) -> int:
        return len(self._vectorizer.vocabulary_)

    def encode(self, texts: Sequence[str], side: str = "document", batch_size: int = 0) -> np.ndarray:
        """texts -> float32 ``[len(texts), dim]``; side and batch_size do not change the vectors."""
        del side, batch_size
        return self._vectorizer.transform(list(texts)).toarray()
