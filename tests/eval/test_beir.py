"""BEIR folders: metrics against a brute-force reference, chunking, the BEIR rules, bad input."""

from __future__ import annotations

import json
import math
import os

import numpy as np
import pytest

from cpt_jax.eval.beir import evaluate_beir, evaluate_beir_bm25, load_beir
from cpt_jax.eval.bm25 import BM25Index
from tests.eval.fakes import HashEncoder, ScoreEncoder, write_beir

WORDS = [f"w{i}" for i in range(25)]


def _random_beir(folder: str, seed: int = 0, num_docs: int = 150, num_queries: int = 30) -> str:
    """Random bag-of-words docs (some duplicated, for ties), graded qrels, and every edge case:
    a query whose id is a document's, a query judged only 0, one never judged, a missing doc."""
    rng = np.random.default_rng(seed)
    corpus = [
        {
            "_id": f"d{i}",
            "title": " ".join(rng.choice(WORDS, 2)) if i % 3 else "",
            "text": " ".join(rng.choice(WORDS, rng.integers(1, 6))),
        }
        for i in range(num_docs)
    ]
    corpus[40] = {**corpus[7], "_id": "d40"}  # identical texts: a tie
    targets = rng.integers(num_docs, size=num_queries)  # each query is words of its target plus noise
    queries = [
        {"_id": f"q{j}", "text": f"{corpus[t]['title']} {corpus[t]['text']} {rng.choice(WORDS)}"}
        for j, t in enumerate(targets)
    ]
    queries.append({"_id": "d5", "text": corpus[5]["title"] + " " + corpus[5]["text"]})
    qrels = []
    for j in range(num_queries - 2):
        for d in rng.choice(num_docs, rng.integers(1, 5), replace=False):
            qrels.append((f"q{j}", f"d{d}", int(rng.integers(0, 4))))
        qrels.append((f"q{j}", f"d{targets[j]}", 1 + j % 3))
    qrels += [(f"q{num_queries - 2}", "d3", 0), ("d5", "d5", 2), ("d5", "d7", 1), ("q0", "missing-doc", 2)]
    return write_beir(folder, corpus, queries, qrels)


def _reference(folder: str, score) -> dict[str, float]:
    """The metrics by their definitions on the full [Q, D] score matrix ``score(queries, docs)``."""
    corpus = [json.loads(line) for line in open(os.path.join(folder, "corpus.jsonl"))]
    queries = {q["_id"]: q["text"] for q in map(json.loads, open(os.path.join(folder, "queries.jsonl")))}
    qrels: dict[str, dict[str, int]] = {}
    for line in list(open(os.path.join(folder, "qrels", "test.tsv")))[1:]:
        q, d, g = line.split("\t")
        qrels.setdefault(q, {})[d] = int(g)
    ids = [d["_id"] for d in corpus]
    texts = [f"{d['title']} {d['text']}" if d.get("title") else d["text"] for d in corpus]
    qids = [q for q in queries if any(g > 0 for g in qrels.get(q, {}).values())]
    full = np.asarray(score([queries[q] for q in qids], texts), np.float64)
    ndcg, mrr, recall = [], [], []
    for r, q in enumerate(qids):
        order = sorted((i for i in range(len(ids)) if ids[i] != q), key=lambda i: (-full[r, i], i))
        gains = [max(qrels[q].get(ids[i], 0), 0) for i in order]
        ideal = sorted((g for g in qrels[q].values() if g > 0), reverse=True)
        dcg = sum(g / math.log2(n + 2) for n, g in enumerate(gains[:10]))
        ndcg.append(dcg / sum(g / math.log2(n + 2) for n, g in enumerate(ideal[:10])))
        first = next((n for n, g in enumerate(gains[:10]) if g > 0), None)
        mrr.append(0.0 if first is None else 1 / (first + 1))
        recall.append(sum(g > 0 for g in gains[:100]) / len(ideal))
    return {"ndcg@10": np.mean(ndcg), "mrr@10": np.mean(mrr), "recall@100": np.mean(recall)}


def _dense_scores(queries: list[str], docs: list[str]) -> np.ndarray:
    enc = HashEncoder()
    return enc.encode(queries, "query", 8) @ enc.encode(docs, "document", 8).T


def _evaluate(folder: str, **kwargs) -> dict[str, float]:
    with pytest.warns(UserWarning, match="1 of .* judged document ids .* not in corpus"):
        return evaluate_beir(HashEncoder(), folder, **kwargs)


@pytest.fixture(scope="module")
def folder(tmp_path_factory) -> str:
    return _random_beir(str(tmp_path_factory.mktemp("beir") / "toy"))


@pytest.mark.parametrize("chunk_size", [1, 7, 10_000])
def test_dense_metrics_match_brute_force(folder, chunk_size):
    result = _evaluate(folder, chunk_size=chunk_size, batch_size=4, query_block=5)
    expected = _reference(folder, _dense_scores)
    assert result["num_queries"] == 29 and result["num_docs"] == 150
    for metric, value in expected.items():
        assert result[metric] == pytest.approx(value, abs=1e-12), metric
    assert 0.0 < result["recall@100"] < 1.0  # the missing judged doc is never found


def test_chunk_size_does_not_change_anything(folder):
    results = [_evaluate(folder, chunk_size=c) for c in (1, 7, 150, 10_000)]
    assert all(r == results[0] for r in results)


def test_encoder_sees_bounded_chunks_and_the_right_sides(folder):
    enc = HashEncoder()
    with pytest.warns(UserWarning):
        evaluate_beir(enc, folder, chunk_size=32, batch_size=16)
    sides = [side for side, _ in enc.calls]
    assert sides == ["query"] + ["document"] * 5  # 150 docs in chunks of 32
    assert [len(texts) for _, texts in enc.calls[1:]] == [32, 32, 32, 32, 22]


def test_bm25_matches_brute_force(folder):
    with pytest.warns(UserWarning, match="not in corpus"):
        result = evaluate_beir_bm25(folder)
    expected = _reference(folder, lambda qs, ds: np.stack([BM25Index(ds).scores(q) for q in qs]))
    for metric, value in expected.items():
        assert result[metric] == pytest.approx(value, abs=1e-12), metric


def test_title_and_text_rule(tmp_path):
    corpus = [
        {"_id": "a", "title": "Title", "text": "body one"},
        {"_id": "b", "title": "", "text": "body two"},
        {"_id": "c", "text": "body three"},
        {"_id": 4, "title": None, "text": "body four"},
    ]
    folder = write_beir(str(tmp_path), corpus, [{"_id": "q", "text": "what"}], [("q", "a", 1)])
    enc = HashEncoder()
    evaluate_beir(enc, folder)
    assert enc.calls == [("query", ["what"]), ("document", ["Title body one", "body two", "body three", "body four"])]


def _scored_folder(tmp_path, qrels, queries=("q",)) -> str:
    """Docs d0..d5 whose similarity to every query is 0.9, 0.8, ..., 0.4 (ScoreEncoder)."""
    corpus = [{"_id": f"d{i}", "title": "", "text": f"{0.9 - 0.1 * i:.1f}"} for i in range(6)]
    return write_beir(str(tmp_path), corpus, [{"_id": q, "text": "?"} for q in queries], qrels)


def test_graded_relevance_hand_computed(tmp_path):
    folder = _scored_folder(tmp_path, [("q", "d1", 2), ("q", "d3", 1), ("q", "d0", 0)])
    result = evaluate_beir(ScoreEncoder(), folder)
    dcg = 2 / math.log2(3) + 1 / math.log2(5)  # ranks 2 and 4
    idcg = 2 / math.log2(2) + 1 / math.log2(3)
    assert result["ndcg@10"] == pytest.approx(dcg / idcg)
    assert result["mrr@10"] == pytest.approx(1 / 2)  # d0 at rank 1 has grade 0: not relevant
    assert result["recall@100"] == pytest.approx(1.0)


def test_ignore_identical_ids(tmp_path):
    # Query "d0" is document d0 (the top scorer for every query): it must not be returned for
    # itself, so d1 moves to rank 1. Query "d2" judges itself relevant: it counts, but is never found.
    qrels = [("d0", "d1", 1), ("d2", "d2", 1), ("d2", "d3", 1), ("q", "d0", 1)]
    folder = _scored_folder(tmp_path, qrels, queries=("d0", "d2", "q"))
    result = evaluate_beir(ScoreEncoder(), folder)
    assert result["mrr@10"] == pytest.approx((1 + 1 / 3 + 1) / 3)  # d3 is 3rd once d2 is gone
    assert result["recall@100"] == pytest.approx((1 + 1 / 2 + 1) / 3)
    assert evaluate_beir_bm25(folder)["recall@100"] == pytest.approx((1 + 1 / 2 + 1) / 3)


def test_corpus_smaller_than_cutoffs(tmp_path):
    folder = _scored_folder(tmp_path, [("q", "d5", 1)])
    result = evaluate_beir(ScoreEncoder(), folder, chunk_size=4)
    assert result == {"ndcg@10": pytest.approx(1 / math.log2(7)), "mrr@10": pytest.approx(1 / 6),
                      "recall@100": 1.0, "num_queries": 1, "num_docs": 6}


def test_unknown_qrels_ids_warn_or_raise(tmp_path):
    folder = _scored_folder(tmp_path, [("q", "d1", 1), ("ghost", "d2", 1), ("q", "d9", 1)])
    with pytest.warns(UserWarning) as record:
        task = load_beir(folder)
    messages = " ".join(str(w.message) for w in record)
    assert "1 of 2 query ids" in messages and "1 of 2 judged document ids" in messages
    assert task.query_ids == ["q"] and task.qrels == {0: {1: 1, -2: 1}}
    with pytest.raises(ValueError, match="not in queries.jsonl"):
        load_beir(folder, strict=True)


def _write(path, text: str) -> None:
    with open(path, "w") as f:
        f.write(text)


HEADER = "query-id\tcorpus-id\tscore\n"


@pytest.mark.parametrize(
    "file, content, match",
    [
        ("corpus.jsonl", '{"_id": "d0", "text": "0.9"}\n\n{"_id": "d1", "text": 0.8\n', r"corpus.jsonl:3: not valid JSON"),
        ("corpus.jsonl", '{"_id": "d0", "text": "0.9"}\n{"_id": "d1"}\n', r"corpus.jsonl:2: missing field 'text'"),
        ("corpus.jsonl", '["d0", "0.9"]\n', r"corpus.jsonl:1: expected a JSON object"),
        ("corpus.jsonl", '{"_id": "d1", "text": "0.9"}\n' * 2, r"corpus.jsonl:2: document id 'd1' also at line 1"),
        ("corpus.jsonl", "", "no documents"),
        ("queries.jsonl", '{"_id": "q", "text": "a"}\n' * 2, r"queries.jsonl:2: query id 'q' appears twice"),
        ("queries.jsonl", '{"_id": "q", "text": ["a"]}\n', r"field 'text' must be str"),
        ("qrels/test.tsv", "q\td1\t1\n", "expected the header"),
        ("qrels/test.tsv", HEADER + "q\td1\t1\nq\td2\n", r"test.tsv:3: expected 3 tab-separated"),
        ("qrels/test.tsv", HEADER + "q\td1\t0.5\n", r"test.tsv:2: score '0.5' is not an integer"),
        ("qrels/test.tsv", HEADER + "q\td1\t0\n", "no query .* score > 0"),
    ],
)
def test_malformed_folders(tmp_path, file, content, match):
    folder = _scored_folder(tmp_path, [("q", "d1", 1)])
    _write(os.path.join(folder, file), content)
    with pytest.raises(ValueError, match=match):
        evaluate_beir(ScoreEncoder(), folder)


def test_missing_files_name_what_they_hold(tmp_path):
    folder = _scored_folder(tmp_path, [("q", "d1", 1)])
    with pytest.raises(FileNotFoundError, match=r"qrels/dev.tsv.*splits here: \['test'\]"):
        evaluate_beir(ScoreEncoder(), folder, split="dev")
    os.remove(os.path.join(folder, "corpus.jsonl"))
    with pytest.raises(FileNotFoundError, match="corpus.jsonl: the BEIR corpus"):
        evaluate_beir(ScoreEncoder(), folder)


def test_bad_encoder_output_is_caught(tmp_path):
    folder = _scored_folder(tmp_path, [("q", "d1", 1)])

    class Broken(ScoreEncoder):
        def encode(self, texts, side, batch_size):
            return super().encode(texts, side, batch_size)[:-1]

    with pytest.raises(ValueError, match="returned shape"):
        evaluate_beir(Broken(), folder)
