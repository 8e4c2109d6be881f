"""runtime.initialize's checks, timeouts and coordinator probe, without joining a real job
(tests/train/test_multihost_faults.py runs real processes)."""

from __future__ import annotations

import socket
import threading
import time

import jax
import pytest

from cpt_jax.parallel import runtime


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("localhost", 0))
        return s.getsockname()[1]


@pytest.fixture
def joined(monkeypatch) -> list[dict]:
    """Records jax.distributed.initialize calls instead of joining a job."""
    calls: list[dict] = []
    monkeypatch.setattr(jax.distributed, "initialize", lambda *args, **kwargs: calls.append({"args": args, **kwargs}))
    monkeypatch.setattr(jax.config, "update", lambda *args: None)  # leave this process's collectives alone
    return calls


def test_wait_for_coordinator_returns_the_time_left_once_it_listens():
    with socket.create_server(("localhost", 0)) as server:
        left = runtime.wait_for_coordinator(f"localhost:{server.getsockname()[1]}", 10)
    assert 0 < left <= 10


def test_wait_for_coordinator_waits_for_a_coordinator_that_starts_late():
    port = _free_port()
    servers = []
    timer = threading.Timer(1.5, lambda: servers.append(socket.create_server(("localhost", port))))
    timer.start()
    try:
        left = runtime.wait_for_coordinator(f"localhost:{port}", 30)
    finally:
        timer.join()
        for server in servers:
            server.close()
    assert 0 < left < 29


def test_wait_for_coordinator_times_out_naming_the_address_and_the_fix():
    address = f"localhost:{_free_port()}"
    start = time.monotonic()
    with pytest.raises(TimeoutError, match=rf"No coordinator answered at {address} within 0.5 s") as info:
        runtime.wait_for_coordinator(address, 0.5)
    assert time.monotonic() - start < 10
    assert "Start process 0 with the same --coordinator_address" in str(info.value)
    assert "initialization_timeout_s" in str(info.value)


@pytest.mark.parametrize("address", ["nohost", "host:", ":1234", "host:port"])
def test_a_malformed_coordinator_address_is_named(address):
    with pytest.raises(ValueError, match=rf"{address!r} is not HOST:PORT"):
        runtime.wait_for_coordinator(address, 1)


def test_initialize_passes_the_default_timeouts_to_jax(joined):
    runtime.initialize("localhost:1", 2, 0)  # process 0 hosts the coordinator: nothing to probe
    assert joined == [{"args": ("localhost:1",), "num_processes": 2, "process_id": 0,
                       "initialization_timeout": 300, "heartbeat_timeout_seconds": 60}]


def test_other_processes_probe_the_coordinator_and_pass_on_the_time_left(joined):
    with socket.create_server(("localhost", 0)) as server:
        address = f"localhost:{server.getsockname()[1]}"
        runtime.initialize(address, 2, 1, initialization_timeout_s=40, heartbeat_timeout_s=7)
    (call,) = joined
    assert 30 <= call["initialization_timeout"] <= 40 and call["heartbeat_timeout_seconds"] == 7
    with pytest.raises(TimeoutError, match="No coordinator answered"):
        runtime.initialize(f"localhost:{_free_port()}", 2, 1, initialization_timeout_s=1)
    assert len(joined) == 1, "JAX is not asked to join when the coordinator never answered"


def test_cluster_runs_get_the_timeouts_too(joined, monkeypatch):
    monkeypatch.setenv("CPT_JAX_DISTRIBUTED", "1")
    runtime.initialize(initialization_timeout_s=20, heartbeat_timeout_s=9)
    assert joined == [{"args": (), "initialization_timeout": 20, "heartbeat_timeout_seconds": 9}]


def test_a_single_process_run_joins_nothing(joined, monkeypatch):
    for name in ("CPT_JAX_DISTRIBUTED", *runtime._CLUSTER_HINTS):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setattr(runtime.os.path, "exists", lambda path: False)  # not a TPU VM
    runtime.initialize()
    assert joined == []


@pytest.mark.parametrize(
    "kwargs,message",
    [
        ({"coordinator_address": "localhost:1"}, "needs --num_processes and --process_id"),
        ({"coordinator_address": "localhost:1", "num_processes": 2, "process_id": 0, "heartbeat_timeout_s": 0},
         "must be positive"),
        ({"initialization_timeout_s": -5}, "must be positive"),
    ],
)
def test_incomplete_or_nonpositive_arguments_are_rejected(joined, kwargs, message):
    with pytest.raises(ValueError, match=message):
        runtime.initialize(**kwargs)
    assert joined == []


_COMPILE_TWICE = """
import sys, jax, jax.numpy as jnp
from jax._src import monitoring
from cpt_jax.parallel import runtime
hits = []
monitoring.register_event_listener(lambda event, **kw: hits.append(event) if "cache_hits" in event else None)
runtime.enable_compilation_cache(sys.argv[1], min_compile_time_s=0.0)
jax.jit(lambda x: jnp.tanh(x @ x.T).sum())(jnp.ones((8, 8))).block_until_ready()
print(len(hits))
"""


def test_compilation_cache_is_reused_by_a_second_process(tmp_path):
    import subprocess
    import sys

    def run() -> int:
        out = subprocess.run([sys.executable, "-c", _COMPILE_TWICE, str(tmp_path)], capture_output=True, text=True,
                             check=True)
        return int(out.stdout.strip().splitlines()[-1])

    assert run() == 0 and any(tmp_path.iterdir()), "the first process compiles and writes the cache"
    assert run() >= 1, "the second process loads the program from the cache"


def test_empty_compilation_cache_dir_turns_it_off(monkeypatch):
    calls = []
    monkeypatch.setattr(runtime.jax.config, "update", lambda *a: calls.append(a))
    runtime.enable_compilation_cache("")
    assert calls == []
    monkeypatch.setenv(runtime.COMPILATION_CACHE_ENV, "/somewhere")
    assert runtime.default_compilation_cache_dir() == "/somewhere"


_MALLOC_IN_USE = "from cpt_jax.parallel import runtime; print(runtime.malloc_in_use())"


def _malloc_of_a_process(preload: str | None) -> str:
    import os
    import subprocess
    import sys

    env = {k: v for k, v in os.environ.items() if k != "LD_PRELOAD"}
    if preload:
        env["LD_PRELOAD"] = preload
    out = subprocess.run([sys.executable, "-c", _MALLOC_IN_USE], env=env, capture_output=True, text=True, check=True)
    return out.stdout.strip()


def test_malloc_in_use_sees_a_preloaded_tcmalloc_and_glibc_without_it():
    assert _malloc_of_a_process(None) == "glibc"
    lib = runtime.find_tcmalloc()
    if lib is None:
        pytest.skip("no tcmalloc installed (apt-get install libtcmalloc-minimal4)")
    assert _malloc_of_a_process(lib) == "tcmalloc"


def test_malloc_in_use_is_unknown_without_process_maps(tmp_path):
    assert runtime.malloc_in_use(str(tmp_path / "absent")) == "unknown"


def test_malloc_advice_names_the_library_only_for_xla_cpu_on_glibc(monkeypatch):
    monkeypatch.setattr(runtime, "malloc_in_use", lambda: "glibc")
    monkeypatch.setattr(runtime, "find_tcmalloc", lambda: "libtcmalloc_minimal.so.4")
    assert "LD_PRELOAD=libtcmalloc_minimal.so.4 (launch" in runtime.malloc_advice("cpu")
    assert runtime.malloc_advice("gpu") is None and runtime.malloc_advice("tpu") is None
    monkeypatch.setattr(runtime, "find_tcmalloc", lambda: None)
    assert "apt-get install libtcmalloc-minimal4" in runtime.malloc_advice("cpu")
    monkeypatch.setattr(runtime, "malloc_in_use", lambda: "tcmalloc")
    assert runtime.malloc_advice("cpu") is None
