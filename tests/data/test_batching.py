"""Batching by source (DataConfig.batching="by_source") and per-source instructions: one source per
step in exact proportion, identical over process counts, exact resume; prefixes on every side."""

from __future__ import annotations

import dataclasses
import json
from fractions import Fraction

import numpy as np
import pytest

from cpt_jax.data import mixture
from cpt_jax.data.config import DataConfig
from cpt_jax.data.pipeline import Batches, with_instruction
from cpt_jax.data.sources.base import DropStats
from tests.data.stream_sources import CharTokenizer, decode, pairs

G = 16
CONFIG = DataConfig(
    max_len_x=24, max_len_y=24, stream_readers=4, shuffle_window=5, prefetch_batches=0, seed=7,
    weights=(3, 1, 2), sources=("a", "b", "c"), batching="by_source",
)


class ListArray:
    """Random-access records: a random-access source (len + fetch) in memory."""

    def __init__(self, name: str, size: int) -> None:
        self.name, self.stats = name, DropStats()
        self._data = [{"x": f"{name}.{i}", "y": f"y {name}.{i}"} for i in range(size)]

    def shards(self) -> list[str]:
        return [self.name]

    def __len__(self) -> int:
        return len(self._data)

    def fetch(self, indices):
        return [self._data[int(i)] for i in indices]

    def read_shard(self, index, start=0):
        yield from self._data[start:]


def _sources():
    # Streaming a and b (a with fewer shards than readers), random-access c.
    return [pairs("a", [23, 17, 30]), pairs("b", [6, 9, 4, 7, 8, 5, 9, 3, 6, 7]), ListArray("c", 37)]


def _global(config, steps, count=1, start=0, resume=None):
    its = [Batches(config, CharTokenizer(), G, p, count, sources=_sources()).produce(start, resume) for p in range(count)]
    out = []
    for _ in range(steps):
        produced = [next(it) for it in its]
        texts = [t for p in produced for t in decode(p.batch.x.tokens, p.batch.x.mask)]
        out.append((texts, [p.position for p in produced]))
    for it in its:
        it.close()
    return out


def _source_of(text: str) -> str:
    return text.split(".")[0].split(" ")[-1]


@pytest.fixture(scope="module")
def uninterrupted():
    return _global(CONFIG, 24)


def test_every_batch_is_one_source_in_exact_proportion(uninterrupted):
    chosen = []
    for texts, _ in uninterrupted:
        sources = {_source_of(t) for t in texts}
        assert len(sources) == 1 and len(texts) == G
        chosen.append(sources.pop())
    # Weights 3:1:2 over every 6 steps, whatever the offset the seed gives.
    for first in range(0, 24, 6):
        window = chosen[first : first + 6]
        assert (window.count("a"), window.count("b"), window.count("c")) == (3, 1, 2)
    assert len(set(chosen[:6])) == 3  # interleaved, not a block of each


def test_the_schedule_counts_are_exact_and_depend_on_the_seed():
    weights = mixture.normalise((0.4, 0.4, 0.2))
    schedule = mixture.Schedule(weights, 8, by_source=True, offset=3)
    cumulative = [0, 0, 0]
    for step in range(200):
        counts = schedule.step(step)
        assert sorted(counts) == [0, 0, 8]
        cumulative = [a + b for a, b in zip(cumulative, counts)]
        assert cumulative == schedule.cumulative(step + 1)
        assert all(abs(c - float(w) * 8 * (step + 1)) <= 8 * 3 for c, w in zip(cumulative, weights))
    other = mixture.Schedule(weights, 8, by_source=True, offset=4)
    assert [schedule.step(s) for s in range(10)] != [other.step(s) for s in range(10)]
    mixed = mixture.Schedule(weights, 8)
    assert mixed.step(5) == mixture.step_counts(weights, 8, 5)
    assert mixture.Schedule((Fraction(1),), 8, by_source=True, offset=9).step(0) == [8]


@pytest.mark.parametrize("count", [2, 4])
def test_by_source_batches_do_not_depend_on_the_process_count(uninterrupted, count):
    for (want, _), (got, _) in zip(uninterrupted, _global(CONFIG, 24, count)):
        assert got == want


@pytest.mark.parametrize("cut, before, after", [(5, 1, 2), (11, 2, 1), (13, 4, 4)])
def test_by_source_resume_equals_the_uninterrupted_stream(uninterrupted, cut, before, after):
    positions = _global(CONFIG, cut, before)[-1][1]
    meta = json.loads(json.dumps(Batches(CONFIG, CharTokenizer(), G, sources=_sources()).checkpoint_meta(positions, {})))
    assert meta["batching"] == "by_source"
    resumed = _global(CONFIG, 24 - cut, after, start=cut, resume=meta)
    assert [t for t, _ in resumed] == [t for t, _ in uninterrupted[cut:]]


def test_resuming_with_another_batching_is_refused():
    positions = _global(CONFIG, 3)[-1][1]
    meta = Batches(CONFIG, CharTokenizer(), G, sources=_sources()).checkpoint_meta(positions, {})
    mixed = dataclasses.replace(CONFIG, batching="mixed")
    with pytest.raises(ValueError, match="does not match this run"):
        next(Batches(mixed, CharTokenizer(), G, sources=_sources()).produce(3, meta))
    # A checkpoint written before batching existed resumes as mixed.
    old = {k: v for k, v in Batches(mixed, CharTokenizer(), G, sources=_sources()).checkpoint_meta(positions, {}).items()
           if k != "batching"}
    next(Batches(mixed, CharTokenizer(), G, sources=_sources()).produce(3, old)).batch


def test_instructions_prefix_every_side_of_their_source():
    config = dataclasses.replace(
        CONFIG, batching="mixed", num_negatives=1, sources=("a", "b"), weights=(1, 1),
        instructions=(("q: ", "d: "), ("", "")),
    )
    sources = [pairs("a", [40], negatives=(1,)), pairs("b", [40], negatives=(1,))]
    batch = next(Batches(config, CharTokenizer(), G, sources=sources).produce()).batch
    xs, ys = decode(batch.x.tokens, batch.x.mask), decode(batch.y.tokens, batch.y.mask)
    negs = decode(batch.negatives.side.tokens[:, 0], batch.negatives.side.mask[:, 0])
    for x, y, n in zip(xs, ys, negs):
        if _source_of(x.removeprefix("q: ")) == "a":
            assert x.startswith("q: a.") and y.startswith("d: y a.") and n.startswith("d: neg0 a.")
        else:
            assert x.startswith("b.") and y.startswith("y b.") and n.startswith("neg0 b.")
    record = {"x": "u", "y": "v", "negatives": ["w"]}
    assert with_instruction(record, "", "") is record
    assert with_instruction(record, "q ", "d ") == {"x": "q u", "y": "d v", "negatives": ["d w"]}
    assert record == {"x": "u", "y": "v", "negatives": ["w"]}  # the source's record is unchanged


def test_config_errors_name_the_field_and_fix():
    with pytest.raises(ValueError, match="batching='per_source'.*by_source"):
        dataclasses.replace(CONFIG, batching="per_source")
    with pytest.raises(ValueError, match="2 pairs for 3 sources"):
        dataclasses.replace(CONFIG, instructions=(("q", "d"), ("", "")))
    with pytest.raises(TypeError, match=r"instructions\[0\]=.*pair of strings"):
        dataclasses.replace(CONFIG, sources=("a",), weights=(), instructions=("query: ",))
    config = dataclasses.replace(CONFIG, sources=("a",), weights=(), instructions=[["q", "d"]])
    assert config.instructions == (("q", "d"),)
    assert np.all(DataConfig(max_len_x=4, max_len_y=4).instructions == ())
