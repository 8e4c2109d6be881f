"""Evaluation: what to score (spec.EvalSpec), scoring named Encoders under it with the baselines
(suite.evaluate, suite.format_table), and the math beneath: exact dense retrieval, ranking
metrics, BM25 and bag-of-words baselines, linear probes. Imports cpt_jax.data, never the model,
embedder, training or CLI layers (the CLI, cpt_jax/cli/evaluate.py, builds the Encoders)."""
