"""The TF-IDF bag-of-words baseline encoder."""

from __future__ import annotations

import numpy as np

from cpt_jax.eval.bag_of_words import TfidfEncoder
from cpt_jax.eval.classification import evaluate_classification, read_labelled
from tests.eval.fakes import write_jsonl


def test_vectors_come_from_the_training_vocabulary():
    encoder = TfidfEncoder(["open the file", "close the file", "parse the header"], max_features=50)
    vectors = encoder.encode(["open the header", "unknown words only"], "query", 8)
    assert vectors.dtype == np.float32 and vectors.shape == (2, encoder.dim)
    np.testing.assert_allclose(np.linalg.norm(vectors[0]), 1.0, rtol=1e-6)
    assert not vectors[1].any()  # nothing it has seen in training
    assert np.array_equal(vectors, encoder.encode(["open the header", "unknown words only"], "document", 1))


def test_runs_through_the_linear_probe(tmp_path):
    topics = {"io": ["read", "write", "file", "stream"], "net": ["socket", "host", "port", "packet"]}
    rng = np.random.default_rng(0)
    for split, n in (("train", 40), ("test", 20)):
        labels = rng.choice(sorted(topics), n)
        rows = [{"text": " ".join(rng.choice(topics[y], 2)), "label": str(y)} for y in labels]
        write_jsonl(str(tmp_path / f"{split}.jsonl"), rows)
    encoder = TfidfEncoder(read_labelled(str(tmp_path / "train.jsonl"))[0])
    assert evaluate_classification(encoder, str(tmp_path))["accuracy"] == 1.0
