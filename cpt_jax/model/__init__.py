"""The encoder: shapes (config), the Flax module (encoder), pooling, and the functional API (embedding)."""

from cpt_jax.model.config import ModelConfig
from cpt_jax.model.lora import Adapted, LoraConfig
from cpt_jax.model.embedding import (
    embed,
    embed_packed,
    embed_side,
    init_boxed,
    init_boxed_adapters,
    init_params,
    param_count,
    real_tokens,
)

__all__ = [
    "Adapted", "LoraConfig", "ModelConfig", "embed", "embed_packed", "embed_side", "real_tokens", "init_boxed",
    "init_boxed_adapters", "init_params", "param_count",
]
