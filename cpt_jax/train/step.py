"""The jitted train step: encode both sides, sharded InfoNCE, AdamW update, temperature projection."""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp
import optax
from jax.sharding import Mesh

from cpt_jax.loss import sharded_contrastive_loss
from cpt_jax.loss.gradcache import gradcache_value_and_grad
from cpt_jax.model import ModelConfig, embed
from cpt_jax.parallel.mesh import BATCH_AXES
from cpt_jax.parallel.rules import Rules, batch_sharding
from cpt_jax.train.state import TemperatureConfig, TrainState

Array = jax.Array
Batch = dict[str, Array]
BATCH_KEYS = ("x_tokens", "x_mask", "y_tokens", "y_mask")


@dataclasses.dataclass(frozen=True)
class StepContext:
    """Everything the step closes over; all static for jit."""

    model: ModelConfig
    temperature: TemperatureConfig
    tx: optax.GradientTransformation
    mesh: Mesh
    rules: Rules
    seed: int
    grad_cache_chunks: int = 1  # >1: GradCache over this many chunks of the global batch


def loss_fn(params: Any, batch: Batch, dropout_rng: Array | None, ctx: StepContext) -> tuple[Array, dict[str, Array]]:
    """Symmetric InfoNCE of one global batch. batch values: [global_batch, seq] int32."""
    rx, ry = (None, None) if dropout_rng is None else jax.random.split(dropout_rng)
    x = embed(params["encoder"], ctx.model, batch["x_tokens"], batch["x_mask"], rx)
    y = embed(params["encoder"], ctx.model, batch["y_tokens"], batch["y_mask"], ry)
    return sharded_contrastive_loss(x, y, params["log_temperature"], ctx.mesh, BATCH_AXES)


def _value_and_grad(params: Any, batch: Batch, dropout_rng: Array | None, ctx: StepContext) -> tuple[tuple[Array, dict[str, Array]], Any]:
    if ctx.grad_cache_chunks == 1:
        return jax.value_and_grad(loss_fn, has_aux=True)(params, batch, dropout_rng, ctx)
    num_shards = 1
    for axis in BATCH_AXES:
        num_shards *= ctx.mesh.shape[axis]
    return gradcache_value_and_grad(
        lambda p, t, m, r: embed(p["encoder"], ctx.model, t, m, r),
        lambda x, y, p: sharded_contrastive_loss(x, y, p["log_temperature"], ctx.mesh, BATCH_AXES),
        params,
        batch,
        num_shards,
        ctx.grad_cache_chunks,
        dropout_rng,
    )


def _train_step(state: TrainState, batch: Batch, ctx: StepContext, learning_rate: Callable[[Array], Array]) -> tuple[TrainState, dict[str, Array]]:
    dropout_rng = None
    if ctx.model.dropout > 0:
        # A function of (seed, step) alone: restarts and re-shardings see the same masks.
        dropout_rng = jax.random.fold_in(jax.random.key(ctx.seed), state.step)
    (loss, metrics), grads = _value_and_grad(state.params, batch, dropout_rng, ctx)
    grad_norm = optax.tree.norm(grads)
    updates, opt_state = ctx.tx.update(grads, state.opt_state, state.params)
    params = optax.apply_updates(state.params, updates)
    params["log_temperature"] = jnp.clip(
        params["log_temperature"], ctx.temperature.minimum, ctx.temperature.maximum
    )
    # A non-finite loss or gradient skips the update: parameters and optimizer state stay as
    # they were (the step counter, and so the data stream, moves on).
    finite = jnp.isfinite(loss) & jnp.isfinite(grad_norm)
    keep = lambda new, old: jnp.where(finite, new, old)  # noqa: E731
    params = jax.tree.map(keep, params, state.params)
    opt_state = jax.tree.map(keep, opt_state, state.opt_state)
    metrics = {
        **metrics,
        "loss": loss,
        "temperature": jnp.exp(params["log_temperature"]),
        "grad_norm": grad_norm,
        "learning_rate": learning_rate(state.step),
        "tokens": jnp.sum(batch["x_mask"]) + jnp.sum(batch["y_mask"]),
        "nonfinite": 1 - finite.astype(jnp.int32),
    }
    return TrainState(step=state.step + 1, params=params, opt_state=opt_state), metrics


def make_train_step(
    ctx: StepContext, shardings: TrainState, learning_rate: Callable[[Array], Array]
) -> Callable[[TrainState, Batch], tuple[TrainState, dict[str, Array]]]:
    """The compiled step: state donated, batch split over the data axes, metrics replicated."""
    data = batch_sharding(ctx.mesh, BATCH_AXES)
    jitted = jax.jit(
        lambda state, batch: _train_step(state, batch, ctx, learning_rate),
        in_shardings=(shardings, {k: data for k in BATCH_KEYS}),
        out_shardings=(shardings, None),
        donate_argnums=(0,),
    )

    def step(state: TrainState, batch: Batch) -> tuple[TrainState, dict[str, Array]]:
        # Trace under the mesh and rules so the model's activation constraints resolve.
        with jax.set_mesh(ctx.mesh), nn.logical_axis_rules(list(ctx.rules)):
            return jitted(state, batch)

    def lower(state: TrainState, batch: Batch) -> jax.stages.Lowered:
        """AOT lowering (for cost and memory analysis) under the same contexts."""
        with jax.set_mesh(ctx.mesh), nn.logical_axis_rules(list(ctx.rules)):
            return jitted.lower(state, batch)

    step.lower = lower  # type: ignore[attr-defined]
    return step
