"""What makes two texts "the same": one normalisation and one 64-bit content hash, shared by
false-negative masking in the loss (the batch's content ids, data/pipeline.tokenize_pairs) and by
hard-negative mining (cpt_jax/mining: the positive and its equals are never negatives).

A text is normalised by collapsing every whitespace run to one space, stripping the ends and
case folding (str.casefold: "Straße" equals "STRASSE"). Case is folded although code is
case-sensitive: texts that differ only in case are near-copies for retrieval, and uncased models
(BERT / MiniLM vocabularies) cannot tell them apart anyway, so treating them as different would
leave exactly the false negatives these rules exist to remove. The hash is BLAKE2b with an 8-byte
digest of the UTF-8 form: distinct texts collide with probability about 2^-64 per pair.
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence

import numpy as np


def normalize(text: str) -> str:
    """``text`` as equality sees it: whitespace runs collapsed, ends stripped, casefolded."""
    return " ".join(text.split()).casefold()


def digest(text: str) -> bytes:
    """The 8-byte BLAKE2b digest of ``normalize(text)`` (lone surrogates kept, never an error)."""
    return hashlib.blake2b(normalize(text).encode("utf-8", "surrogatepass"), digest_size=8).digest()


def content_ids(texts: Sequence[str]) -> np.ndarray:
    """int32 ``[len(texts), 2]``: each text's digest as two little-endian int32 words (the form the
    batch carries: jax arrays are 32-bit by default)."""
    return np.frombuffer(b"".join(digest(t) for t in texts), "<i4").astype(np.int32).reshape(len(texts), 2)


def content_keys(texts: Sequence[str]) -> np.ndarray:
    """int64 ``[len(texts)]``: the same digests as one signed little-endian int64 each."""
    return np.frombuffer(b"".join(digest(t) for t in texts), "<i8").astype(np.int64).reshape(len(texts))
