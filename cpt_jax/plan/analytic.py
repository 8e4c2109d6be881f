"""Closed-form guesses of a layout's memory and step time, to choose what the search compiles.

Coarse by design (the compiled program gives the numbers the plan reports); what matters is that
they order layouts the way the compiler does: state sharded over fsdp x tensor, activations of one
GradCache chunk, weights gathered again for every pass over every chunk.

Per device, with r rows per batch shard per chunk, T = r (len_x + len_y) tokens, a bytes per
activation (2 for bfloat16), d = d_model, m = d_mlp / tensor, h = heads / tensor:
  state   16 bytes per parameter / (fsdp x tensor)   (float32 parameters, AdamW moments, gradients)
  layer   T (4 d + 4 d / tensor + 2 m) a + h r (len_x^2 + len_y^2) 4   (what one layer keeps)
  saved   remat none: L layers; dots: L x T (2 d + m) a; full: L x T d a; plus one layer working
  gathered one layer's float32 weights / tensor, twice (the next layer's arrives early)
  loss    embeddings and their gradients N d 4 x 6 / shards, logits (N / shards) N 4 x 4
Time: the FLOPs of forward, backward and the recomputations at peak, against the weight gathers
(fsdp), gradient reduction and tensor-parallel activation all-reduces at the link bandwidth.
"""

from __future__ import annotations

from cpt_jax.model import ModelConfig
from cpt_jax.plan.hardware import Accelerator
from cpt_jax.plan.spec import Layout, PlanSpec


def _rows_and_tokens(spec: PlanSpec, layout: Layout) -> tuple[float, float]:
    r = (layout.chunk or spec.global_batch) / layout.batch_shards
    fill = spec.pack_fill if spec.pack_sequences else 1.0
    return r, r * (spec.len_x + spec.len_y) * fill


def _layer_params(model: ModelConfig, params: int) -> float:
    embeddings = model.vocab_size * model.d_model + (model.max_len * model.d_model if model.position == "learned" else 0)
    return max(params - embeddings, 0) / model.num_layers


def memory_bytes(spec: PlanSpec, layout: Layout, params: int) -> float:
    """Bytes per device of the layout (module docstring)."""
    model, t = spec.model, layout.tensor
    a = 2 if model.dtype == "bfloat16" else 4
    d, m, h = model.d_model, model.d_mlp / t, max(model.num_heads / t, 1)
    r, tokens = _rows_and_tokens(spec, layout)
    state = 16 * params / (layout.fsdp * t)
    layer = tokens * (4 * d + 4 * d / t + 2 * m) * a + h * r * (spec.len_x**2 + spec.len_y**2) * 4
    saved = {"none": model.num_layers * layer, "dots": model.num_layers * tokens * (2 * d + m) * a,
             "full": model.num_layers * tokens * d * a}[layout.remat]
    gathered = 2 * 4 * _layer_params(model, params) / t
    n = spec.global_batch
    loss = 24 * n * d / layout.batch_shards + 16 * n * n / layout.batch_shards
    return state + saved + layer + gathered + loss


def seconds(spec: PlanSpec, layout: Layout, device: Accelerator, params: int, model_flops: float) -> float:
    """Seconds per step of the layout on `device` (module docstring)."""
    model, f, t, data = spec.model, layout.fsdp, layout.tensor, layout.data
    recompute = (1 if layout.remat != "none" else 0) + (1 if layout.chunk else 0)
    compute = model_flops * (3 + recompute) / 3 / spec.devices / device.peak_flops
    passes = 3 + recompute  # forward, backward (two products per weight), recomputed forwards
    chunks = spec.global_batch // layout.chunk if layout.chunk else 1
    weights = 4 * params / t
    gathers = 2 * passes * chunks * weights * (f - 1) / f  # two sides, every pass, every chunk
    reduce = weights * (f - 1) / f + 2 * weights / f * (data - 1) / data
    _, tokens = _rows_and_tokens(spec, layout)
    a = 2 if model.dtype == "bfloat16" else 4
    tensor = model.num_layers * passes * chunks * 2 * tokens * model.d_model * a * 2 * (t - 1) / t
    across = bool(device.node_size) and spec.devices > device.node_size
    comm = (gathers + reduce) / device.link_for(across) + tensor / device.link_for(t > (device.node_size or t))
    traffic = 2 * passes * chunks * weights / device.hbm_bandwidth  # every pass reads the gathered weights
    return max(compute, comm, traffic)
