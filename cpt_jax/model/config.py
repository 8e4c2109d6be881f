"""ModelConfig: the one source of shapes for the encoder.

Every module that needs a width, a depth or a vocabulary size takes a ModelConfig;
gin sets it at the edge (see cpt_jax/config.py) and nothing below reads gin.
"""

from __future__ import annotations

import dataclasses

import jax.numpy as jnp

from cpt_jax.typecheck import check_field_types

ATTENTION_KINDS = ("causal", "bidirectional")
POOLING_KINDS = ("eos", "mean")
REMAT_POLICIES = ("none", "full", "dots")
DTYPES = ("float32", "bfloat16")


@dataclasses.dataclass(frozen=True)
class ModelConfig:
    """Shape and behaviour of the transformer encoder.

    Attributes:
      vocab_size: rows of the token-embedding table.
      d_model: residual width; also the embedding width.
      num_layers: transformer blocks.
      num_heads: attention heads; must divide d_model.
      d_mlp: hidden width of the MLP.
      max_len: longest sequence the position table covers.
      dropout: dropout rate on attention output, MLP output and embeddings.
      dtype: compute dtype ("float32" or "bfloat16"); parameters stay float32.
      attention: "causal" (the paper's GPT-style encoder) or "bidirectional" (BERT family).
      pooling: "eos" (hidden state at the side's EOS token, the paper) or "mean" over real tokens.
      scan_layers: stack the blocks with nn.scan (one compiled block: fast compiles at depth).
      remat: activation rematerialisation per block: "none", "full", or "dots" (save matmul outputs).
      layer_norm_eps: epsilon of every LayerNorm.
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
    scan_layers: bool = True
    remat: str = "none"
    layer_norm_eps: float = 1e-5

    def __post_init__(self) -> None:
        check_field_types(self)
        positive = ("vocab_size", "d_model", "num_layers", "num_heads", "d_mlp", "max_len")
        for name in positive:
            if getattr(self, name) <= 0:
                raise ValueError(f"ModelConfig.{name} must be positive, got {getattr(self, name)}.")
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
        ):
            if getattr(self, name) not in allowed:
                raise ValueError(f"ModelConfig.{name}={getattr(self, name)!r}; choose one of {allowed}.")
        if not 0.0 <= self.dropout < 1.0:
            raise ValueError(f"ModelConfig.dropout must be in [0, 1), got {self.dropout}.")

    @property
    def head_dim(self) -> int:
        return self.d_model // self.num_heads

    @property
    def compute_dtype(self) -> jnp.dtype:
        return jnp.dtype(self.dtype)


def _largest_divisor(n: int, at_most: int) -> int:
    return max(d for d in range(1, at_most + 1) if n % d == 0)
