"""Contrastive objectives as pure functions of embeddings and the temperature."""

from cpt_jax.loss.contrastive import contrastive_loss, sharded_contrastive_loss

__all__ = ["contrastive_loss", "sharded_contrastive_loss"]
