"""Step time of a compiled step on an accelerator: a roofline of its ops and collectives.

Per device (the compiled program is one device's, plan/hlo.py):
  ops_s     = sum over kernels of runs x max(FLOPs / peak, bytes / HBM bandwidth)
              (each kernel is bound by its compute or by its memory traffic, whichever is slower)
  comm_s    = sum over collectives of runs x wire bytes / link bandwidth (the node's link, or the
              network for a GPU collective whose group leaves the node: plan/hardware.py)
  step_s    = max(ops_s, comm_s)            collectives overlapped with compute (XLA schedules them
                                           asynchronously on TPU and GPU)
  serial_s  = ops_s + comm_s                no overlap: the bound from above
MFU = model FLOPs of the step (model/flops.py: forward + backward, without the recomputation of
remat or GradCache) / (step_s x devices x peak); pairs/s = global batch / step_s; days = the
target's pairs / pairs/s / 86400.
"""

from __future__ import annotations

import dataclasses

from cpt_jax.model import ModelConfig
from cpt_jax.model.flops import train_step_flops
from cpt_jax.plan.hardware import Accelerator
from cpt_jax.plan.hlo import Program

BILLION = 1e9


@dataclasses.dataclass(frozen=True)
class Estimate:
    """Seconds per step by term, the predicted step, and what follows from it."""

    flops_s: float  # all FLOPs at peak (the compute floor)
    hbm_s: float  # all traffic at HBM bandwidth (the memory floor)
    ops_s: float
    comm_s: float
    step_s: float
    serial_s: float
    mfu: float
    pairs_per_s: float
    days: float  # to the target pairs (or to a billion pairs)

    @property
    def bound(self) -> str:
        """What limits the step: "compute", "memory" or "collectives"."""
        if self.comm_s >= self.ops_s:
            return "collectives"
        return "compute" if self.flops_s >= self.hbm_s else "memory"


def model_step_flops(model: ModelConfig, batch: int, len_x: int, len_y: int, pack_fill: float | None = None) -> float:
    """Model FLOPs of one step over every device; packed sides count pack_fill of their length."""
    if pack_fill is not None:
        len_x, len_y = max(1, round(len_x * pack_fill)), max(1, round(len_y * pack_fill))
    return float(train_step_flops(model, batch, len_x, len_y))


def comm_seconds(program: Program, device: Accelerator) -> float:
    """Seconds per step of the program's collectives at the device's link bandwidths."""
    return sum(c.runs * c.wire / device.link_for(c.crosses(device.node_size)) for c in program.collectives)


def estimate(
    program: Program,
    device: Accelerator,
    devices: int,
    model_flops: float,
    batch: int,
    target_pairs: float = 0.0,
) -> Estimate:
    """The roofline of `program` (one device's) on `devices` of `device` (module docstring)."""
    ops_s = sum(op.runs * max(op.flops / device.peak_flops, op.bytes / device.hbm_bandwidth) for op in program.ops)
    comm_s = comm_seconds(program, device)
    step_s = max(ops_s, comm_s)
    if step_s <= 0:
        raise ValueError("the compiled program has no ops to time; compile a train step (plan/compile.py).")
    pairs_per_s = batch / step_s
    return Estimate(
        flops_s=program.flops / device.peak_flops,
        hbm_s=program.traffic / device.hbm_bandwidth,
        ops_s=ops_s,
        comm_s=comm_s,
        step_s=step_s,
        serial_s=ops_s + comm_s,
        mfu=model_flops / (step_s * devices * device.peak_flops),
        pairs_per_s=pairs_per_s,
        days=(target_pairs or BILLION) / pairs_per_s / 86400,
    )
