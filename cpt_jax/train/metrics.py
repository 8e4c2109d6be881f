"""Where training metrics go: the console (with ETA), TensorBoard events and metrics.jsonl.

Only the process that owns the writer (process 0) creates one; the loop fetches metrics
from the devices only on logging steps, so the step itself never waits on the host.
"""

from __future__ import annotations

import json
import os
import sys
import time
from collections.abc import Mapping

CONSOLE_KEYS = ("loss", "accuracy_xy", "accuracy_yx", "temperature", "grad_norm")


def format_duration(seconds: float) -> str:
    seconds = max(int(seconds), 0)
    h, rem = divmod(seconds, 3600)
    m, s = divmod(rem, 60)
    return f"{h}h{m:02d}m{s:02d}s" if h else f"{m}m{s:02d}s"


class MetricsWriter:
    """Writes scalar metrics as TensorBoard events under `<run_dir>/tensorboard`, as full-precision
    JSON lines to `<run_dir>/metrics.jsonl` (appended across restarts), and a progress line."""

    def __init__(self, run_dir: str, total_steps: int, stream=sys.stdout) -> None:
        import tensorflow as tf  # deferred: only the writing process pays the import

        self._tf = tf
        self._writer = tf.summary.create_file_writer(os.path.join(run_dir, "tensorboard"))
        self._jsonl = open(os.path.join(run_dir, "metrics.jsonl"), "a")
        self._total = total_steps
        self._stream = stream
        self._t0: float | None = None
        self._step0 = 0

    def start(self, step: int) -> None:
        """Marks the first timed step (after compilation) for rate and ETA estimates."""
        self._t0, self._step0 = time.perf_counter(), step

    def write(self, step: int, scalars: Mapping[str, float]) -> None:
        with self._writer.as_default(step=step):
            for name, value in scalars.items():
                self._tf.summary.scalar(name, value)
        self._writer.flush()
        self._jsonl.write(json.dumps({"step": step, **scalars}) + "\n")
        self._jsonl.flush()
        fields = " ".join(f"{k} {scalars[k]:.4g}" for k in CONSOLE_KEYS if k in scalars)
        rate = ""
        if self._t0 is not None and step > self._step0:
            per_step = (time.perf_counter() - self._t0) / (step - self._step0)
            rate = f" | {1 / per_step:.2f} steps/s ETA {format_duration(per_step * (self._total - step))}"
            if "tokens_per_s" in scalars:
                rate += f" | {scalars['tokens_per_s']:.0f} tok/s"
        print(f"step {step}/{self._total} | {fields}{rate}", file=self._stream, flush=True)

    def close(self) -> None:
        self._writer.close()
        self._jsonl.close()
