"""Batches over a prepared TFDS split (PreparedPairsSource, random access): the global shuffle per
epoch, multi-host determinism, resumption (old checkpoints without a stream position too)."""

from __future__ import annotations


import dataclasses

import numpy as np
import pytest

import grain

from cpt_jax.data import pipeline
from cpt_jax.data.config import DataConfig
from cpt_jax.data.sources import PreparedPairsSource
from cpt_jax.data.tokenizer import Tokenizer

KEYS = ("x_tokens", "x_mask", "y_tokens", "y_mask")


@pytest.fixture()
def config(data_dir: str) -> DataConfig:
    # A fixed 80-record slice: several epochs are cheap and 8 divides an epoch.
    source = PreparedPairsSource(dataset="stdlib_text", split="validation[:80]", data_dir=data_dir)
    return DataConfig(sources=(source,), max_len_x=24, max_len_y=16, stream_readers=4, prefetch_batches=0)


def _arrays(batch):
    return {"x_tokens": batch.x.tokens, "x_mask": batch.x.mask, "y_tokens": batch.y.tokens, "y_mask": batch.y.mask}


def _steps(config, tokenizer, global_batch, steps, process=0, count=1, start=0, resume=None):
    produced = pipeline.Batches(config, tokenizer, global_batch, process, count).produce(start, resume)
    out = [_arrays(next(produced).batch) for _ in range(steps)]
    produced.close()
    return out


def _global_batch(config, tokenizer, global_batch, process_count, step):
    parts = [_steps(config, tokenizer, global_batch, step + 1, p, process_count)[step] for p in range(process_count)]
    return {k: np.concatenate([part[k] for part in parts]) for k in KEYS}


def _stream(config, n):
    return grain.MapDataset.range(n).shuffle(seed=config.seed).repeat()


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
    # Global batch s is rows [s*G, (s+1)*G) of the shuffled, repeated range; process p of P owns
    # rows [s*G + p*G/P, s*G + (p+1)*G/P): the old PairBatches layout, which old runs resume into.
    records = list(pipeline.iter_split_texts("stdlib_text", "validation[:80]", config.sources[0].data_dir))
    stream = _stream(config, len(records))
    got = _steps(config, tokenizer, 8, 3, process=1, count=2)[2]
    expected, _ = tokenizer.encode([records[stream[2 * 8 + 4 + i]]["x"] for i in range(4)], "x", 24)
    np.testing.assert_array_equal(got["x_tokens"], expected)


def test_resume_equals_uninterrupted_stream_even_without_a_saved_position(config, tokenizer: Tokenizer):
    batches = pipeline.Batches(config, tokenizer, 8)
    produced = batches.produce()
    items = [next(produced) for _ in range(9)]
    produced.close()
    meta = batches.checkpoint_meta([items[5].position], {})
    old_checkpoint = batches.resume_meta(None, 6)  # written before positions were saved
    assert batches.resume_meta(None, 0) is None and batches.resume_meta(meta, 6) == meta
    for resume in (meta, old_checkpoint, None):
        resumed = _steps(config, tokenizer, 8, 3, start=6, resume=resume)
        for want, got in zip(items[6:], resumed):
            for key in KEYS:
                np.testing.assert_array_equal(_arrays(want.batch)[key], got[key])


def test_epochs_are_permutations_that_differ(config, tokenizer: Tokenizer):
    stream = _stream(config, 80)
    first, second = [stream[i] for i in range(80)], [stream[i] for i in range(80, 160)]
    assert sorted(first) == list(range(80)) and sorted(second) == list(range(80)) and first != second
    records = list(pipeline.iter_split_texts("stdlib_text", "validation[:80]", config.sources[0].data_dir))
    seen = [t for b in _steps(config, tokenizer, 8, 20) for t in b["x_tokens"].tolist()]
    want, _ = tokenizer.encode([records[i]["x"] for i in first + second], "x", 24)
    assert seen == want.tolist()
    other = _steps(DataConfig(**{**vars(config), "seed": 1}), tokenizer, 8, 1)[0]
    assert not np.array_equal(other["x_tokens"], seen[:8])


def test_iter_split_texts_fixed_order(config):
    data_dir = config.sources[0].data_dir
    a = list(pipeline.iter_split_texts("stdlib_text", "validation", data_dir))
    assert a == list(pipeline.iter_split_texts("stdlib_text", "validation", data_dir)) and len(a) > 0
    assert a[:80] == list(pipeline.iter_split_texts("stdlib_text", "validation[:80]", data_dir))
    assert all(isinstance(r["x"], str) and isinstance(r["module"], str) for r in a)


def test_training_texts_are_the_sources_records_in_order(config, data_dir: str):
    texts = list(pipeline.training_texts(config, 6))
    records = list(pipeline.iter_split_texts("stdlib_text", "validation[:80]", data_dir))
    assert texts == [t for r in records[:3] for t in (r["x"], r["y"])]
    assert len(list(pipeline.iter_training_texts(data_dir, max_texts=10))) == 10


def test_errors(config, tokenizer: Tokenizer, tmp_path):
    with pytest.raises(ValueError, match="not divisible"):
        pipeline.Batches(config, tokenizer, 10, 0, 4)
    with pytest.raises(ValueError, match="must be positive"):
        pipeline.Batches(config, tokenizer, 0)
    with pytest.raises(ValueError, match=r"process_index=2 is outside \[0, 2\)"):
        pipeline.Batches(config, tokenizer, 8, 2, 2)
    with pytest.raises(ValueError, match=r"DataConfig.seed=-1 is out of range: must be in \[0, 2\*\*32 - 1\]"):
        pipeline.Batches(DataConfig(**{**vars(config), "seed": -1}), tokenizer, 8)
    with pytest.raises(ValueError, match=r"builders.prepare"):
        PreparedPairsSource(dataset="stdlib_text", data_dir=str(tmp_path)).build()
    with pytest.raises(ValueError, match="no split"):
        PreparedPairsSource(dataset="stdlib_text", data_dir=config.sources[0].data_dir, split="dev").build()
    with pytest.raises(ValueError, match="empty"):
        PreparedPairsSource(dataset="stdlib_text", data_dir=config.sources[0].data_dir, split="validation[:0]").build()
    with pytest.raises(ValueError, match="needs a dataset and a data_dir"):
        PreparedPairsSource(dataset="stdlib_text", data_dir="")


def test_one_random_access_source_takes_any_batch_the_processes_split(config, tokenizer: Tokenizer):
    """Its global batches are consecutive rows of its order whatever DataConfig.stream_readers is, so
    the batcher reads it with one reader per process: a batch of 6 works with 16 readers configured,
    and global batch s is still rows [6s, 6s + 6) of the order, on 1 or 2 processes."""
    wide = dataclasses.replace(config, stream_readers=16)
    records = list(pipeline.iter_split_texts("stdlib_text", "validation[:80]", config.sources[0].data_dir))
    stream = _stream(config, len(records))
    expected, _ = tokenizer.encode([records[stream[2 * 6 + i]]["x"] for i in range(6)], "x", 24)
    for count in (1, 2):
        np.testing.assert_array_equal(_global_batch(wide, tokenizer, 6, count, 2)["x_tokens"], expected)
    with pytest.raises(ValueError, match="global batch 6 is not divisible by the 4 processes"):
        pipeline.Batches(wide, tokenizer, 6, 0, 4)
