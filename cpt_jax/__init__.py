"""cpt-jax: contrastive pre-training of text and code embedding models in JAX."""
