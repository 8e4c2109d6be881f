"""Contrastive objectives as pure functions of embeddings and the temperature."""

from cpt_jax.loss.config import LossConfig
from cpt_jax.loss.contrastive import contrastive_loss, sharded_contrastive_loss

__all__ = ["LossConfig", "contrastive_loss", "sharded_contrastive_loss"]
