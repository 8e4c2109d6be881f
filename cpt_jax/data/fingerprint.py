"""Order-free fingerprints of batches: equal for the same rows in any order.

The contrastive loss does not depend on the row order, so two runs saw the same data at a step
exactly when their global batches have the same fingerprint. A process hashes its own rows;
the fingerprint of the global batch is that of all processes' row hashes together.
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence

import numpy as np

Batch = dict[str, np.ndarray]


def row_hashes(batch: Batch) -> np.ndarray:
    """uint64 [rows]: a hash of each row across all the batch's arrays."""
    keys = sorted(batch)
    rows = len(batch[keys[0]])
    flat = [np.ascontiguousarray(batch[k]).reshape(rows, -1) for k in keys]
    digest = lambda i: hashlib.blake2b(b"".join(f[i].tobytes() for f in flat), digest_size=8).digest()  # noqa: E731
    return np.array([int.from_bytes(digest(i), "little") for i in range(rows)], np.uint64)


def fingerprint(hashes: Sequence[int] | np.ndarray) -> str:
    """An order-free fingerprint of a set of rows from their row_hashes (of one or many processes)."""
    return hashlib.sha256(np.sort(np.asarray(hashes, np.uint64)).tobytes()).hexdigest()[:16]


def batch_fingerprint(batch: Batch) -> str:
    """Equal for batches holding the same rows in any order (the loss does not see the order)."""
    return fingerprint(row_hashes(batch))
