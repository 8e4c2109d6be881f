"""ModelConfig: the one source of shapes for the encoder.

Every module that needs a width, a depth or a vocabulary size takes a ModelConfig;
gin sets it at the edge (see cpt_jax/cli/flags.py) and nothing below reads gin.

The architecture fields (norm, norm_position, position, activation, gated_mlp, num_kv_heads,
the bias switches, embedding_norm, final_norm) default to the paper's GPT-style encoder and
cover the GPT-2, Llama / Qwen2 and BERT families exactly (see cpt_jax/interop/hf_weights.py).
"""

from __future__ import annotations

import dataclasses
from typing import ClassVar

import jax.numpy as jnp

from cpt_jax.typecheck import Bound, above, at_least, between, check_field_types

ATTENTION_KINDS = ("causal", "bidirectional")
POOLING_KINDS = ("eos", "mean")
REMAT_POLICIES = ("none", "full", "dots")
DTYPES = ("float32", "bfloat16")
NORMS = ("layernorm", "rmsnorm")
NORM_POSITIONS = ("pre", "post")
POSITIONS = ("learned", "rope")
ACTIVATIONS = ("gelu_tanh", "gelu", "silu")


@dataclasses.dataclass(frozen=True)
class ModelConfig:
    """Shape and behaviour of the transformer encoder.

    Attributes:
      vocab_size: rows of the token-embedding table.
      d_model: residual width; also the embedding width.
      num_layers: transformer blocks.
      num_heads: attention (query) heads; must divide d_model.
      d_mlp: hidden width of the MLP.
      max_len: longest sequence the encoder accepts (and the learned position table covers).
      dropout: dropout rate on attention output, MLP output and embeddings.
      dtype: compute dtype ("float32" or "bfloat16"); parameters stay float32.
      attention: "causal" (the paper's GPT-style encoder) or "bidirectional" (BERT family).
      pooling: "eos" (hidden state at the side's EOS token, the paper) or "mean" over real tokens.
      eos_last_layer: with EOS pooling, run the last layer's queries, attention output, MLP and
        final norm at the EOS token alone: the same embeddings, 10/12 of a layer's FLOPs and its
        activations saved. With scanned layers this slices the stacked layer parameters, one extra
        copy of them per step; turn it off where a device holds more parameters than one layer's
        activations (bench/README.md: the memory either way).
      scan_layers: stack the blocks with nn.scan (one compiled block: fast compiles at depth).
      scan_unroll: blocks per iteration of that scan; num_layers or more gives straight-line code
        over the same stacked parameters (more is allowed, so an init_from run can set it before the
        checkpoint supplies num_layers), which XLA:CPU runs faster (no zero-filled per-layer
        residual buffers; bench/README.md) at the cost of compile time growing with depth.
      remat: activation rematerialisation per block: "none", "full", or "dots" (save matmul outputs).
      layer_norm_eps: epsilon of every norm (LayerNorm and RMSNorm alike).
      norm: "layernorm" (GPT-2, BERT) or "rmsnorm" (Llama, Qwen2).
      norm_position: "pre" (x + f(norm(x))) or "post" (norm(x + f(x)), BERT).
      position: "learned" absolute table or "rope" (rotary, Hugging Face rotate_half layout).
      rope_theta: rotary base frequency; used only with position="rope".
      activation: MLP nonlinearity: "gelu_tanh" (GPT-2 gelu_new), "gelu" (exact erf, BERT), "silu".
      gated_mlp: wo(act(wi_gate x) * wi x) (SwiGLU when activation="silu") instead of wo(act(wi x)).
      num_kv_heads: key/value heads; 0 means num_heads; fewer gives grouped-query attention.
      qkv_bias: biases on the query, key and value projections.
      out_bias: bias on the attention output projection.
      mlp_bias: biases on the MLP projections.
      embedding_norm: a norm right after the embedding sum (BERT).
      final_norm: a norm after the last block (every pre-norm family).
    """

    vocab_size: int = 8000
    d_model: int = 128
    num_layers: int = 2
    num_heads: int = 4
    d_mlp: int = 512
    max_len: int = 128
    dropout: float = 0.0
    dtype: str = "float32"
    attention: str = "causal"
    pooling: str = "eos"
    eos_last_layer: bool = True
    scan_layers: bool = True
    scan_unroll: int = 1
    remat: str = "none"
    layer_norm_eps: float = 1e-5
    norm: str = "layernorm"
    norm_position: str = "pre"
    position: str = "learned"
    rope_theta: float = 10000.0
    activation: str = "gelu_tanh"
    gated_mlp: bool = False
    num_kv_heads: int = 0
    qkv_bias: bool = True
    out_bias: bool = True
    mlp_bias: bool = True
    embedding_norm: bool = False
    final_norm: bool = True

    BOUNDS: ClassVar[dict[str, Bound]] = {
        "vocab_size": at_least(1, "rows of the token-embedding table"),
        "d_model": at_least(1, "the residual width"),
        "num_layers": at_least(1, "transformer blocks"),
        "num_heads": at_least(1, "attention heads; they must divide d_model"),
        "d_mlp": at_least(1, "the MLP hidden width"),
        "max_len": at_least(1, "the longest sequence the encoder accepts"),
        "dropout": between(0.0, 1.0, "a rate; 0 disables dropout", hi_open=True),
        "scan_unroll": at_least(1, "blocks per scan iteration; num_layers or more unrolls the whole stack"),
        "layer_norm_eps": above(0.0, "added to the variance of every norm, e.g. 1e-5"),
        "rope_theta": above(0.0, "the rotary base frequency, e.g. 10000.0"),
        "num_kv_heads": at_least(0, "key/value heads; 0 means num_heads"),
    }

    def __post_init__(self) -> None:
        check_field_types(self)  # types, then the BOUNDS above
        if self.d_model % self.num_heads:
            raise ValueError(
                f"ModelConfig.num_heads={self.num_heads} must divide d_model={self.d_model}; "
                f"pick e.g. num_heads={_largest_divisor(self.d_model, self.num_heads)}."
            )
        for name, allowed in (
            ("attention", ATTENTION_KINDS),
            ("pooling", POOLING_KINDS),
            ("remat", REMAT_POLICIES),
            ("dtype", DTYPES),
            ("norm", NORMS),
            ("norm_position", NORM_POSITIONS),
            ("position", POSITIONS),
            ("activation", ACTIVATIONS),
        ):
            if getattr(self, name) not in allowed:
                raise ValueError(f"ModelConfig.{name}={getattr(self, name)!r}; choose one of {allowed}.")
        if self.num_heads % self.kv_heads:
            raise ValueError(
                f"ModelConfig.num_kv_heads={self.num_kv_heads} must divide num_heads={self.num_heads} "
                "(0 means num_heads); pick e.g. "
                f"num_kv_heads={_largest_divisor(self.num_heads, max(self.kv_heads, 1))}."
            )
        if self.position == "rope" and self.head_dim % 2:
            raise ValueError(
                f"position='rope' rotates pairs of features, but head_dim = d_model / num_heads = {self.head_dim} "
                "is odd; change d_model or num_heads so head_dim is even."
            )
        if self.norm_position == "post" and self.final_norm:
            raise ValueError(
                "ModelConfig.norm_position='post' already ends every block with a norm, so final_norm=True "
                "would normalise twice; set final_norm=False."
            )

    @property
    def head_dim(self) -> int:
        return self.d_model // self.num_heads

    @property
    def kv_heads(self) -> int:
        """Key/value heads actually used (num_kv_heads, or num_heads when it is 0)."""
        return self.num_kv_heads or self.num_heads

    @property
    def compute_dtype(self) -> jnp.dtype:
        return jnp.dtype(self.dtype)


def _largest_divisor(n: int, at_most: int) -> int:
    return max(d for d in range(1, at_most + 1) if n % d == 0)
