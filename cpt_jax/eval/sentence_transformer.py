"""A sentence-transformers model directory as an evaluation Encoder.

Used to check that an exported model (python -m cpt_jax.export) scores what the run scored,
and to put any published sentence-transformers model beside a run on the same tasks.
"""

from __future__ import annotations

from collections.abc import Sequence

import copy

import numpy as np


class SentenceTransformerEncoder:
    """encode(texts, side) through ``encode_query`` (side "query"/"x") or ``encode_document``."""

    def __init__(self, path: str, max_len: int | None = None) -> None:
        """path: the model directory; max_len: tokens read per text (default: the model's own
        ``max_seq_length``), e.g. shorter to encode a large corpus faster on a CPU."""
        from sentence_transformers import SentenceTransformer

        self.path = path
        self.model = SentenceTransformer(path, device="cpu")
        if max_len is not None:
            if not 1 <= max_len <= self.model.max_seq_length:
                raise ValueError(
                    f"max_len={max_len}: {path} reads 1 to {self.model.max_seq_length} tokens per text "
                    "(its max_seq_length); pass a length in that range."
                )
            self.model.max_seq_length = max_len
        self.full_dim = int(self.model.get_sentence_embedding_dimension())
        self.truncate_dim: int | None = None

    @property
    def dim(self) -> int:
        return self.truncate_dim or self.full_dim

    def with_dim(self, dim: int) -> SentenceTransformerEncoder:
        """The same model's embeddings cut to their first dim values, normalised again (Matryoshka)."""
        if not 1 <= dim <= self.full_dim:
            raise ValueError(f"dim={dim}: {self.path} embeds in {self.full_dim} values; pass 1 to {self.full_dim}.")
        other = copy.copy(self)
        other.truncate_dim = None if dim == self.full_dim else dim
        return other

    def encode(self, texts: Sequence[str], side: str = "document", batch_size: int = 64) -> np.ndarray:
        encode = self.model.encode_query if side in ("query", "x") else self.model.encode_document
        # sentence-transformers cuts at truncate_dim before it normalises: the nested embedding.
        out = encode(list(texts), batch_size=batch_size, convert_to_numpy=True, normalize_embeddings=True,
                     truncate_dim=self.truncate_dim)
        return np.asarray(out, np.float32)
