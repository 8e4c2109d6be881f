"""PreemptionGuard in one process: SIGTERM and a first Ctrl-C ask for a save-and-exit after the
step in flight; a second Ctrl-C interrupts at once; close() puts Python's handlers back."""

from __future__ import annotations

import os
import signal

import pytest

from cpt_jax.train.preemption import PreemptionGuard


@pytest.mark.parametrize("signum", [signal.SIGTERM, signal.SIGINT])
def test_a_signal_requests_a_save_at_the_next_step(signum, capsys):
    before = {s: signal.getsignal(s) for s in (signal.SIGTERM, signal.SIGINT)}
    guard = PreemptionGuard()
    try:
        assert not guard.reached(1)
        os.kill(os.getpid(), signum)  # handled synchronously by the main thread before kill returns
        assert guard.reached(2)
    finally:
        guard.close()
    assert {s: signal.getsignal(s) for s in before} == before
    if signum == signal.SIGINT:
        assert "saving a checkpoint after the step in flight" in capsys.readouterr().err


def test_a_second_ctrl_c_interrupts_at_once():
    before = signal.getsignal(signal.SIGINT)  # Python's default_int_handler, or SIG_IGN under a background shell
    guard = PreemptionGuard()
    try:
        os.kill(os.getpid(), signal.SIGINT)
        with pytest.raises(KeyboardInterrupt):
            os.kill(os.getpid(), signal.SIGINT)
        assert signal.getsignal(signal.SIGINT) is before  # the handler from before the guard is back
    finally:
        guard.close()
