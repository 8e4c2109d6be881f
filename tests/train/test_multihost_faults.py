"""Faults between processes end in bounded time: real processes on this machine, gloo collectives.

Each case runs in subprocesses with a timeout, so a hang fails the test rather than CI.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys

import pytest

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
HANG = 120  # seconds: past this a process counts as hung (the heartbeat below is 5 s)

# One process of a 2-process job: joins, passes a barrier, then the victim dies or freezes
# (SIGKILL / SIGSTOP to itself) while the survivor waits at the next barrier.
_PROCESS = """
import os, signal, sys
from cpt_jax.parallel import runtime
address, pid, victim, sig = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), int(sys.argv[4])
runtime.initialize(address, 2, pid, initialization_timeout_s=60, heartbeat_timeout_s=5)
runtime.barrier("joined")
print("joined", flush=True)
if pid == victim:
    os.kill(os.getpid(), sig)
runtime.barrier("after the fault")
print("passed the barrier", flush=True)
"""


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("localhost", 0))
        return s.getsockname()[1]


def _env() -> dict[str, str]:
    return {**os.environ, "JAX_PLATFORMS": "cpu", "XLA_FLAGS": "--xla_force_host_platform_device_count=1"}


def _spawn(code: str, *args: object) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-c", code, *map(str, args)], cwd=REPO, env=_env(),
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)


def test_unreachable_coordinator_is_a_clear_timeout_error():
    address = f"localhost:{_free_port()}"  # nothing listens there
    code = ("import sys; from cpt_jax.parallel import runtime; "
            "runtime.initialize(sys.argv[1], 2, 1, initialization_timeout_s=3)")
    proc = subprocess.run([sys.executable, "-c", code, address], cwd=REPO, env=_env(),
                          capture_output=True, text=True, timeout=HANG)
    assert proc.returncode == 1, proc.stdout + proc.stderr
    assert f"TimeoutError: No coordinator answered at {address} within 3 s" in proc.stderr
    assert "Start process 0 with the same --coordinator_address" in proc.stderr


@pytest.mark.slow
def test_a_process_that_never_joins_ends_the_others_after_the_initialization_timeout():
    code = ("import sys; from cpt_jax.parallel import runtime; "
            "runtime.initialize(sys.argv[1], 2, 0, initialization_timeout_s=3); print('joined')")
    proc = _spawn(code, f"localhost:{_free_port()}")  # process 0 (the coordinator); process 1 never starts
    try:
        out, _ = proc.communicate(timeout=HANG)
    except subprocess.TimeoutExpired:
        proc.kill()
        pytest.fail(f"process 0 waited over {HANG} s for a process that never joined")
    assert proc.returncode != 0 and "joined\n" not in out, out[-3000:]
    assert "DEADLINE_EXCEEDED" in out, out[-3000:]


@pytest.mark.slow
@pytest.mark.parametrize("victim", [0, 1], ids=["coordinator-dies", "worker-dies"])
@pytest.mark.parametrize("sig", [signal.SIGKILL, signal.SIGSTOP], ids=["killed", "frozen"])
def test_the_survivor_of_a_dead_or_frozen_peer_exits_with_an_error(victim, sig):
    """Killed: its sockets close, the survivor's barrier fails at once. Frozen (no socket closes,
    no heartbeats): the coordination service's heartbeat timeout stops the survivor."""
    address = f"localhost:{_free_port()}"
    procs = [_spawn(_PROCESS, address, pid, victim, int(sig)) for pid in (0, 1)]
    survivor = procs[1 - victim]
    try:
        out, _ = survivor.communicate(timeout=HANG)
    except subprocess.TimeoutExpired:
        pytest.fail(f"the survivor hung for {HANG} s after its peer's {sig.name}")
    finally:
        for proc in procs:
            if proc.poll() is None:
                proc.kill()
            proc.communicate()
    assert "joined" in out, out[-3000:]
    assert survivor.returncode != 0 and "passed the barrier" not in out, out[-3000:]
    # Killed: the barrier's error (Python), then JAX's shutdown; frozen: JAX ends the process.
    assert "Another process most likely died" in out or "another task died" in out, out[-3000:]
