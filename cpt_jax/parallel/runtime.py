"""The multi-process runtime: distributed initialisation and cross-process barriers."""

from __future__ import annotations

import os

import jax
from jax.experimental import multihost_utils

# Environment variables by which a cluster announces a multi-process job; jax.distributed
# reads the details (coordinator, process count and id) itself on these platforms.
_CLUSTER_HINTS = ("SLURM_NTASKS", "TPU_WORKER_HOSTNAMES", "MEGASCALE_COORDINATOR_ADDRESS", "JOBSET_NAME")


def initialize(coordinator_address: str | None = None, num_processes: int | None = None, process_id: int | None = None) -> None:
    """Joins the distributed job before any device is used.

    Explicit arguments (local multi-process runs, custom clusters) win; otherwise a SLURM,
    TPU-VM or Kubernetes (JobSet) environment is detected and JAX configures itself; with
    neither, this is a single-process run and nothing happens (CPT_JAX_DISTRIBUTED=1 forces
    the automatic path). CPU processes talk over gloo.
    """
    explicit = coordinator_address is not None
    if explicit and (num_processes is None or process_id is None):
        raise ValueError("--coordinator_address needs --num_processes and --process_id too.")
    if not explicit and not _in_cluster():
        return
    if os.environ.get("JAX_PLATFORMS", "").startswith("cpu") or explicit:
        jax.config.update("jax_cpu_collectives_implementation", "gloo")
    if explicit:
        jax.distributed.initialize(coordinator_address, num_processes=num_processes, process_id=process_id)
    else:
        jax.distributed.initialize()


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
        multihost_utils.sync_global_devices(name)
