"""Evaluation math: exact dense retrieval, ranking metrics, BM25 baseline, linear probes."""
