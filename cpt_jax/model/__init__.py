"""The encoder: shapes (config), the Flax module (encoder), pooling, and the functional API (embedding)."""

from cpt_jax.model.config import ModelConfig
from cpt_jax.model.embedding import embed, init_boxed, init_params, param_count

__all__ = ["ModelConfig", "embed", "init_boxed", "init_params", "param_count"]
