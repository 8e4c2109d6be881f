"""Training: optimizer, sharded state, the jitted step, metrics and the loop (python -m cpt_jax.train)."""
