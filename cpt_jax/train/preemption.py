"""Preemption: turn SIGTERM, Ctrl-C (or a cluster's preemption notice) into a checkpoint and a clean exit.

Single process: SIGTERM and the first SIGINT (Ctrl-C) raise a flag that the loop checks after
every step, so the step in flight finishes, a checkpoint is written and verified, and the run
exits 0; a second Ctrl-C restores Python's handler and interrupts at once (the loop's cleanup
still writes the manifests of the checkpoints already committed, so none is left unverifiable).
Multi-process: JAX's preemption sync manager (started by jax.distributed.initialize) catches
the notice on any host and agrees on one step at which every process saves, so all
processes reach the same sync point instead of some dying mid-collective.
"""

from __future__ import annotations

import signal
import sys
from types import FrameType

import jax
from jax.experimental import multihost_utils


class PreemptionGuard:
    """`reached(step)` is True at the step where the run should save and stop."""

    def __init__(self) -> None:
        self._multi_process = jax.process_count() > 1
        self._requested = False
        self._previous: dict[int, object] = {}
        if not self._multi_process:
            self._previous[signal.SIGTERM] = signal.signal(signal.SIGTERM, self._on_signal)
            self._previous[signal.SIGINT] = signal.signal(signal.SIGINT, self._on_signal)

    def _on_signal(self, signum: int, frame: FrameType | None) -> None:
        if signum == signal.SIGINT:
            if self._requested:  # a second Ctrl-C: stop now
                signal.signal(signal.SIGINT, self._previous[signal.SIGINT])
                raise KeyboardInterrupt
            print("\ninterrupted: saving a checkpoint after the step in flight, then exiting (Ctrl-C again to stop "
                  "at once).", file=sys.stderr, flush=True)
        self._requested = True

    def reached(self, step: int) -> bool:
        if self._multi_process:
            return multihost_utils.reached_preemption_sync_point(step)
        return self._requested

    def close(self) -> None:
        for signum, handler in self._previous.items():
            signal.signal(signum, handler)
        self._previous.clear()
