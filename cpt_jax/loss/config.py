"""LossConfig: which logits of the contrastive loss are masked as false negatives."""

from __future__ import annotations

import dataclasses
from typing import ClassVar

from cpt_jax.typecheck import Bound, between, check_field_types


@dataclasses.dataclass(frozen=True)
class LossConfig:
    """False-negative masking of the in-batch (and hard-negative) columns.

    mask_duplicates: a column is masked (-inf, in both directions) for row i when its pair has the
      same x text or the same y text as pair i (content ids, PairBatch.ids), and a hard negative is
      masked for row i when its text equals y_i. Copies of a pair in one batch then stop counting
      as negatives: without it a batch larger than its corpus cannot be solved.
    similarity_margin: None (off), or m: a non-label column whose cosine exceeds the row's
      positive cosine + m is masked (GTE's improved contrastive loss; e.g. 0.1). A negative m also
      masks columns scoring just below the positive.
    Neither changes what the weights mean: a resumed run may change them (train/restore.py).
    """

    mask_duplicates: bool = False
    similarity_margin: float | None = None

    BOUNDS: ClassVar[dict[str, Bound]] = {
        "similarity_margin": between(
            -2.0, 2.0, "a cosine difference: columns above the positive's cosine + margin are masked, e.g. 0.1"
        ),
    }

    def __post_init__(self) -> None:
        check_field_types(self)  # types, then the BOUNDS above

    @property
    def masks(self) -> bool:
        """Whether any masking is configured (else the loss is exactly the unmasked one)."""
        return self.mask_duplicates or self.similarity_margin is not None
