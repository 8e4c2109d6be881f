"""Order-free fingerprints of batches: equal for the same rows in any order.

The contrastive loss does not depend on the row order, so two runs saw the same data at a step
exactly when their global batches have the same fingerprint. A process hashes its own rows;
the fingerprint of the global batch is that of all processes' row hashes together.
"""

from __future__ import annotations

import hashlib
import json
import os
import sys
from collections.abc import Sequence

import numpy as np

from cpt_jax.batch import PaddedSide, PairBatch


def _arrays(batch: PairBatch) -> dict[str, np.ndarray]:
    """The batch's arrays under stable names; hashing them in sorted-name order keeps the
    fingerprints of runs logged before batches were typed comparable with today's."""
    sides = {"x": batch.x, "y": batch.y}
    if batch.negatives is not None:
        sides["n"] = batch.negatives.side
    for name, side in sides.items():
        if not isinstance(side, PaddedSide):
            raise TypeError(f"row_hashes takes the padded batch the pipeline produced; side {name!r} is {type(side).__name__}.")
    arrays = {f"{name}_{field}": np.asarray(getattr(side, field)) for name, side in sides.items() for field in ("tokens", "mask")}
    if batch.negatives is not None:
        arrays["n_valid"] = np.asarray(batch.negatives.valid)
    return arrays


def row_hashes(batch: PairBatch) -> np.ndarray:
    """uint64 [rows]: a hash of each row across all the batch's arrays."""
    arrays = _arrays(batch)
    keys = sorted(arrays)
    rows = len(arrays[keys[0]])
    flat = [np.ascontiguousarray(arrays[k]).reshape(rows, -1) for k in keys]
    digest = lambda i: hashlib.blake2b(b"".join(f[i].tobytes() for f in flat), digest_size=8).digest()  # noqa: E731
    return np.array([int.from_bytes(digest(i), "little") for i in range(rows)], np.uint64)


def fingerprint(hashes: Sequence[int] | np.ndarray) -> str:
    """An order-free fingerprint of a set of rows from their row_hashes (of one or many processes)."""
    return hashlib.sha256(np.sort(np.asarray(hashes, np.uint64)).tobytes()).hexdigest()[:16]


def batch_fingerprint(batch: PairBatch) -> str:
    """Equal for batches holding the same rows in any order (the loss does not see the order)."""
    return fingerprint(row_hashes(batch))


FINGERPRINTS_FILE = "batch_fingerprints.jsonl"  # written by train() with DataConfig.log_fingerprints


def read_fingerprints(run_dir: str) -> dict[int, str]:
    """{global batch index: fingerprint} of a run; a batch logged twice (a resumed run that
    recomputed it) keeps its last entry."""
    with open(os.path.join(run_dir, FINGERPRINTS_FILE)) as f:
        return {int(r["batch"]): r["fingerprint"] for r in map(json.loads, filter(str.strip, f))}


def compare(run_a: str, run_b: str) -> list[int]:
    """Batch indices both runs logged whose fingerprints differ (empty: they saw the same data)."""
    a, b = read_fingerprints(run_a), read_fingerprints(run_b)
    return [i for i in sorted(a.keys() & b.keys()) if a[i] != b[i]]


if __name__ == "__main__":  # the CLI: cpt_jax/cli/fingerprint.py
    from cpt_jax.cli.errors import run
    from cpt_jax.cli.fingerprint import main

    run(main, sys.argv[1:])
