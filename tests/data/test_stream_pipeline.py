"""Batches: determinism, independence of the process count, exact resume with another process
count, mixture counts per step, hard negatives, prefetching and errors. One pipeline per process
index stands in for the processes of a multi-host run."""

from __future__ import annotations

import dataclasses
import json

import numpy as np
import pytest

from cpt_jax.data import pipeline
from cpt_jax.batch import Negatives, PairBatch, padded_side
from cpt_jax.data import fingerprint as fp
from cpt_jax.data.fingerprint import fingerprint
from cpt_jax.data.config import DataConfig, require_sources
from cpt_jax.data.pipeline import Batches
from tests.data.stream_sources import CharTokenizer, decode, pairs

G = 16
# The pipelines get their Source objects directly; `sources` only names them here.
CONFIG = DataConfig(
    max_len_x=12, max_len_y=16, stream_readers=4, shuffle_window=5, prefetch_batches=0, seed=7,
    weights=(3, 1), sources=("a", "b"),
)


def _sources():
    # Source a has fewer shards than readers (shared shards), b more.
    return [pairs("a", [23, 17, 30]), pairs("b", [6, 9, 4, 7, 8, 5, 9, 3, 6, 7])]


def _processes(count, config=CONFIG, start=0, resume=None):
    """One iterator of Produced per process."""
    return [
        Batches(config, CharTokenizer(), G, p, count, sources=_sources()).produce(start, resume)
        for p in range(count)
    ]


def as_dict(batch):
    """A PairBatch's arrays by their flat names."""
    out = {"x_tokens": batch.x.tokens, "x_mask": batch.x.mask, "y_tokens": batch.y.tokens, "y_mask": batch.y.mask}
    if batch.negatives is not None:
        n = batch.negatives
        out.update(n_tokens=n.side.tokens, n_mask=n.side.mask, n_valid=n.valid)
    return out


def from_dict(arrays):
    """as_dict's inverse: the PairBatch of flat arrays (e.g. a concatenated global batch)."""
    negatives = None
    if "n_tokens" in arrays:
        negatives = Negatives(padded_side(arrays["n_tokens"], arrays["n_mask"]), arrays["n_valid"])
    x, y = (padded_side(arrays[f"{k}_tokens"], arrays[f"{k}_mask"]) for k in "xy")
    return PairBatch(x, y, negatives)


def batch_fingerprint(arrays):
    return fp.batch_fingerprint(from_dict(arrays))


def row_hashes(arrays):
    return fp.row_hashes(from_dict(arrays))


def _global_steps(iterators, steps):
    """[(global batch, positions of all processes)] for `steps` steps."""
    out = []
    for _ in range(steps):
        produced = [next(it) for it in iterators]
        parts = [as_dict(p.batch) for p in produced]
        batch = {k: np.concatenate([part[k] for part in parts]) for k in parts[0]}
        out.append((batch, [p.position for p in produced]))
    return out


def _texts(batch):
    return decode(batch["x_tokens"], batch["x_mask"])


@pytest.fixture(scope="module")
def uninterrupted():
    return _global_steps(_processes(1), 12)


def test_same_config_and_seed_give_the_same_batches(uninterrupted):
    again = _global_steps(_processes(1), 12)
    for (a, _), (b, _) in zip(uninterrupted, again):
        assert a.keys() == b.keys() and all(np.array_equal(a[k], b[k]) for k in a)
    other = _global_steps(_processes(1, dataclasses.replace(CONFIG, seed=8)), 1)
    assert batch_fingerprint(other[0][0]) != batch_fingerprint(uninterrupted[0][0])


@pytest.mark.parametrize("count", [2, 4])
def test_global_batches_do_not_depend_on_the_process_count(uninterrupted, count):
    for (want, _), (got, positions) in zip(uninterrupted, _global_steps(_processes(count), 12)):
        # Process p owns the readers [p V/P, (p+1) V/P): even the row order is that of one process.
        assert all(np.array_equal(want[k], got[k]) for k in want)
        assert batch_fingerprint(got) == batch_fingerprint(want)
        assert len(positions) == count and positions[0].step == positions[-1].step


def test_fingerprint_ignores_row_order_only(uninterrupted):
    batch = uninterrupted[0][0]
    order = np.random.default_rng(0).permutation(G)
    assert batch_fingerprint({k: v[order] for k, v in batch.items()}) == batch_fingerprint(batch)
    # Row hashes of two processes together: the fingerprint of the whole batch.
    parts = [row_hashes({k: v[rows] for k, v in batch.items()}) for rows in (slice(0, 5), slice(5, None))]
    assert fingerprint(np.concatenate(parts)) == batch_fingerprint(batch)
    changed = {k: v.copy() for k, v in batch.items()}
    changed["y_tokens"][3, 0] += 1
    assert batch_fingerprint(changed) != batch_fingerprint(batch)


@pytest.mark.parametrize("cut", [1, 4, 7])
@pytest.mark.parametrize("before, after", [(1, 1), (2, 2), (2, 1), (1, 4)])
def test_resume_from_the_saved_positions_equals_the_uninterrupted_stream(uninterrupted, cut, before, after):
    config = dataclasses.replace(CONFIG, prefetch_batches=3)  # the producer runs ahead of the consumer
    iterators = _processes(before, config)
    positions = _global_steps(iterators, cut)[-1][1]
    for it in iterators:
        it.close()
    meta = Batches(config, CharTokenizer(), G, sources=_sources()).checkpoint_meta(positions, {})
    meta = json.loads(json.dumps(meta))  # as the checkpoint stores it
    assert meta["step"] == cut and [s["name"] for s in meta["sources"]] == ["a", "b"]
    resumed = _processes(after, config, start=cut, resume=meta)
    for (want, _), (got, _) in zip(uninterrupted[cut:], _global_steps(resumed, 12 - cut)):
        assert all(np.array_equal(want[k], got[k]) for k in want)
    for it in resumed:
        it.close()


def test_every_step_takes_exactly_the_mixture_counts(uninterrupted):
    batches = Batches(CONFIG, CharTokenizer(), G, sources=_sources())
    for step, (batch, _) in enumerate(uninterrupted):
        counts = batches.step_counts(step)
        assert counts == [3, 1]  # weights 3:1 of R = 16 / 4 rows per reader
        sources = [t.split(".")[0] for t in _texts(batch)]
        # Reader-major, source-major within a reader.
        assert sources == (["a"] * 3 + ["b"]) * 4


def test_memory_is_bounded_by_the_windows():
    sources = [pairs("a", [23, 17, 30, 12, 9]), pairs("b", [6, 9, 4, 7, 8, 5, 9, 3, 6, 7])]  # no shared shards
    produced = Batches(CONFIG, CharTokenizer(), G, sources=sources).produce()
    for step in range(1, 30):
        next(produced)
        emitted = {"a": 12 * step, "b": 4 * step}
        for source in sources:
            # Pairs read from the shards and not yet handed out: at most a window per reader.
            held = source.pulled - emitted[source.name]
            assert 0 <= held <= CONFIG.stream_readers * CONFIG.shuffle_window


def test_hard_negatives_are_tokenised_and_masked():
    config = dataclasses.replace(CONFIG, num_negatives=2, weights=(), sources=("n",))
    source = pairs("n", [40, 40], negatives=(0, 1, 3))
    batch = as_dict(next(Batches(config, CharTokenizer(), G, sources=[source]).produce()).batch)
    assert batch["n_tokens"].shape == batch["n_mask"].shape == (G, 2, 16)
    assert batch["n_valid"].shape == (G, 2) and batch["n_valid"].dtype == np.int32
    for row, x in enumerate(_texts(batch)):
        given = next(r["negatives"] for r in source._shards[int(x.split(".")[1])] if r["x"] == x)
        valid = min(len(given), 2)
        assert list(batch["n_valid"][row]) == [1] * valid + [0] * (2 - valid)
        texts = decode(batch["n_tokens"][row], batch["n_mask"][row])
        assert texts == given[:2] + [""] * (2 - valid)


def test_real_tokenizer_batch_shapes_and_source_texts(tokenizer):
    config = dataclasses.replace(CONFIG, num_negatives=1, max_len_x=8)
    batch = as_dict(next(Batches(config, tokenizer, G, 1, 2, sources=_sources()).produce()).batch)
    assert {k: v.shape for k, v in batch.items()} == {
        "x_tokens": (8, 8), "x_mask": (8, 8), "y_tokens": (8, 16), "y_mask": (8, 16),
        "n_tokens": (8, 1, 16), "n_mask": (8, 1, 16), "n_valid": (8, 1),
    }
    assert all(v.dtype == np.int32 for v in batch.values())
    texts = list(pipeline.iter_source_texts(_sources(), max_texts=6))
    assert texts == ["a.0.0", "b.0.0", "y a.0.0", "y b.0.0", "a.0.1", "b.0.1"]


def test_positions_and_drop_stats_are_those_after_each_batch():
    sources = _sources()
    produced = Batches(CONFIG, CharTokenizer(), G, sources=sources).produce()
    first = next(produced).position
    assert first.step == 1
    assert first.drop_stats == {s.name: {"kept": s.pulled} for s in sources}
    assert first.readers["b"] == [[0, 0, 0, 1, 0]] * 4  # each reader emitted 1 pair of its first window
    ahead = Batches(dataclasses.replace(CONFIG, prefetch_batches=3), CharTokenizer(), G, sources=_sources()).produce()
    assert next(ahead).position == first  # whatever the producer thread has read since
    ahead.close()
    assert pipeline.merge_counts({"a": {"kept": 1, "empty": 2}}, {"a": {"kept": 3}, "b": {"kept": 1}}) == {
        "a": {"kept": 4, "empty": 2}, "b": {"kept": 1}}


def test_a_failing_source_fails_the_consumer():
    config = dataclasses.replace(CONFIG, prefetch_batches=2, weights=(), sources=("t",))
    produced = Batches(config, CharTokenizer(), G, sources=[pairs("t", [2])]).produce()
    with pytest.raises(RuntimeError, match="input pipeline failed") as info:
        next(produced)
    assert "too few pairs" in str(info.value.__cause__)
    produced.close()


def test_layout_and_resume_errors():
    with pytest.raises(ValueError, match="must be positive"):
        Batches(CONFIG, CharTokenizer(), 0, sources=_sources())
    with pytest.raises(ValueError, match=r"process_index=-1 is outside \[0, 2\)"):
        Batches(CONFIG, CharTokenizer(), G, -1, 2, sources=_sources())
    with pytest.raises(ValueError, match=r"DataConfig.seed=4294967296 is out of range: must be in \[0, 2\*\*32 - 1\]"):
        Batches(dataclasses.replace(CONFIG, seed=2**32), CharTokenizer(), G, sources=_sources())
    with pytest.raises(ValueError, match="not divisible by DataConfig.stream_readers=4"):
        Batches(CONFIG, CharTokenizer(), 10, sources=_sources())
    with pytest.raises(ValueError, match="not divisible by the 3 processes"):
        Batches(CONFIG, CharTokenizer(), 12, 0, 3, sources=_sources())
    with pytest.raises(ValueError, match="distinct name"):
        Batches(CONFIG, CharTokenizer(), G, sources=[pairs("a", [3]), pairs("a", [4])])
    batches = Batches(CONFIG, CharTokenizer(), G, sources=_sources())
    with pytest.raises(ValueError, match="no data stream position"):
        batches.produce(3)
    positions = [next(batches.produce()).position]
    meta = batches.checkpoint_meta(positions, {})
    other = Batches(dataclasses.replace(CONFIG, shuffle_window=6), CharTokenizer(), G, sources=_sources())
    with pytest.raises(ValueError, match="does not match this run"):
        other.produce(1, meta)
    with pytest.raises(ValueError, match="does not match this run"):
        batches.produce(2, meta)


def test_data_config_checks():
    with pytest.raises(ValueError, match="one weight per source"):
        DataConfig(max_len_x=8, max_len_y=8, sources=("a", "b"), weights=(1.0,))
    with pytest.raises(ValueError, match="finite and positive"):
        DataConfig(max_len_x=8, max_len_y=8, sources=("a",), weights=(-1.0,))
    no_sources = DataConfig(max_len_x=8, max_len_y=8)  # a run fed by its caller reads none
    with pytest.raises(ValueError, match="DataConfig.sources is empty"):
        require_sources(no_sources)
    with pytest.raises(ValueError, match="DataConfig.sources is empty"):
        Batches(no_sources, CharTokenizer(), G)
    with pytest.raises(TypeError, match="data_dir"):  # no mode switch: a prepared dataset is a source
        DataConfig(max_len_x=8, max_len_y=8, sources=("a",), data_dir="d")
    assert DataConfig(max_len_x=8, max_len_y=8, sources=["a"], weights=[2]).weights == (2,)
