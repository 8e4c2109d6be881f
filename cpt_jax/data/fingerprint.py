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


def main(argv: list[str]) -> int:
    """python -m cpt_jax.data.fingerprint RUN_A RUN_B: exit 0 iff every common batch matches."""
    if len(argv) != 2:
        print("usage: python -m cpt_jax.data.fingerprint RUN_A RUN_B", file=sys.stderr)
        return 2
    a, b = read_fingerprints(argv[0]), read_fingerprints(argv[1])
    common = sorted(a.keys() & b.keys())
    differ = compare(*argv)
    print(f"{len(common)} batches in both runs ({min(common, default=0)}..{max(common, default=-1)}); "
          f"{len(common) - len(differ)} identical, {len(differ)} differ{': ' + str(differ) if differ else ''}")
    return 1 if differ or not common else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
