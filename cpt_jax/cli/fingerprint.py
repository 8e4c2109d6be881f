"""python -m cpt_jax.data.fingerprint RUN_A RUN_B — did two runs see the same batches?

Compares the batch fingerprints two runs logged (DataConfig.log_fingerprints; see
cpt_jax/data/fingerprint.py): exit 0 iff every batch both logged matches, 1 if any differs or
none is common, 2 on a usage error.
"""

from __future__ import annotations

import sys
from collections.abc import Sequence

from cpt_jax.data.fingerprint import compare, read_fingerprints


def main(argv: Sequence[str]) -> int:
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
