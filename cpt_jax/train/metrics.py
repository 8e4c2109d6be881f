"""Where training metrics go: the console (with ETA), TensorBoard events and metrics.jsonl.

Only the process that owns the writer (process 0) creates one; the loop fetches metrics
from the devices only on logging steps, so the step itself never waits on the host.
The event file is written with TensorBoard's protos and TFRecord framing directly: going
through tf.summary would import TensorFlow, several seconds of every launch.

Both files are append-only logs: nothing here truncates or rewrites an existing file. Each
launch starts a new event file, and metrics.jsonl is appended to; a record cut short by a crash
(no final newline) is closed with one before the next launch appends, so it costs that one
line and never merges with the next record.
"""

from __future__ import annotations

import json
import os
import socket
import struct
import sys
import time
from collections.abc import Mapping
from typing import BinaryIO

CONSOLE_KEYS = ("loss", "accuracy_xy", "accuracy_yx", "temperature", "grad_norm", "masked_duplicates", "masked_similar")
# Masked logits per step (LossConfig; a log line has their mean per step over its interval):
# counts, printed whole rather than to 4 significant digits.
COUNT_KEYS = frozenset({"masked_duplicates", "masked_similar"})


def format_duration(seconds: float) -> str:
    seconds = max(int(seconds), 0)
    h, rem = divmod(seconds, 3600)
    m, s = divmod(rem, 60)
    return f"{h}h{m:02d}m{s:02d}s" if h else f"{m}m{s:02d}s"


class EventFile:
    """A TensorBoard event file of scalars: TFRecord records (length, masked CRC-32C of the length,
    a serialised Event proto, masked CRC-32C of the data) after a file-version record."""

    def __init__(self, directory: str) -> None:
        from tensorboard.compat.proto import event_pb2, summary_pb2
        from tensorboard.compat.tensorflow_stub.pywrap_tensorflow import masked_crc32c

        self._event, self._summary, self._crc = event_pb2.Event, summary_pb2.Summary, masked_crc32c
        os.makedirs(directory, exist_ok=True)
        name = f"events.out.tfevents.{time.time():.0f}.{socket.gethostname()}.{os.getpid()}"
        self._file: BinaryIO = open(os.path.join(directory, name), "ab")
        self._write(self._event(wall_time=time.time(), file_version="brain.Event:2"))

    def _write(self, event) -> None:
        data = event.SerializeToString()
        header = struct.pack("<Q", len(data))
        self._file.write(header + struct.pack("<I", self._crc(header)) + data + struct.pack("<I", self._crc(data)))

    def scalars(self, step: int, values: Mapping[str, float]) -> None:
        summary = self._summary(value=[self._summary.Value(tag=k, simple_value=float(v)) for k, v in values.items()])
        self._write(self._event(wall_time=time.time(), step=step, summary=summary))
        self._file.flush()

    def close(self) -> None:
        self._file.close()


def _ends_mid_line(path: str) -> bool:
    """Whether a non-empty file's last byte is not a newline."""
    with open(path, "rb") as f:
        f.seek(0, os.SEEK_END)
        if f.tell() == 0:
            return False
        f.seek(-1, os.SEEK_END)
        return f.read(1) != b"\n"


class MetricsWriter:
    """Writes scalar metrics as TensorBoard events under `<run_dir>/tensorboard`, as full-precision
    JSON lines to `<run_dir>/metrics.jsonl` (appended across restarts), and a progress line."""

    def __init__(self, run_dir: str, total_steps: int, stream=sys.stdout) -> None:
        self._events = EventFile(os.path.join(run_dir, "tensorboard"))
        path = os.path.join(run_dir, "metrics.jsonl")
        self._jsonl = open(path, "a")
        if _ends_mid_line(path):  # the last launch died mid-record: end it, keep the next one parseable
            self._jsonl.write("\n")
        self._total = total_steps
        self._stream = stream
        self._t0: float | None = None
        self._step0 = 0

    def start(self, step: int) -> None:
        """Marks the first timed step (after compilation) for rate and ETA estimates."""
        self._t0, self._step0 = time.perf_counter(), step

    def write(self, step: int, scalars: Mapping[str, float]) -> None:
        self._events.scalars(step, scalars)
        self._jsonl.write(json.dumps({"step": step, **scalars}) + "\n")
        self._jsonl.flush()
        fields = " ".join(
            f"{k} {scalars[k]:.0f}" if k in COUNT_KEYS else f"{k} {scalars[k]:.4g}" for k in CONSOLE_KEYS if k in scalars
        )
        rate = ""
        if self._t0 is not None and step > self._step0:
            per_step = (time.perf_counter() - self._t0) / (step - self._step0)
            rate = f" | {1 / per_step:.2f} steps/s ETA {format_duration(per_step * (self._total - step))}"
            if "tokens_per_s" in scalars:
                rate += f" | {scalars['tokens_per_s']:.0f} tok/s"
        print(f"step {step}/{self._total} | {fields}{rate}", file=self._stream, flush=True)

    def write_eval(self, step: int, scores: Mapping[str, float], seconds: float) -> None:
        """Evaluation scores: TensorBoard tags "eval/<key>", one metrics.jsonl row of the same keys
        (its own row: training rows of the step keep theirs), and a console line."""
        tagged = {f"eval/{k}": float(v) for k, v in scores.items()}
        self._events.scalars(step, tagged)
        self._jsonl.write(json.dumps({"step": step, **tagged}) + "\n")
        self._jsonl.flush()
        shown = " ".join(f"{k} {v:.4f}" for k, v in scores.items() if not k.endswith(("best_c", "cv_accuracy")))
        print(f"eval at step {step} ({seconds:.0f}s) | {shown}", file=self._stream, flush=True)

    def close(self) -> None:
        self._events.close()
        self._jsonl.close()
