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

from cpt_jax.batch import PairBatch
from cpt_jax.loss import LossConfig, sharded_contrastive_loss
from cpt_jax.model import LoraConfig, ModelConfig, embed_side, real_tokens
from cpt_jax.parallel.mesh import BATCH_AXES
from cpt_jax.parallel.rules import Rules, batch_sharding
from cpt_jax.train.gradcache import EncodeFn, encode_grouped, gradcache_value_and_grad, negatives_key
from cpt_jax.train.state import TemperatureConfig, TrainState, encoder_of

Array = jax.Array


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
    loss: LossConfig = LossConfig()  # false-negative masking (reads PairBatch.ids)
    lora: LoraConfig = LoraConfig()  # rank > 0: adapters train, the base is TrainState.frozen


def _encode(ctx: StepContext, frozen: Any = None) -> EncodeFn:
    """(trained params, side, rng) -> embeddings; the frozen base (LoRA) is closed over, so it is
    an input of the differentiated function, never differentiated."""
    return lambda p, side, rng: embed_side(encoder_of(p, frozen, ctx.lora), ctx.model, side, rng)


def _loss_of_embeddings(
    x: Array, y: Array, negatives: Array | None, params: Any, batch: PairBatch, ctx: StepContext
) -> tuple[Array, dict[str, Array]]:
    """The loss of the full batch's embeddings (plain step and GradCache alike): x, y [N, d],
    negatives [N, n, d] or None; the batch gives the negatives' validity and the content ids."""
    valid = None if negatives is None else batch.negatives.valid
    return sharded_contrastive_loss(
        x, y, params["log_temperature"], ctx.mesh, BATCH_AXES, negatives, valid, batch.ids, ctx.loss
    )


def loss_fn(
    params: Any, batch: PairBatch, dropout_rng: Array | None, ctx: StepContext, frozen: Any = None
) -> tuple[Array, dict[str, Array]]:
    """Symmetric InfoNCE of one global batch (cpt_jax.batch.PairBatch: padded sides [global_batch,
    seq] or packed sides [groups, rows, seq], optional hard negatives [global_batch, n, seq])."""
    rx, ry = (None, None) if dropout_rng is None else jax.random.split(dropout_rng)
    encode = _encode(ctx, frozen)
    x = encode(params, batch.x, rx)
    y = encode(params, batch.y, ry)
    negatives = None
    if batch.negatives is not None:
        negatives = encode_grouped(encode, params, batch.negatives.side, negatives_key(dropout_rng))
    return _loss_of_embeddings(x, y, negatives, params, batch, ctx)


def _value_and_grad(
    params: Any, batch: PairBatch, dropout_rng: Array | None, ctx: StepContext, frozen: Any = None
) -> tuple[tuple[Array, dict[str, Array]], Any]:
    """((loss, metrics), gradient with respect to `params` alone: with LoRA, the adapters and tau)."""
    if ctx.grad_cache_chunks == 1:
        return jax.value_and_grad(loss_fn, has_aux=True)(params, batch, dropout_rng, ctx, frozen)
    num_shards = 1
    for axis in BATCH_AXES:
        num_shards *= ctx.mesh.shape[axis]
    return gradcache_value_and_grad(
        _encode(ctx, frozen),
        lambda x, y, n, p: _loss_of_embeddings(x, y, n, p, batch, ctx),
        params,
        batch,
        num_shards,
        ctx.grad_cache_chunks,
        dropout_rng,
    )


def _train_step(state: TrainState, batch: PairBatch, ctx: StepContext, learning_rate: Callable[[Array], Array]) -> tuple[TrainState, dict[str, Array]]:
    dropout_rng = None
    if ctx.model.dropout > 0 or (ctx.lora.enabled and ctx.lora.dropout > 0):
        # A function of (seed, step) alone: restarts and re-shardings see the same masks.
        dropout_rng = jax.random.fold_in(jax.random.key(ctx.seed), state.step)
    (loss, metrics), grads = _value_and_grad(state.params, batch, dropout_rng, ctx, state.frozen)
    grad_norm = optax.tree.norm(grads)

    def update(params: Any, opt_state: Any) -> tuple[Any, Any]:
        updates, opt_state = ctx.tx.update(grads, opt_state, params)
        params = optax.apply_updates(params, updates)
        params["log_temperature"] = jnp.clip(
            params["log_temperature"], ctx.temperature.minimum, ctx.temperature.maximum
        )
        return params, opt_state

    # A non-finite loss or gradient skips the update: parameters and optimizer state stay as
    # they were (the step counter, and so the data stream, moves on). A cond, not a where over
    # old and new values: the donated state is then updated in place instead of being copied
    # first (bench/README.md measures the saving).
    finite = jnp.isfinite(loss) & jnp.isfinite(grad_norm)
    params, opt_state = jax.lax.cond(finite, update, lambda p, o: (p, o), state.params, state.opt_state)
    metrics = {
        **metrics,
        "loss": loss,
        "temperature": jnp.exp(params["log_temperature"]),
        "grad_norm": grad_norm,
        "learning_rate": learning_rate(state.step),
        "tokens": sum(real_tokens(side) for side in batch.sides().values()),
        "nonfinite": 1 - finite.astype(jnp.int32),
    }
    return TrainState(step=state.step + 1, params=params, opt_state=opt_state, frozen=state.frozen), metrics


def make_train_step(
    ctx: StepContext, shardings: TrainState, learning_rate: Callable[[Array], Array]
) -> Callable[[TrainState, PairBatch], tuple[TrainState, dict[str, Array]]]:
    """The compiled step: state donated, every array of the batch split over the data axes along
    its first (row or group) dimension, metrics replicated."""
    data = batch_sharding(ctx.mesh, BATCH_AXES)
    jitted = jax.jit(
        lambda state, batch: _train_step(state, batch, ctx, learning_rate),
        in_shardings=(shardings, data),  # one sharding for every leaf of the batch
        out_shardings=(shardings, None),
        donate_argnums=(0,),
    )

    def step(state: TrainState, batch: PairBatch) -> tuple[TrainState, dict[str, Array]]:
        # Trace under the mesh and rules so the model's activation constraints resolve.
        with jax.set_mesh(ctx.mesh), nn.logical_axis_rules(list(ctx.rules)):
            return jitted(state, batch)

    def lower(state: TrainState, batch: PairBatch) -> jax.stages.Lowered:
        """AOT lowering (for cost and memory analysis) under the same contexts."""
        with jax.set_mesh(ctx.mesh), nn.logical_axis_rules(list(ctx.rules)):
            return jitted.lower(state, batch)

    step.lower = lower  # type: ignore[attr-defined]
    return step
