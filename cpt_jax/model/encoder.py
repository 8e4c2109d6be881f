"""The transformer encoder E of cpt-text / cpt-code, in Flax linen.

By default a pre-norm GPT-style stack (causal self-attention, as in the paper); ModelConfig's
architecture fields also give the BERT family (post-norm, bidirectional, embedding norm) and
the Llama / Qwen2 family (RMSNorm, rotary positions, gated MLP, grouped-query attention), so
Hugging Face checkpoints of those families load exactly (cpt_jax/interop). The module maps
token ids to the last layer's hidden states; pooling lives in pooling.py so the encoder stays
a plain function of (params, tokens, mask).

Every parameter carries logical axis names ("vocab", "embed", "heads", "kv_heads", "kv",
"mlp", "layers", "pos"); activations are constrained with "act_*" names. parallel/rules.py
maps both onto mesh axes, so sharding is a config table, not code.
"""

from __future__ import annotations

import functools
import math
from typing import Any, NamedTuple

import flax.linen as nn
import jax
import jax.numpy as jnp
from jax.ad_checkpoint import checkpoint_name

from cpt_jax.model.config import ModelConfig
from cpt_jax.model.lora import LoraConfig, project
from cpt_jax.model.matmul import matmul, token_matmul
from cpt_jax.model.pooling import take_tokens

Array = jax.Array

_dense_init = nn.initializers.normal(stddev=0.02)


def gelu_erf(x: Array) -> Array:
    """Exact GELU, x * Phi(x), written with erf as PyTorch and Hugging Face BERT do.

    jax.nn.gelu(approximate=False) uses erfc, which XLA:CPU evaluates more slowly (bench/kernels.py);
    the two agree within float32 rounding.
    """
    return 0.5 * x * (1.0 + jax.lax.erf(x * jnp.asarray(0.7071067811865476, x.dtype)))


_ACTIVATIONS = {
    "gelu_tanh": lambda x: nn.gelu(x, approximate=True),
    "gelu": gelu_erf,
    "silu": nn.silu,
}


def _param_init(names: tuple[str | None, ...], init: Any = _dense_init) -> Any:
    return nn.with_logical_partitioning(init, names)


def _constrain(x: Array, names: tuple[str | None, ...]) -> Array:
    # No-op unless the caller traces under a mesh and nn.logical_axis_rules.
    return nn.with_logical_constraint(x, names)


def attention_mask(mask: Array, causal: bool) -> Array:
    """Boolean attention mask [batch, 1, q_len, k_len] from a padding mask [batch, seq].

    Queries may attend to real keys only (and, if causal, to keys at or before themselves).
    """
    keys = mask.astype(bool)[:, None, None, :]
    if not causal:
        return keys
    seq = mask.shape[-1]
    return keys & jnp.tril(jnp.ones((seq, seq), bool))[None, None]


def packed_attention_mask(segments: Array, causal: bool) -> Array:
    """Boolean attention mask [batch, 1, seq, seq] for rows packed with several sequences.

    segments: [batch, seq] int, the sequence each token belongs to (-1: padding; a sequence's
    tokens contiguous). A token attends to the real tokens of its own sequence only (and, if
    causal, to those at or before itself); padding tokens attend to nothing.
    """
    same = (segments[:, :, None] == segments[:, None, :]) & (segments >= 0)[:, None, :]
    if causal:
        seq = segments.shape[-1]
        same = same & jnp.tril(jnp.ones((seq, seq), bool))[None]
    return same[:, None]


def segment_positions(segments: Array) -> Array:
    """Each token's position within its own sequence: segments [batch, seq] -> int32 [batch, seq]."""
    col = jnp.arange(segments.shape[-1])
    starts = jnp.concatenate([jnp.ones_like(segments[:, :1], bool), segments[:, 1:] != segments[:, :-1]], axis=1)
    return (col - jax.lax.cummax(jnp.where(starts, col, 0), axis=1)).astype(jnp.int32)


class Context(NamedTuple):
    """How every token attends: mask, bool [batch, 1, seq, seq] (attention_mask or
    packed_attention_mask); positions [batch, seq], each token's position within its sequence
    (None: 0..seq-1, one sequence per row)."""

    mask: Array
    positions: Array | None


class Queries(NamedTuple):
    """The tokens at which the last layer computes its output (EOS pooling).

    index: [groups, n] int, each a token of its group of batch // groups consecutive rows, as the
    group-local flat index row * seq + column (take_tokens); position: [groups * n, 1] int, the
    token's position within its sequence (for rotary queries); mask: bool [groups * n, 1, 1, seq],
    the keys each may attend to, in its own row (query_rows).
    """

    index: Array
    position: Array
    mask: Array


def query_rows(x: Array, index: Array) -> Array:
    """The row holding each query: x [batch, seq, ...], index [groups, n] -> [groups * n, seq, ...].

    With one query per row (groups = batch, n = 1) that is x itself, and no copy is made.
    """
    groups, n = index.shape
    if groups == x.shape[0] and n == 1:
        return x
    seq = x.shape[1]
    grouped = x.reshape(groups, -1, *x.shape[1:])
    rows = (index // seq).reshape(groups, n, *(1,) * (x.ndim - 1))
    return jnp.take_along_axis(grouped, rows, axis=1).reshape(groups * n, *x.shape[1:])


def make_queries(mask: Array, index: Array, causal: bool, segments: Array | None = None) -> Queries:
    """Queries at index [groups, n] (group-local flat token indices) of a batch with padding mask
    [batch, seq], or with segments [batch, seq] for packed rows (packed_attention_mask)."""
    if segments is None:
        segments = mask.astype(jnp.int32) - 1  # one sequence per row: 0 real, -1 padding
        positions = jnp.broadcast_to(jnp.arange(mask.shape[-1]), mask.shape)
    else:
        positions = segment_positions(segments)
    own = take_tokens(segments, index)  # [groups * n, 1]
    rows = query_rows(segments, index)  # [groups * n, seq]
    keys = (rows == own) & (rows >= 0)
    if causal:
        keys = keys & (jnp.arange(mask.shape[-1])[None, :] <= index.reshape(-1, 1) % mask.shape[-1])
    return Queries(index, take_tokens(positions, index), keys[:, None, None, :])


@functools.partial(jax.checkpoint, policy=jax.checkpoint_policies.save_only_these_names("attention_probs"))
def dot_product_attention(q: Array, k: Array, v: Array, mask: Array) -> Array:
    """softmax(q k^T / sqrt(head_dim), masked) v, with grouped keys/values.

    q: [batch, q_len, heads, head_dim]; k, v: [batch, k_len, kv_heads, head_dim] (heads a
    multiple of kv_heads, query head i reading kv head i // (heads / kv_heads)); mask: bool
    [batch, 1, q_len, k_len] -> [batch, q_len, heads, head_dim]. The same values as
    jax.nn.dot_product_attention's XLA path, but the backward pass keeps only the probabilities
    [batch, heads, q_len, k_len] besides q, k, v; autodiff of that function keeps three float32
    tensors of that shape and a boolean one.

    Heads-major: q, k and v are transposed once so that both products are plain batched
    [rows, head_dim] @ [head_dim, k_len] and [rows, k_len] @ [k_len, head_dim] products (a kv
    head's query groups stacked as rows). On XLA:CPU that is faster than contracting the
    token-major layouts in place (bench/README.md).
    """
    b, t, n, h = q.shape
    kv = k.shape[2]
    q = q.transpose(0, 2, 1, 3).reshape(b, kv, n // kv * t, h)
    # Logits and softmax in float32 at least (float64 stays float64, for the float64 references).
    acc = jnp.promote_types(q.dtype, jnp.float32)
    logits = matmul(q, k.transpose(0, 2, 3, 1), out_dtype=acc).reshape(b, n, t, -1)
    logits = logits * jnp.asarray(1 / math.sqrt(h), acc)
    # A large finite negative, not -inf: a fully masked (padding) query row stays finite.
    logits = jnp.where(mask, logits, jnp.asarray(-0.7 * float(jnp.finfo(acc).max), acc))
    probs = checkpoint_name(jax.nn.softmax(logits, axis=-1).astype(v.dtype), "attention_probs")
    out = matmul(probs.reshape(b, kv, n // kv * t, -1), v.transpose(0, 2, 1, 3))
    return out.reshape(b, n, t, h).transpose(0, 2, 1, 3)


def rotary(x: Array, theta: float, positions: Array | None = None) -> Array:
    """Rotary position embedding, Hugging Face rotate_half layout.

    x: [batch, seq, heads, head_dim] -> same shape and dtype, at positions [batch, seq] (default
    0..seq-1). Feature i pairs with i + head_dim/2 (not 2i with 2i+1), so HF Llama / Qwen2 q and k
    weights need no permutation.
    """
    seq, dim = x.shape[1], x.shape[-1]
    if positions is None:
        positions = jnp.arange(seq)[None, :]
    inv_freq = 1.0 / (theta ** (jnp.arange(0, dim, 2, dtype=jnp.float32) / dim))
    angles = positions.astype(jnp.float32)[..., None] * inv_freq  # [batch or 1, seq, dim/2]
    cos, sin = jnp.cos(angles)[:, :, None, :], jnp.sin(angles)[:, :, None, :]
    x1, x2 = jnp.split(x.astype(jnp.float32), 2, axis=-1)
    return jnp.concatenate([x1 * cos - x2 * sin, x2 * cos + x1 * sin], axis=-1).astype(x.dtype)


class SelfAttention(nn.Module):
    config: ModelConfig
    lora: LoraConfig | None = None

    @nn.compact
    def __call__(self, x: Array, context: Context, deterministic: bool, queries: Queries | None = None) -> Array:
        """x: [batch, seq, d_model] -> [batch, seq, d_model], or with queries the outputs at those
        tokens only, [groups * n, 1, d_model] (keys and values still from every token)."""
        cfg = self.config
        dt = cfg.compute_dtype
        qkv = []
        for name, heads, head_axis in (
            ("query", cfg.num_heads, "heads"),
            ("key", cfg.kv_heads, "kv_heads"),
            ("value", cfg.kv_heads, "kv_heads"),
        ):
            # Explicit params + token_matmul (not DenseGeneral): its flat-then-reshape init clashes
            # with 3-d logical constraints when a mesh is active.
            shape = (cfg.d_model, heads, cfg.head_dim)
            kernel = self.param(f"{name}_kernel", _param_init(("embed", head_axis, "kv")), shape)
            queries_only = name == "query" and queries is not None
            inputs = (take_tokens(x, queries.index) if queries_only else x).astype(dt)
            bias = None
            if cfg.qkv_bias:
                bias = self.param(f"{name}_bias", _param_init((head_axis, "kv"), nn.initializers.zeros), shape[1:])
                bias = bias.astype(dt)
            t = project(self, f"{name}_kernel", inputs, kernel.astype(dt), deterministic, bias)
            if cfg.position == "rope" and name != "value":
                t = rotary(t, cfg.rope_theta, queries.position if queries_only else context.positions)
            if queries is not None and name != "query":
                t = query_rows(t, queries.index)  # each query's own row of keys and values
            qkv.append(_constrain(t, ("act_batch", "act_length", f"act_{head_axis}", "act_kv")))
        out = dot_product_attention(*qkv, context.mask if queries is None else queries.mask)
        kernel = self.param("out_kernel", _param_init(("heads", "kv", "embed")), (cfg.num_heads, cfg.head_dim, cfg.d_model))
        batch, seq = out.shape[:2]
        bias = None
        if cfg.out_bias:
            bias = self.param("out_bias", _param_init(("embed",), nn.initializers.zeros), (cfg.d_model,)).astype(dt)
        out = project(self, "out_kernel", out.reshape(batch, seq, -1), kernel.astype(dt).reshape(-1, cfg.d_model),
                      deterministic, bias)
        return nn.Dropout(cfg.dropout)(out, deterministic=deterministic)


class Dense(nn.Module):
    """x [batch, seq, d_in] -> [batch, seq, features]; nn.Dense's parameters ("kernel", "bias"), token_matmul's product."""

    features: int
    use_bias: bool
    dtype: Any
    names: tuple[str, str]
    lora: LoraConfig | None = None

    @nn.compact
    def __call__(self, x: Array, deterministic: bool = True) -> Array:
        kernel = self.param("kernel", _param_init(self.names), (x.shape[-1], self.features))
        bias = None
        if self.use_bias:
            init = _param_init(self.names[1:], nn.initializers.zeros)
            bias = self.param("bias", init, (self.features,)).astype(self.dtype)
        return project(self, "kernel", x.astype(self.dtype), kernel.astype(self.dtype), deterministic, bias)


class Mlp(nn.Module):
    """wo(act(wi x)), or with gated_mlp wo(act(wi_gate x) * wi x) (HF Llama: gate_proj, up_proj, down_proj)."""

    config: ModelConfig
    lora: LoraConfig | None = None

    @nn.compact
    def __call__(self, x: Array, deterministic: bool) -> Array:
        """x: [batch, seq, d_model] -> [batch, seq, d_model]."""
        cfg = self.config

        def dense(features: int, names: tuple[str, str], name: str) -> Any:
            layer = Dense(features, cfg.mlp_bias, cfg.compute_dtype, names, self.lora, name=name)
            return lambda h: layer(h, deterministic)

        # Recomputed from its input in the backward pass: autodiff of the formula keeps the
        # activation's internal factors, extra [tokens, d_mlp] buffers per layer (bench/README.md).
        activation = jax.checkpoint(_ACTIVATIONS[cfg.activation])
        h = activation(dense(cfg.d_mlp, ("embed", "mlp"), "wi_gate" if cfg.gated_mlp else "wi")(x))
        if cfg.gated_mlp:
            h = h * dense(cfg.d_mlp, ("embed", "mlp"), "wi")(x)
        h = _constrain(h, ("act_batch", "act_length", "act_mlp"))
        out = dense(cfg.d_model, ("mlp", "embed"), "wo")(h)
        return nn.Dropout(cfg.dropout)(out, deterministic=deterministic)


def _norm(cfg: ModelConfig, name: str) -> nn.Module:
    scale_init = _param_init(("embed",), nn.initializers.ones)
    if cfg.norm == "rmsnorm":
        return nn.RMSNorm(epsilon=cfg.layer_norm_eps, dtype=cfg.compute_dtype, scale_init=scale_init, name=name)
    return nn.LayerNorm(
        epsilon=cfg.layer_norm_eps,
        dtype=cfg.compute_dtype,
        scale_init=scale_init,
        bias_init=_param_init(("embed",), nn.initializers.zeros),
        name=name,
    )


class Block(nn.Module):
    """Residual block. Pre-norm: x + Attn(N(x)); x + MLP(N(x)). Post-norm: N(x + Attn(x)); N(x + MLP(x))."""

    config: ModelConfig
    lora: LoraConfig | None = None

    @nn.compact
    def __call__(
        self, x: Array, context: Context, deterministic: bool, queries: Queries | None = None
    ) -> tuple[Array, None]:
        """x: [batch, seq, d_model] -> [batch, seq, d_model]; with queries only the outputs at
        those tokens, [groups * n, 1, d_model]."""
        cfg = self.config
        attn, mlp = SelfAttention(cfg, self.lora, name="attention"), Mlp(cfg, self.lora, name="mlp")
        ln_attn, ln_mlp = _norm(cfg, "ln_attention"), _norm(cfg, "ln_mlp")
        residual = x if queries is None else take_tokens(x, queries.index)
        if cfg.norm_position == "pre":
            x = residual + attn(ln_attn(x), context, deterministic, queries)
            x = x + mlp(ln_mlp(x), deterministic)
        else:
            x = ln_attn(residual + attn(x, context, deterministic, queries))
            x = ln_mlp(x + mlp(x, deterministic))
        # The (carry, output) pair lets the same module run under nn.scan.
        return _constrain(x, ("act_batch", "act_length", "act_embed")), None


def _block(cfg: ModelConfig) -> Any:
    """Block, rematerialised in the backward pass per ModelConfig.remat."""
    if cfg.remat == "none":
        return Block
    policy = jax.checkpoint_policies.checkpoint_dots if cfg.remat == "dots" else None
    return nn.remat(Block, policy=policy, static_argnums=(3,))


def _scan(block: Any, cfg: ModelConfig, length: int) -> Any:
    """`length` blocks as one scanned module, parameters stacked on a leading "layers" axis."""
    return nn.scan(
        block,
        variable_axes={"params": 0, "lora": 0},  # "lora": adapters stacked like their kernels
        split_rngs={"params": True, "dropout": True},
        in_axes=(nn.broadcast, nn.broadcast),
        length=length,
        unroll=cfg.scan_unroll,
        metadata_params={nn.PARTITION_NAME: "layers"},
    )


class _LastLayerApart(nn.Module):
    """The scanned stack as layers 0..L-2 ("body", scanned) and layer L-1 ("last") at the queries. Encoder applies it through nn.map_variables, which splits the stacked
    [num_layers, ...] parameters of "blocks" into these two, so the checkpoint layout is unchanged."""

    config: ModelConfig
    lora: LoraConfig | None = None

    @nn.compact
    def __call__(self, x: Array, context: Context, deterministic: bool, queries: Queries) -> Array:
        """x: [batch, seq, d_model] -> [groups * n, 1, d_model] (the last layer's output at the queries)."""
        cfg = self.config
        block = _block(cfg)
        if cfg.num_layers > 1:
            x, _ = _scan(block, cfg, cfg.num_layers - 1)(cfg, self.lora, name="body")(x, context, deterministic)
        return block(cfg, self.lora, name="last")(x, context, deterministic, queries)[0]


def _split_last_layer(variables: Any) -> Any:
    """{col: stacked [num_layers, ...] tree} -> {col: {"body": layers 0..L-2, "last": layer L-1}}."""
    return {
        col: {"body": jax.tree.map(lambda a: a[:-1], tree), "last": jax.tree.map(lambda a: a[-1], tree)}
        for col, tree in variables.items()
    }


class Encoder(nn.Module):
    """Token ids -> last-layer hidden states.

    __call__(tokens [batch, seq] int32, mask [batch, seq] int) -> [batch, seq, d_model].
    Rows are right-padded: real tokens sit at positions 0..n-1 (learned and rotary positions
    alike). Options:
    - positions [batch] int (one token per row), or [groups, n] int (n tokens in each group of
      batch // groups rows, as group-local flat indices row * seq + column): the hidden states
      at those tokens alone, [batch or groups * n, d_model]. The last layer then computes its
      keys and values for every token but its queries, attention output, MLP and final norm at
      those tokens only (what EOS pooling needs; cheaper by about 10/12 of a layer).
    - segments [batch, seq] int, for rows packed with several sequences one after another: the
      sequence each token belongs to (-1: padding; mask must be segments >= 0). Each sequence
      attends only to itself and its positions restart at 0 (packed_attention_mask).
    - lora: a LoraConfig whose adapters the "lora" variable collection holds (model/lora.py); each
      adapted projection adds its low-rank term. Applied without that collection, it is the base.
    """

    config: ModelConfig
    lora: LoraConfig | None = None

    @nn.compact
    def __call__(
        self,
        tokens: Array,
        mask: Array,
        deterministic: bool = True,
        positions: Array | None = None,
        segments: Array | None = None,
    ) -> Array:
        cfg = self.config
        seq = tokens.shape[-1]
        if seq > cfg.max_len:
            raise ValueError(
                f"Sequence length {seq} exceeds ModelConfig.max_len={cfg.max_len}; "
                "lower the data max_len or raise ModelConfig.max_len."
            )
        causal = cfg.attention == "causal"
        if segments is None:
            context = Context(attention_mask(mask, causal), None)
        else:
            context = Context(packed_attention_mask(segments, causal), segment_positions(segments))
        tok_emb = nn.Embed(
            cfg.vocab_size, cfg.d_model, embedding_init=_param_init(("vocab", "embed")), name="token_embedding"
        )
        x = tok_emb(tokens)
        if cfg.position == "learned":
            pos_emb = self.param("position_embedding", _param_init(("pos", "embed")), (cfg.max_len, cfg.d_model))
            x = x + (pos_emb[None, :seq] if context.positions is None else pos_emb[context.positions])
        if cfg.embedding_norm:
            x = _norm(cfg, "ln_embedding")(x)
        x = nn.Dropout(cfg.dropout)(x, deterministic=deterministic).astype(cfg.compute_dtype)
        x = _constrain(x, ("act_batch", "act_length", "act_embed"))
        block = _block(cfg)
        index = None if positions is None else (positions[:, None] if positions.ndim == 1 else positions)
        if index is None or self.is_initializing():
            if cfg.scan_layers:
                x, _ = _scan(block, cfg, cfg.num_layers)(cfg, self.lora, name="blocks")(x, context, deterministic)
            else:
                for i in range(cfg.num_layers):
                    x, _ = block(cfg, self.lora, name=f"block_{i}")(x, context, deterministic)
            if index is not None:  # initialising: the whole stack creates the parameters
                x = take_tokens(x, index)[:, 0]
            return _norm(cfg, "ln_final")(x) if cfg.final_norm else x
        queries = make_queries(mask, index, causal, segments)
        if cfg.scan_layers:
            stack = nn.map_variables(_LastLayerApart, ("params", "lora"), trans_in_fn=_split_last_layer)
            x = stack(cfg, self.lora, name="blocks")(x, context, deterministic, queries)
        else:
            for i in range(cfg.num_layers - 1):
                x, _ = block(cfg, self.lora, name=f"block_{i}")(x, context, deterministic)
            x, _ = block(cfg, self.lora, name=f"block_{cfg.num_layers - 1}")(x, context, deterministic, queries)
        x = x[:, 0]
        return _norm(cfg, "ln_final")(x) if cfg.final_norm else x
