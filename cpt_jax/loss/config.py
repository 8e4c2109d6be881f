"""LossConfig: which logits of the contrastive loss are masked as false negatives, and the nested
(Matryoshka) embedding dimensions the loss is also computed at."""

from __future__ import annotations

import dataclasses
from typing import ClassVar

from cpt_jax.typecheck import Bound, between, check_field_types


@dataclasses.dataclass(frozen=True)
class LossConfig:
    """False-negative masking of the in-batch (and hard-negative) columns, and Matryoshka terms.

    mask_duplicates: a column is masked (-inf, in both directions) for row i when its pair has the
      same x text or the same y text as pair i (content ids, PairBatch.ids), and a hard negative is
      masked for row i when its text equals y_i. Copies of a pair in one batch then stop counting
      as negatives: without it a batch larger than its corpus cannot be solved.
    similarity_margin: None (off), or m: a non-label column whose cosine exceeds the row's
      positive cosine + m is masked (GTE's improved contrastive loss; e.g. 0.1). A negative m also
      masks columns scoring just below the positive.
    matryoshka_dims: () (off), or nested dimensions, largest first, e.g. (384, 256, 128, 64, 32):
      the loss is the weighted sum of the contrastive loss over each embedding's first d values,
      L2-normalised again (Kusupati et al. 2022; sentence-transformers' MatryoshkaLoss), so each
      prefix is an embedding of its own. List the full dimension to keep training it. The terms are
      computed on the same (all-gathered, or GradCache-cached) embeddings: one encoder pass per step.
    matryoshka_weights: () (every term weighs 1), or one weight per dimension.
    None changes what the weights mean: a resumed run may change them (train/restore.py).
    """

    mask_duplicates: bool = False
    similarity_margin: float | None = None
    matryoshka_dims: tuple = ()
    matryoshka_weights: tuple = ()

    BOUNDS: ClassVar[dict[str, Bound]] = {
        "similarity_margin": between(
            -2.0, 2.0, "a cosine difference: columns above the positive's cosine + margin are masked, e.g. 0.1"
        ),
    }

    def __post_init__(self) -> None:
        check_field_types(self)  # types, then the BOUNDS above
        self._check_matryoshka()

    def _check_matryoshka(self) -> None:
        dims, weights = self.matryoshka_dims, self.matryoshka_weights
        example = "e.g. LossConfig.matryoshka_dims = (384, 256, 128, 64)"
        if not isinstance(dims, tuple) or any(not isinstance(d, int) or isinstance(d, bool) or d < 1 for d in dims):
            raise ValueError(f"LossConfig.matryoshka_dims={dims!r} must be a tuple of positive ints; {example}.")
        if list(dims) != sorted(set(dims), reverse=True):
            raise ValueError(
                f"LossConfig.matryoshka_dims={dims!r} must be distinct and decreasing (largest first); "
                f"write {tuple(sorted(set(dims), reverse=True))}."
            )
        if not isinstance(weights, tuple) or any(
            not isinstance(w, (int, float)) or isinstance(w, bool) or not w > 0 or w != w or w == float("inf")
            for w in weights
        ):
            raise ValueError(
                f"LossConfig.matryoshka_weights={weights!r} must be a tuple of positive finite numbers (or () "
                "for weight 1 everywhere)."
            )
        if weights and len(weights) != len(dims):
            raise ValueError(
                f"LossConfig.matryoshka_weights has {len(weights)} entries for {len(dims)} matryoshka_dims "
                f"{dims}; give one weight per dimension, or () for weight 1 everywhere."
            )

    @property
    def matryoshka(self) -> tuple[tuple[int, float], ...]:
        """((dim, weight), ...) of the Matryoshka terms; () when off."""
        return tuple(zip(self.matryoshka_dims, self.matryoshka_weights or (1.0,) * len(self.matryoshka_dims)))

    @property
    def masks(self) -> bool:
        """Whether any masking is configured (else the loss is exactly the unmasked one)."""
        return self.mask_duplicates or self.similarity_margin is not None
