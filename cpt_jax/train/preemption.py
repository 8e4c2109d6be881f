"""Preemption: turn SIGTERM (or a cluster's preemption notice) into a checkpoint and a clean exit.

Single process: a SIGTERM handler raises a flag that the loop checks after every step.
Multi-process: JAX's preemption sync manager (started by jax.distributed.initialize) catches
the notice on any host and agrees on one step at which every process saves, so all
processes reach the same sync point instead of some dying mid-collective.
"""

from __future__ import annotations

import signal
from types import FrameType

import jax
from jax.experimental import multihost_utils


class PreemptionGuard:
    """`reached(step)` is True at the step where the run should save and stop."""

    def __init__(self) -> None:
        self._multi_process = jax.process_count() > 1
        self._requested = False
        self._previous = None if self._multi_process else signal.signal(signal.SIGTERM, self._on_sigterm)

    def _on_sigterm(self, signum: int, frame: FrameType | None) -> None:
        self._requested = True

    def reached(self, step: int) -> bool:
        if self._multi_process:
            return multihost_utils.reached_preemption_sync_point(step)
        return self._requested

    def close(self) -> None:
        if self._previous is not None:
            signal.signal(signal.SIGTERM, self._previous)
