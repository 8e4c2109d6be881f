"""Multi-host data bookkeeping of the loop: the data position a checkpoint keeps, drop statistics,
batch fingerprints. Each gather is a collective: every process calls it at the same steps."""

from __future__ import annotations

import dataclasses
import json
import os
from typing import Any

import jax
import numpy as np
from jax.experimental import multihost_utils

from cpt_jax import atomic
from cpt_jax.batch import PairBatch
from cpt_jax.data.fingerprint import FINGERPRINTS_FILE, fingerprint, row_hashes
from cpt_jax.data.pipeline import STREAM_META_KEY, StreamPosition, merge_counts

DATA_STATS_FILE = "data_stats.json"  # drop-rule counts per source, rewritten at each log step


def allgather_json(obj: Any) -> list[Any]:
    """`obj` (JSON-serialisable) of every process, in process order. A collective: every process
    must call it at the same point."""
    if jax.process_count() == 1:
        return [obj]
    data = np.frombuffer(json.dumps(obj).encode(), np.uint8).astype(np.int32)
    sizes = np.asarray(multihost_utils.process_allgather(np.array([data.size], np.int32))).reshape(-1)
    padded = np.zeros(int(sizes.max()), np.int32)
    padded[: data.size] = data
    rows = np.asarray(multihost_utils.process_allgather(padded))
    return [json.loads(bytes(row[:n].astype(np.uint8))) for row, n in zip(rows, sizes)]


class DataPosition:
    """The data position after the last trained step, gathered from every process on demand
    (a collective: all processes ask at the same steps, and at most once per step)."""

    def __init__(self, data: Any, resume: dict | None) -> None:
        self._data = data
        self._base_stats = resume["drop_stats"] if resume else {}  # counts of the runs before this one
        self._local: StreamPosition | None = None
        self._gathered: list[StreamPosition] | None = None

    @property
    def has_read(self) -> bool:
        """Whether any step consumed a batch in this call."""
        return self._local is not None

    def consume(self, local: StreamPosition) -> None:
        self._local, self._gathered = local, None

    def _all(self) -> list[StreamPosition]:
        if self._gathered is None:
            self._gathered = [StreamPosition(**p) for p in allgather_json(dataclasses.asdict(self._local))]
        return self._gathered

    def drop_stats(self) -> dict:
        """Drop-rule counts per source over all processes and restarts."""
        if self._local is None:
            return dict(self._base_stats)
        return merge_counts(self._base_stats, *(p.drop_stats for p in self._all()))

    def meta(self) -> dict:
        """The checkpoint meta entry of the position ({} before the first step)."""
        if self._local is None:
            return {}
        return {STREAM_META_KEY: self._data.checkpoint_meta(self._all(), self.drop_stats())}


def write_data_stats(output_dir: str, stats: dict, is_writer: bool) -> None:
    if is_writer:
        atomic.write_json(os.path.join(output_dir, DATA_STATS_FILE), stats, indent=1, sort_keys=True)


def log_fingerprint(output_dir: str, step: int, local: PairBatch, is_writer: bool) -> None:
    """Appends the global batch's fingerprint (from every process's row hashes) to FINGERPRINTS_FILE."""
    hashes = [h for part in allgather_json([int(h) for h in row_hashes(local)]) for h in part]
    if is_writer:
        with open(os.path.join(output_dir, FINGERPRINTS_FILE), "a") as f:
            f.write(json.dumps({"batch": step, "fingerprint": fingerprint(hashes)}) + "\n")
