"""The process runtime: distributed initialisation, cross-process barriers, the persistent
compilation cache, and which malloc serves XLA:CPU.

Faults between processes end in bounded time rather than a hang:
* an unreachable coordinator: `TimeoutError` naming the address after `initialization_timeout_s`;
* a process that never joins: every other process aborts after `initialization_timeout_s`;
* a process that dies or freezes later: its peers' collectives fail at once when its sockets
  close, and JAX's coordination service, which stops hearing its heartbeat, terminates every
  other process within about `heartbeat_timeout_s` (exit code 134, "another task died").
"""

from __future__ import annotations

import ctypes.util
import os
import socket
import time

import jax
from jax.experimental import multihost_utils

# Environment variables by which a cluster announces a multi-process job; jax.distributed
# reads the details (coordinator, process count and id) itself on these platforms.
_CLUSTER_HINTS = ("SLURM_NTASKS", "TPU_WORKER_HOSTNAMES", "MEGASCALE_COORDINATOR_ADDRESS", "JOBSET_NAME")

# Cluster schedulers start the processes of one job up to minutes apart.
DEFAULT_INITIALIZATION_TIMEOUT_S = 300
# Heartbeats come from a background thread, so long compiles or saves do not miss them; a
# dead peer is noticed after at most this long.
DEFAULT_HEARTBEAT_TIMEOUT_S = 60
_PROBE_INTERVAL_S = 1.0

# Compiled XLA programs persist here unless $CPT_JAX_COMPILATION_CACHE or a flag says otherwise.
COMPILATION_CACHE_ENV = "CPT_JAX_COMPILATION_CACHE"


# Mallocs that keep freed pages for reuse. On glibc malloc, XLA:CPU's temporaries of every step
# arrive as fresh pages that the kernel faults in and zeroes again, a measurable share of every
# step (bench/README.md, "The allocator", has the numbers). The
# price: a step dispatched before the previous one has released its temporaries takes new ones,
# so up to two steps' temporaries stay resident.
POOL_MALLOCS = ("tcmalloc", "jemalloc")
TCMALLOC_LIBRARIES = ("tcmalloc_minimal", "tcmalloc")  # Debian/Ubuntu: libtcmalloc-minimal4, google-perftools


def malloc_in_use(maps_path: str = "/proc/self/maps") -> str:
    """"tcmalloc" or "jemalloc" when one is loaded into this process (LD_PRELOAD), "glibc" when
    neither is, "unknown" where the process's mappings cannot be read (not Linux)."""
    try:
        with open(maps_path) as f:
            maps = f.read()
    except OSError:
        return "unknown"
    return next((name for name in POOL_MALLOCS if f"/lib{name}" in maps), "glibc")


def find_tcmalloc() -> str | None:
    """The file name (as the dynamic loader resolves it) of an installed tcmalloc, or None."""
    return next(filter(None, map(ctypes.util.find_library, TCMALLOC_LIBRARIES)), None)


def malloc_advice(backend: str) -> str | None:
    """One line naming the faster malloc when XLA:CPU runs on glibc's; None otherwise (other
    backends keep their arrays in device memory, so the host malloc does not matter there)."""
    if backend != "cpu" or malloc_in_use() != "glibc":
        return None
    lib = find_tcmalloc()
    fix = f"LD_PRELOAD={lib}" if lib else "LD_PRELOAD=libtcmalloc_minimal.so.4 after apt-get install libtcmalloc-minimal4"
    return (f"note: XLA:CPU runs on glibc malloc, which hands every step fresh pages to fault in (bench/README.md, "
            f"\"The allocator\"); for faster steps at up to twice the temporary memory, start the "
            f"process with {fix} (launch/local.sh does).")


def print_malloc_advice() -> None:
    """Prints malloc_advice for this process's backend, once per job (process 0). Initialises the
    backend, so call it after `initialize`."""
    advice = malloc_advice(jax.default_backend())
    if advice and jax.process_index() == 0:
        print(advice, flush=True)


def default_compilation_cache_dir() -> str:
    return os.environ.get(COMPILATION_CACHE_ENV, os.path.join(os.path.expanduser("~"), ".cache", "cpt_jax", "xla"))


def enable_compilation_cache(path: str, min_compile_time_s: float = 1.0) -> None:
    """Keeps every compiled program that took over min_compile_time_s in `path` ("" turns the cache off), so
    a resume, a restart after preemption or a second run of the same shapes loads the train step
    instead of compiling it again. JAX keys entries by program, devices and versions, and writes
    them atomically, so processes of one job may share a directory. Call before the first compile."""
    if not path:
        return
    jax.config.update("jax_compilation_cache_dir", path)
    jax.config.update("jax_persistent_cache_min_compile_time_secs", min_compile_time_s)


def initialize(
    coordinator_address: str | None = None,
    num_processes: int | None = None,
    process_id: int | None = None,
    *,
    initialization_timeout_s: int = DEFAULT_INITIALIZATION_TIMEOUT_S,
    heartbeat_timeout_s: int = DEFAULT_HEARTBEAT_TIMEOUT_S,
) -> None:
    """Joins the distributed job before any device is used.

    Explicit arguments (local multi-process runs, custom clusters) win; otherwise a SLURM,
    TPU-VM or Kubernetes (JobSet) environment is detected and JAX configures itself; with
    neither, this is a single-process run and nothing happens (CPT_JAX_DISTRIBUTED=1 forces
    the automatic path). CPU processes talk over gloo.

    initialization_timeout_s bounds the whole join (all processes registered); with an explicit
    address, processes other than 0 first wait that long for the coordinator to accept
    connections and raise TimeoutError naming it if it never does. heartbeat_timeout_s is how
    long a silent process counts as alive before all the others are stopped.
    """
    explicit = coordinator_address is not None
    if explicit and (num_processes is None or process_id is None):
        raise ValueError("--coordinator_address needs --num_processes and --process_id too.")
    if min(initialization_timeout_s, heartbeat_timeout_s) <= 0:
        raise ValueError(
            f"initialization_timeout_s={initialization_timeout_s} and heartbeat_timeout_s="
            f"{heartbeat_timeout_s} must be positive (seconds)."
        )
    if not explicit and not _in_cluster():
        return
    if os.environ.get("JAX_PLATFORMS", "").startswith("cpu") or explicit:
        jax.config.update("jax_cpu_collectives_implementation", "gloo")
    if not explicit:
        print(f"joining the cluster's distributed job (waiting up to {initialization_timeout_s} s "
              "for every process)", flush=True)
        jax.distributed.initialize(
            initialization_timeout=initialization_timeout_s, heartbeat_timeout_seconds=heartbeat_timeout_s
        )
        return
    print(f"process {process_id} of {num_processes} joining via the coordinator at {coordinator_address} "
          f"(waiting up to {initialization_timeout_s} s for every process)", flush=True)
    remaining = float(initialization_timeout_s)
    if process_id != 0:  # process 0 hosts the coordinator itself
        remaining = wait_for_coordinator(coordinator_address, initialization_timeout_s)
    jax.distributed.initialize(
        coordinator_address,
        num_processes=num_processes,
        process_id=process_id,
        initialization_timeout=max(1, int(remaining)),
        heartbeat_timeout_seconds=heartbeat_timeout_s,
    )


def wait_for_coordinator(address: str, timeout_s: float) -> float:
    """Waits until `address` (HOST:PORT) accepts TCP connections; returns the seconds left.

    JAX itself would abort the process from C++ after its timeout with only "Deadline
    Exceeded"; this fails first, as a Python error that names the address and the fix.
    """
    host, _, port = address.rpartition(":")
    host = host.strip("[]")  # [::1]:1234
    if not host or not port.isdigit():
        raise ValueError(f"coordinator address {address!r} is not HOST:PORT (e.g. localhost:12345 or 10.0.0.1:1234).")
    deadline = time.monotonic() + timeout_s
    while True:
        left = deadline - time.monotonic()
        try:
            with socket.create_connection((host, int(port)), timeout=max(0.1, min(5.0, left))):
                return deadline - time.monotonic()
        except OSError as e:  # refused, unreachable, or the name does not resolve (yet)
            last = e
        left = deadline - time.monotonic()
        if left <= 0:
            raise TimeoutError(
                f"No coordinator answered at {address} within {timeout_s:g} s (last error: {last}). "
                "Start process 0 with the same --coordinator_address (it hosts the coordinator), check that "
                f"{host}:{port} is reachable from this machine (host name, firewall), or raise "
                "initialization_timeout_s if the processes start further apart."
            )
        time.sleep(min(_PROBE_INTERVAL_S, left))


def _in_cluster() -> bool:
    if os.environ.get("CPT_JAX_DISTRIBUTED") == "1" or os.path.exists("/dev/accel0"):
        # Forced, or a Cloud TPU VM: its topology lives in the metadata server, not the env.
        return True
    if os.environ.get("SLURM_NTASKS", "1") != "1":
        return True
    return any(os.environ.get(k) for k in _CLUSTER_HINTS if k != "SLURM_NTASKS")


def barrier(name: str) -> None:
    """All processes wait here; a no-op in a single-process run."""
    if jax.process_count() > 1:
        try:
            multihost_utils.sync_global_devices(name)
        except Exception as e:  # noqa: BLE001 - the collective backends report a lost peer as a generic error
            raise RuntimeError(
                f"Barrier {name!r} failed: {e}\nAnother process most likely died (see its log). This one stops "
                "too; rerun the job to resume from the latest checkpoint."
            ) from e
