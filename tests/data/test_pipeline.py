"""Tests for cpt_jax.data.pipeline: multi-host determinism, resumption, epochs."""

from __future__ import annotations

import itertools

import numpy as np
import pytest

from cpt_jax.data import pipeline
from cpt_jax.data.tokenizer import Tokenizer

KEYS = ("x_tokens", "x_mask", "y_tokens", "y_mask")


@pytest.fixture()
def config(data_dir: str) -> pipeline.DataConfig:
    # A fixed 80-record slice: several epochs are cheap and 8 divides an epoch.
    return pipeline.DataConfig(
        data_dir=data_dir,
        dataset="stdlib_text",
        split="validation[:80]",
        max_len_x=24,
        max_len_y=16,
    )


def _global_batch(config, tokenizer, global_batch, process_count, step):
    parts = [
        pipeline.PairBatches(config, tokenizer, global_batch, p, process_count).batch(step)
        for p in range(process_count)
    ]
    return {k: np.concatenate([part[k] for part in parts]) for k in KEYS}


def test_global_batch_independent_of_process_count(config, tokenizer: Tokenizer):
    for step in (0, 3):
        single = _global_batch(config, tokenizer, 8, 1, step)
        assert single["x_tokens"].shape == (8, 24) and single["y_mask"].shape == (8, 16)
        assert all(single[k].dtype == np.int32 for k in KEYS)
        for count in (2, 4):
            multi = _global_batch(config, tokenizer, 8, count, step)
            for key in KEYS:
                np.testing.assert_array_equal(single[key], multi[key])


def test_process_batch_is_its_rows_of_the_stream(config, tokenizer: Tokenizer):
    batches = pipeline.PairBatches(config, tokenizer, 8, process_index=1, process_count=2)
    records = list(pipeline.iter_split_texts(config.dataset, config.split, config.data_dir))
    indices = batches.indices(2)
    assert indices.shape == (4,)
    expected, _ = tokenizer.encode([records[i]["x"] for i in indices], "x", 24)
    np.testing.assert_array_equal(batches.batch(2)["x_tokens"], expected)


def test_resume_equals_uninterrupted_stream(config, tokenizer: Tokenizer):
    batches = pipeline.PairBatches(config, tokenizer, 8)
    uninterrupted = list(itertools.islice(batches.iterate(), 9))
    resumed = list(itertools.islice(batches.iterate(start_step=6), 3))
    for want, got in zip(uninterrupted[6:], resumed):
        for key in KEYS:
            np.testing.assert_array_equal(want[key], got[key])
    for key in KEYS:
        np.testing.assert_array_equal(uninterrupted[4][key], batches.batch(4)[key])


def test_epochs_are_permutations_that_differ(config, tokenizer: Tokenizer):
    batches = pipeline.PairBatches(config, tokenizer, 8)
    n = batches.num_examples
    assert n == 80
    steps = n // 8
    stream = np.concatenate([batches.indices(s) for s in range(2 * steps)])
    first, second = stream[:n], stream[n:]
    assert sorted(first) == list(range(n)) and sorted(second) == list(range(n))
    assert not np.array_equal(first, second)
    other_seed = pipeline.PairBatches(
        pipeline.DataConfig(**{**vars(config), "seed": 1}), tokenizer, 8
    )
    assert not np.array_equal(other_seed.indices(0), batches.indices(0))


def test_iter_split_texts_fixed_order(config):
    a = list(pipeline.iter_split_texts(config.dataset, "validation", config.data_dir))
    b = list(pipeline.iter_split_texts(config.dataset, "validation", config.data_dir))
    assert a == b and len(a) > 0
    assert a[:80] == list(pipeline.iter_split_texts(config.dataset, config.split, config.data_dir))
    assert all(isinstance(r["x"], str) and isinstance(r["module"], str) for r in a)


def test_iter_training_texts_bounded_and_mixed(data_dir: str):
    texts = list(pipeline.iter_training_texts(data_dir, max_texts=10))
    assert len(texts) == 10 and all(isinstance(t, str) for t in texts)
    assert any(t.startswith(("def ", "async def ")) for t in texts)  # code side present


def test_errors(config, tokenizer: Tokenizer, tmp_path):
    with pytest.raises(ValueError, match="not divisible"):
        pipeline.PairBatches(config, tokenizer, 10, 0, 4)
    with pytest.raises(ValueError, match="must be positive"):
        pipeline.PairBatches(config, tokenizer, 0)
    with pytest.raises(ValueError, match=r"process_index=2 is outside \[0, 2\)"):
        pipeline.PairBatches(config, tokenizer, 8, 2, 2)
    with pytest.raises(ValueError, match=r"DataConfig.seed=-1 must be in \[0, 2\*\*32\)"):
        pipeline.PairBatches(pipeline.DataConfig(**{**vars(config), "seed": -1}), tokenizer, 8)
    with pytest.raises(ValueError, match=r"builders.prepare"):
        pipeline.PairBatches(
            pipeline.DataConfig(data_dir=str(tmp_path), max_len_x=8, max_len_y=8), tokenizer, 8
        )
    with pytest.raises(ValueError, match="no split"):
        pipeline.PairBatches(pipeline.DataConfig(**{**vars(config), "split": "dev"}), tokenizer, 8)
    with pytest.raises(ValueError, match="empty"):
        pipeline.PairBatches(
            pipeline.DataConfig(**{**vars(config), "split": "validation[:0]"}), tokenizer, 8
        )


def test_without_sources_the_tfds_path_is_used_and_its_position_is_the_step(config, tokenizer: Tokenizer):
    batches = pipeline.make_batches(config, tokenizer, 8)
    assert isinstance(batches, pipeline.PairBatches)
    produced = batches.produce(start_step=2)
    first = next(produced)
    assert first.position is None
    for key in KEYS:
        np.testing.assert_array_equal(first.batch[key], batches.batch(2)[key])
    produced.close()
    with pytest.raises(ValueError, match="resumes from the step alone"):
        batches.produce(2, resume={})
