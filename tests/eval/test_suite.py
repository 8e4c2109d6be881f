"""cpt_jax.eval.suite: named Encoders scored under an EvalSpec, baselines added, one table.

Pair tasks are read through a stand-in load_pair_task (no TFDS build); BEIR and classification
run end to end on tiny folders with the hashed bag-of-words encoder of tests/eval/fakes.py.
"""

from __future__ import annotations

import ast
import os

import numpy as np
import pytest

from cpt_jax.eval import suite
from cpt_jax.eval.spec import EvalSpec
from cpt_jax.eval.tasks import PairTask, score_dense
from tests.eval.fakes import HashEncoder, write_toy_folders

EVAL_DIR = os.path.join(os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__)))), "cpt_jax", "eval")


@pytest.fixture
def folders(tmp_path):
    return write_toy_folders(str(tmp_path))


@pytest.fixture
def pair_task(monkeypatch):
    """suite reads pair tasks through a stand-in: 12 queries, each sharing its words with one doc."""
    task = PairTask(
        "toy/test", [f"alpha{i} beta{i}" for i in range(12)], [f"alpha{i} beta{i} gamma" for i in range(12)],
        np.arange(12, dtype=np.int64),
    )
    calls = []
    monkeypatch.setattr(suite.builders, "prepare", lambda name, data_dir: calls.append(("prepare", name, data_dir)))
    monkeypatch.setattr(
        suite, "load_pair_task", lambda name, split, data_dir, limit=None: calls.append((name, split, data_dir)) or task
    )
    return calls


def test_pair_tasks_score_every_encoder_and_bm25(pair_task):
    encoder = HashEncoder()
    results = suite.evaluate({"a": encoder}, EvalSpec(tasks=("stdlib_code",), data_dir="d", split="dev", batch_size=3))
    assert pair_task == [("prepare", "stdlib_code", "d"), ("stdlib_code", "dev", "d")]
    (task,) = results
    assert task == "toy/test (12 queries, 12 docs)" and list(results[task]) == ["a", suite.BM25]
    assert set(results[task]["a"]) == {"mrr", "mrr@10", "ndcg@10", "recall@10"} and results[task]["a"]["mrr"] == 1.0
    assert [side for side, _ in encoder.calls] == ["query", "document"]


def test_everything_in_order_with_baselines_last(folders, pair_task):
    beir, cls_dir = folders
    spec = EvalSpec(tasks=("stdlib_code",), beir=(beir,), classification=(cls_dir,), chunk_size=7)
    results = suite.evaluate({"a": HashEncoder(), "b": HashEncoder("x")}, spec)
    assert list(results) == [
        "toy/test (12 queries, 12 docs)",
        "beir:toy_beir/test (5 queries, 30 docs)",
        "classification:toy_cls (30 train, 10 test)",
    ]
    pair, beir_scores, cls_scores = results.values()
    assert list(pair) == list(beir_scores) == ["a", "b", "BM25"]
    assert list(cls_scores) == ["a", "b", "bag of words (TF-IDF)"]
    assert set(cls_scores["a"]) == {"accuracy", "macro_f1", "best_c", "cv_accuracy"}


def test_a_built_in_classification_task_is_prepared_under_the_data_dir(folders, monkeypatch, tmp_path):
    """The entry "stdlib_packages" is built (here: a stand-in prepare) under spec.data_dir and keyed by its name."""
    _, cls_dir = folders
    named = tmp_path / "tfds" / "classification" / "stdlib_packages"
    named.parent.mkdir(parents=True)
    os.rename(cls_dir, named)
    calls = []
    monkeypatch.setattr(suite.probe_tasks, "prepare", lambda name, data_dir: calls.append((name, data_dir)) or str(named))
    spec = EvalSpec(tasks=(), classification=("stdlib_packages",), data_dir=str(tmp_path / "tfds"))
    results = suite.evaluate({"a": HashEncoder()}, spec)
    assert calls == [("stdlib_packages", str(tmp_path / "tfds"))]
    assert list(results) == ["classification:stdlib_packages (30 train, 10 test)"]


def test_no_baselines_and_baselines_alone(folders):
    beir, cls_dir = folders
    spec = EvalSpec(tasks=(), beir=(beir,), classification=(cls_dir,), baselines=False, batch_size=8, chunk_size=4)
    results = suite.evaluate({"a": HashEncoder(), "b": HashEncoder("x")}, spec)
    assert [list(scores) for scores in results.values()] == [["a", "b"], ["a", "b"]]
    alone = suite.evaluate({}, EvalSpec(tasks=(), beir=(beir,), classification=(cls_dir,)))
    assert [list(scores) for scores in alone.values()] == [["BM25"], ["bag of words (TF-IDF)"]]


def test_bad_systems_and_specs_are_refused(folders):
    spec = EvalSpec(tasks=(), beir=(folders[0],))
    with pytest.raises(ValueError, match=r"\['BM25'\] clash with the baselines"):
        suite.evaluate({"BM25": HashEncoder()}, spec)
    with pytest.raises(ValueError, match="no systems to evaluate"):
        suite.evaluate({}, EvalSpec(tasks=(), beir=(folders[0],), baselines=False))
    with pytest.raises(TypeError, match=r"\['x'\] have no encode"):
        suite.evaluate({"x": object()}, spec)
    with pytest.raises(TypeError, match="spec must be an EvalSpec"):
        suite.evaluate({"a": HashEncoder()}, {"tasks": ()})


def test_score_dense_checks_the_encoder_output():
    task = PairTask("t/test", ["a"], ["a", "b"], np.zeros(1, np.int64))

    class Wrong:
        def encode(self, texts, side, batch_size):
            return np.zeros((len(texts) + 1, 4), np.float32)

    with pytest.raises(ValueError, match=r"returned shape \(2, 4\); expected \[n, d\]"):
        score_dense(task, Wrong(), 4)


def test_format_table_mixed_columns():
    table = suite.format_table({"t": {"s1": {"accuracy": 0.5, "dev_accuracy": 0.25}, "s2": {"accuracy": 1.0}}})
    lines = table.splitlines()
    assert lines[1].split() == ["system", "accuracy", "dev_accuracy"]
    assert lines[2].split() == ["s1", "0.5000", "0.2500"] and lines[3].split() == ["s2", "1.0000", "-"]
    assert table == (
        "t\n"
        "  system                 accuracy  dev_accuracy\n"
        "  s1                       0.5000        0.2500\n"
        "  s2                       1.0000             -"
    )


def test_eval_imports_nothing_above_it():
    """cpt_jax/eval may use cpt_jax.data; never the model, embedder, training or CLI layers."""
    forbidden = ("cpt_jax.model", "cpt_jax.embedder", "cpt_jax.train", "cpt_jax.cli")
    for name in sorted(os.listdir(EVAL_DIR)):
        if not name.endswith(".py"):
            continue
        with open(os.path.join(EVAL_DIR, name)) as f:
            tree = ast.parse(f.read())
        for node in ast.walk(tree):
            if isinstance(node, ast.Import):
                modules = [a.name for a in node.names]
            elif isinstance(node, ast.ImportFrom):
                modules = [node.module or ""] + [f"{node.module}.{a.name}" for a in node.names]
            else:
                continue
            bad = [m for m in modules if m.startswith(forbidden)]
            assert not bad, f"cpt_jax/eval/{name} imports {bad}"
