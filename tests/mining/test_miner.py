"""mine() end to end with a deterministic fake encoder (tests/eval/fakes.HashEncoder): exclusions,
read-back, determinism, resume after an interruption, changed model or corpus, bad inputs before
any encoding. The real encoders are covered by test_model.py and test_cli.py."""

from __future__ import annotations

import json

import numpy as np
import pytest

from cpt_jax.data.sources import PairedJsonlSource
from cpt_jax.mining import MineConfig, ModelSpec, mine
from cpt_jax.mining.corpus import normalize
from cpt_jax.mining.model import LoadedModel
from tests.eval.fakes import HashEncoder
from tests.mining.conftest import pair_rows, write_jsonl

N_PAIRS = 40


class Interrupted(Exception):
    pass


class CountingEncoder(HashEncoder):
    """HashEncoder that can stop (as a kill would) after ``stop_after`` document chunks."""

    def __init__(self, salt: str = "", stop_after: int | None = None) -> None:
        super().__init__(salt)
        self.stop_after = stop_after

    def encode(self, texts, side, batch_size):
        documents = sum(1 for s, _ in self.calls if s == "document")
        if side == "document" and self.stop_after is not None and documents >= self.stop_after:
            raise Interrupted(f"stopped after {documents} document chunks")
        return super().encode(texts, side, batch_size)

    def chunks(self, side: str) -> int:
        return sum(1 for s, _ in self.calls if s == side)


def _model(encoder: HashEncoder) -> LoadedModel:
    return LoadedModel(encoder, {"kind": "fake", "salt": encoder.salt}, "fake")


@pytest.fixture
def inputs(tmp_path):
    """Pairs, and a corpus holding their positives plus a recased / re-spaced copy of positive 0,
    a copy of query 1, and fillers, in a fixed shuffled order."""
    rows = pair_rows(N_PAIRS)
    pairs = write_jsonl(tmp_path / "pairs.jsonl", rows)
    docs = [r["y"] for r in rows] + [rows[0]["y"].upper().replace("    ", "\t "), rows[1]["x"]]
    docs += [f"def g{i}(value):\n    return value.{w}()" for i, w in enumerate(["sort", "merge", "split"] * 10)]
    order = np.random.default_rng(0).permutation(len(docs))
    corpus = write_jsonl(tmp_path / "corpus.jsonl", [{"text": docs[i]} for i in order])
    return tmp_path, pairs, corpus


def _config(tmp_path, pairs, corpus, name="mined", **overrides) -> MineConfig:
    fields = dict(model=ModelSpec(checkpoint="unused"), pairs=PairedJsonlSource(paths=(pairs,)),
                  output=str(tmp_path / f"{name}.jsonl"), corpus=corpus, num_negatives=4, max_rank=30, margin=None,
                  chunk_size=8, query_block=16)
    return MineConfig(**{**fields, **overrides})


def _read(path):
    with open(path, encoding="utf-8") as f:
        return [json.loads(line) for line in f]


def test_positives_and_copies_are_never_negatives_and_the_file_reads_back(inputs):
    tmp_path, pairs, corpus = inputs
    result = mine(_config(tmp_path, pairs, corpus), _model(HashEncoder()), log=lambda _: None)
    records = _read(result.output)
    assert [(r["x"], r["y"]) for r in records] == [(r["x"], r["y"]) for r in pair_rows(N_PAIRS)]
    for r in records:
        assert len(r["negatives"]) == 4 == len(r["negative_scores"]) == len(r["negative_ranks"])
        assert {normalize(r["x"]), normalize(r["y"])}.isdisjoint(normalize(n) for n in r["negatives"])
        assert r["negative_scores"] == sorted(r["negative_scores"], reverse=True)
        encoder = HashEncoder()
        assert r["positive_score"] == pytest.approx(float(encoder.vector(r["x"]) @ encoder.vector(r["y"])))
    counts = result.stats["counts"]
    assert counts["equal_to_positive"] == N_PAIRS + 1 and counts["equal_to_query"] == 1
    source = PairedJsonlSource(paths=(result.output,), negatives_field="negatives").build()
    back = list(source.read_shard(0))
    assert [b["negatives"] for b in back] == [r["negatives"] for r in records]
    assert source.stats.as_dict() == {}  # nothing dropped as negative_equals_positive
    with open(result.stats_path) as f:
        assert json.load(f)["negatives_written"] == 4 * N_PAIRS


def test_mining_is_deterministic(inputs):
    tmp_path, pairs, corpus = inputs
    a = mine(_config(tmp_path, pairs, corpus, "a"), _model(HashEncoder()), log=lambda _: None)
    b = mine(_config(tmp_path, pairs, corpus, "b", chunk_size=5, query_block=3), _model(HashEncoder()), log=lambda _: None)
    with open(a.output, "rb") as fa, open(b.output, "rb") as fb:
        assert fa.read() == fb.read()
    assert a.stats["counts"] == b.stats["counts"]


def test_an_interrupted_run_resumes_where_it_stopped_with_identical_output(inputs):
    tmp_path, pairs, corpus = inputs
    reference = mine(_config(tmp_path, pairs, corpus, "reference"), _model(HashEncoder()), log=lambda _: None)
    config = _config(tmp_path, pairs, corpus)
    with pytest.raises(Interrupted):
        mine(config, _model(CountingEncoder(stop_after=3)), log=lambda _: None)
    assert not (tmp_path / "mined.jsonl").exists() and not (tmp_path / "mined.stats.json").exists()
    again = CountingEncoder()
    result = mine(config, _model(again), log=lambda _: None)
    corpus_chunks = -(-(N_PAIRS + 32) // 8)
    assert again.chunks("query") == 0 and again.chunks("document") == corpus_chunks - 3  # only what was missing
    assert result.stats["cache"]["corpus"]["chunks_reused"] == 3
    with open(reference.output, "rb") as fa, open(result.output, "rb") as fb:
        assert fa.read() == fb.read()


def test_a_changed_corpus_or_model_is_detected_and_never_mixed(inputs):
    tmp_path, pairs, corpus = inputs
    config = _config(tmp_path, pairs, corpus)
    mine(config, _model(HashEncoder()), log=lambda _: None)
    rows = _read(corpus)
    filler = next(i for i, r in enumerate(rows) if r["text"].startswith("def g"))
    rows[filler]["text"] = "def changed():\n    return merge"  # every positive stays in the corpus
    write_jsonl(corpus, rows)
    logged, encoder = [], CountingEncoder()
    result = mine(config, _model(encoder), log=logged.append)
    assert any(line.startswith("corpus embeddings: texts.sha256 changed since") for line in logged)
    assert encoder.chunks("document") == result.stats["cache"]["corpus"]["chunks_encoded"] == -(-(N_PAIRS + 32) // 8)
    assert encoder.chunks("query") == 0  # the queries did not change: their cache is reused
    logged, other = [], CountingEncoder(salt="retrained")
    changed = mine(config, _model(other), log=logged.append)
    assert any(line.startswith("queries embeddings: model.salt changed since") for line in logged)
    assert any(line.startswith("corpus embeddings: model.salt changed since") for line in logged)
    assert other.chunks("query") > 0 and changed.stats["cache"]["corpus"]["chunks_reused"] == 0


def test_positives_missing_from_the_corpus_are_scored_and_counted(inputs):
    tmp_path, pairs, _ = inputs
    rows = pair_rows(N_PAIRS)
    corpus = write_jsonl(tmp_path / "half.jsonl", [{"text": r["y"]} for r in rows[::2]] + [{"text": "def h(): pass"}])
    result = mine(_config(tmp_path, pairs, corpus, num_negatives=2), _model(HashEncoder()), log=lambda _: None)
    assert result.stats["queries"]["positive_not_in_corpus"] == N_PAIRS // 2
    encoder = HashEncoder()
    for r in _read(result.output):
        assert r["positive_score"] == pytest.approx(float(encoder.vector(r["x"]) @ encoder.vector(r["y"])))


@pytest.mark.parametrize("corpus_rows,message", [
    ([], r"has no documents; give a corpus with at least one non-blank text"),
    ([{"text": "   "}], r"has no documents \(1 blank lines or texts skipped\)"),
    ([{"text": "unrelated text"}], r"none of the 40 positives of the pairs \(paired_jsonl\) is a document of the corpus"),
])
def test_bad_inputs_fail_before_any_encoding(inputs, corpus_rows, message):
    tmp_path, pairs, _ = inputs
    corpus = write_jsonl(tmp_path / "bad.jsonl", corpus_rows)
    encoder = HashEncoder()
    with pytest.raises(ValueError, match=message):
        mine(_config(tmp_path, pairs, corpus), _model(encoder), log=lambda _: None)
    assert encoder.calls == []


def test_a_model_that_cannot_be_loaded_fails_before_the_inputs_are_read(tmp_path):
    (tmp_path / "empty").mkdir()
    missing_pairs = str(tmp_path / "no_such_pairs.jsonl")  # reading these would fail differently
    for spec, message in [
        (ModelSpec(checkpoint=str(tmp_path / "empty")), r"not a cpt-jax run \(no checkpoints/ inside\)"),
        (ModelSpec(sentence_transformer=str(tmp_path / "empty")), r"is not a sentence-transformers directory"),
        (ModelSpec(sentence_transformer="pkg://no_such_package_here/model"), r"package 'no_such_package_here' is not"),
    ]:
        with pytest.raises(FileNotFoundError, match=message):
            mine(_config(tmp_path, missing_pairs, None, model=spec), log=lambda _: None)


def test_a_run_without_a_readable_checkpoint_fails_after_the_inputs_and_before_any_encoding(inputs):
    tmp_path, pairs, corpus = inputs
    (tmp_path / "run" / "checkpoints").mkdir(parents=True)  # looks like a run, holds no step
    config = _config(tmp_path, pairs, corpus, model=ModelSpec(checkpoint=str(tmp_path / "run")))
    with pytest.raises(FileNotFoundError, match=r"No checkpoint under .*run/checkpoints; pass the output_dir"):
        mine(config, log=lambda _: None)
    assert not (tmp_path / "mined.cache").exists()
