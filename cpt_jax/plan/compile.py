"""The run's real train step compiled ahead of time for N devices, from abstract state and batches.

`train/run.build_run` creates the state on the devices, which a plan for a 175B model cannot do.
This module assembles the same run from the same functions (train/state.state_shardings and
abstract_train_state, train/step.StepContext and make_train_step, the mesh and rules of
parallel/), with `jax.ShapeDtypeStruct` leaves carrying the shardings, and lowers and compiles
`step.lower(state, batch)`: nothing is allocated. tests/plan/test_compile.py checks that its step
context equals build_run's, so the two cannot drift apart.

The devices are this process's CPU devices (`--xla_force_host_platform_device_count`, which the
CLI sets); the step is traced in the target's form (model/matmul.target_backend), compiled by
XLA:CPU. Compiled plans are cached in-process by (TrainConfig, devices, target, pack fill).
"""

from __future__ import annotations

import dataclasses
import math
import time
from typing import Any

import jax
import jax.numpy as jnp

from cpt_jax.batch import ContentIds, PackedSide, PaddedSide, PairBatch
from cpt_jax.data.packing import round_rows
from cpt_jax.model.matmul import target_backend
from cpt_jax.parallel.mesh import BATCH_AXES, batch_size_per_shard, make_mesh
from cpt_jax.parallel.rules import batch_sharding
from cpt_jax.plan.hlo import Program, read_program
from cpt_jax.train.config import TrainConfig, validate
from cpt_jax.train.optimizer import learning_rate
from cpt_jax.train.run import step_context
from cpt_jax.train.state import TrainState, abstract_train_state, state_shardings
from cpt_jax.train.step import StepContext, make_train_step

_CACHE: dict[tuple, CompiledPlan] = {}
# The plan never runs the program: LLVM's optimisation of the CPU code is skipped (a third less
# compile time); the HLO passes, buffer assignment and so the memory analysis are unchanged.
COMPILER_OPTIONS = {"xla_backend_optimization_level": 0}


@dataclasses.dataclass(frozen=True)
class StateBytes:
    """Bytes per device of the parameters (a LoRA run's frozen base included), the optimizer state
    and the gradients (which take the trained parameters' shardings), from the shardings of the
    abstract state."""

    params: int
    opt_state: int
    grads: int

    @property
    def total(self) -> int:
        return self.params + self.opt_state + self.grads


@dataclasses.dataclass(frozen=True)
class CompiledPlan:
    """One compiled layout, per device: state bytes; XLA's memory analysis (arguments = state +
    batch, outputs aliased to the donated state, temporaries = the peak of everything else, the
    gradients included); the program's collectives and ops; and how long it took."""

    state: StateBytes
    argument_bytes: int
    output_bytes: int
    alias_bytes: int
    temp_bytes: int
    program: Program
    lower_seconds: float
    compile_seconds: float

    @property
    def peak_bytes(self) -> int:
        """Live at once: the arguments, any output not aliased to one, and the temporaries."""
        return self.argument_bytes + self.output_bytes - self.alias_bytes + self.temp_bytes


def plan_devices(n: int) -> list:
    """The first n CPU devices, or a RuntimeError saying how to get them."""
    devices = jax.devices("cpu")
    if len(devices) < n:
        raise RuntimeError(
            f"this process has {len(devices)} CPU devices and the plan needs {n}; set "
            f"XLA_FLAGS=--xla_force_host_platform_device_count={n} before jax starts "
            "(python -m cpt_jax.plan does this itself)."
        )
    return devices[:n]


def abstract_state(ctx: StepContext) -> tuple[TrainState, TrainState]:
    """(state of ShapeDtypeStructs with shardings, the shardings), as build_run's new state."""
    shardings = state_shardings(ctx.model, ctx.temperature, ctx.tx, ctx.mesh, ctx.rules, ctx.lora)
    shapes = abstract_train_state(ctx.model, ctx.temperature, ctx.tx, ctx.lora)
    state = jax.tree.map(lambda a, s: jax.ShapeDtypeStruct(a.shape, a.dtype, sharding=s), shapes, shardings)
    return state, shardings


def abstract_batch(config: TrainConfig, mesh: jax.sharding.Mesh, chunks: int, pack_fill: float) -> PairBatch:
    """The global batch the step receives: padded sides [N, len] int32, or packed sides in
    G = batch shards x chunks groups of rows at `pack_fill` (data/packing.round_rows), and content
    ids [N, 2] when the loss masks duplicates."""
    n, sharding = config.global_batch_size, batch_sharding(mesh, BATCH_AXES)

    def leaf(*shape: int) -> jax.ShapeDtypeStruct:
        return jax.ShapeDtypeStruct(shape, jnp.int32, sharding=sharding)

    def side(seq: int) -> PaddedSide | PackedSide:
        if not config.pack_sequences:
            return PaddedSide(leaf(n, seq), leaf(n, seq))
        groups = math.prod(mesh.shape[a] for a in BATCH_AXES) * chunks
        per_group = n // groups
        rows = round_rows(max(1, math.ceil(per_group * pack_fill)), per_group)
        return PackedSide(leaf(groups, rows, seq), leaf(groups, rows, seq), leaf(groups, per_group))

    ids = ContentIds(leaf(n, 2), leaf(n, 2)) if config.loss.mask_duplicates else None
    return PairBatch(side(config.data.max_len_x), side(config.data.max_len_y), None, ids)


def state_bytes(state: TrainState) -> StateBytes:
    """Per-device bytes of an abstract state's leaves, from their shardings' shard shapes."""

    def local(tree: Any) -> int:
        leaves = jax.tree.leaves(tree)
        return sum(math.prod(x.sharding.shard_shape(x.shape)) * jnp.dtype(x.dtype).itemsize for x in leaves)

    trained = local(state.params)  # with LoRA the adapters; the frozen base has no gradient or moments
    return StateBytes(params=trained + local(state.frozen), opt_state=local(state.opt_state), grads=trained)


def compile_step(config: TrainConfig, num_devices: int, target: str, pack_fill: float = 0.5) -> CompiledPlan:
    """The step of `config` compiled for `num_devices` devices in the form of `target` ("tpu",
    "gpu", "cpu"); cached in-process. Errors name the setting to change (train/config.validate)."""
    key = (repr(config), num_devices, target, pack_fill)
    if key in _CACHE:
        return _CACHE[key]
    validate(config, num_devices, reads_data=False)
    mesh = make_mesh(config.mesh, plan_devices(num_devices))
    batch_size_per_shard(mesh, config.global_batch_size)
    if config.grad_cache_chunk_size:
        batch_size_per_shard(mesh, config.grad_cache_chunk_size)
    ctx = step_context(config, mesh)
    state, shardings = abstract_state(ctx)
    batch = abstract_batch(config, mesh, ctx.grad_cache_chunks, pack_fill)
    step = make_train_step(ctx, shardings, lambda s: learning_rate(config.optimizer, config.num_steps, s))
    start = time.perf_counter()
    with target_backend(target):
        lowered = step.lower(state, batch)
    lowered_at = time.perf_counter()
    compiled = lowered.compile(COMPILER_OPTIONS)
    done = time.perf_counter()
    stats = compiled.memory_analysis()
    plan = CompiledPlan(
        state=state_bytes(state),
        argument_bytes=int(stats.argument_size_in_bytes),
        output_bytes=int(stats.output_size_in_bytes),
        alias_bytes=int(stats.alias_size_in_bytes),
        temp_bytes=int(stats.temp_size_in_bytes),
        program=read_program(compiled.as_text()),
        lower_seconds=lowered_at - start,
        compile_seconds=done - lowered_at,
    )
    _CACHE[key] = plan
    return plan
