"""The evaluate CLI: flag parsing, and BEIR / classification runs end to end with a fake encoder.

The checkpoint loader is replaced by hashed bag-of-words encoders (tests/eval/fakes.py), so
these runs cover parsing, dispatch, baselines, the table and the JSON file without a model;
the real checkpoint path is covered by tests/train/test_e2e.py (slow).
"""

from __future__ import annotations

import json
import os

import numpy as np
import pytest

from cpt_jax import evaluate as cli
from cpt_jax.data import builders
from tests.eval.fakes import HashEncoder, write_beir, write_jsonl


class FakeEmbedder(HashEncoder):
    """Stands in for cpt_jax.embedder.Embedder: load() and random_init() give differently salted encoders."""

    model = tokenizer = max_len = None
    loaded: list[tuple[str, int | None, str | None]] = []

    @classmethod
    def load(cls, run_dir: str, step: int | None = None, dtype: str | None = None) -> FakeEmbedder:
        cls.loaded.append((run_dir, step, dtype))
        return cls("trained")

    @classmethod
    def random_init(cls, model, tokenizer, max_len, seed: int = 0) -> FakeEmbedder:
        return cls("random")


@pytest.fixture
def folders(tmp_path, monkeypatch):
    monkeypatch.setattr(cli, "Embedder", FakeEmbedder)
    corpus = [{"_id": f"d{i}", "title": "", "text": f"topic{i % 5} word{i}"} for i in range(30)]
    queries = [{"_id": f"q{j}", "text": f"topic{j} word{j}"} for j in range(5)]
    beir = write_beir(str(tmp_path / "toy_beir"), corpus, queries, [(f"q{j}", f"d{j}", 1) for j in range(5)])
    rng = np.random.default_rng(0)
    for split, n in (("train", 30), ("test", 10)):
        labels = rng.integers(0, 2, n)
        rows = [{"text": f"{'alpha beta' if y else 'gamma delta'} {rng.integers(9)}", "label": int(y)} for y in labels]
        write_jsonl(str(tmp_path / "toy_cls" / f"{split}.jsonl"), rows)
    run = tmp_path / "run"
    run.mkdir()
    return str(run), beir, str(tmp_path / "toy_cls")


def test_parse_args_defaults_and_lists(tmp_path):
    args = cli.parse_args(["--checkpoint", "r"])
    assert args.tasks == ",".join(builders.DATASETS) and args.beir == "" and args.chunk_size == 10_000
    for skip in ("none", "", "None"):
        args = cli.parse_args(["--checkpoint", "r", "--tasks", skip, "--beir", f"{tmp_path},{tmp_path}"])
        assert cli._list(args.tasks) == [] and cli._list(args.beir) == [str(tmp_path)] * 2
    args = cli.parse_args(["--checkpoint", "r", "--tasks=none", f"--classification={tmp_path}", "--chunk_size=7"])
    assert args.chunk_size == 7 and cli._list(args.classification) == [str(tmp_path)]


@pytest.mark.parametrize(
    "argv, message",
    [
        (["--tasks", "none"], "nothing to evaluate"),
        (["--tasks", "none", "--beir", "/no/such/folder"], "is not a folder"),
        (["--beir", ".", "--chunk_size", "0"], "must be >= 1"),
    ],
)
def test_parse_args_errors(argv, message, capsys):
    with pytest.raises(SystemExit):
        cli.parse_args(["--checkpoint", "r"] + argv)
    assert message in capsys.readouterr().err


def test_main_beir_and_classification_with_baselines(folders, capsys):
    run, beir, cls_dir = folders
    cli.main(["--checkpoint", run, "--tasks", "none", "--beir", beir, "--classification", cls_dir, "--chunk_size", "7"])
    out = capsys.readouterr().out
    results = json.loads(open(os.path.join(run, "eval_test.json")).read())
    beir_task, cls_task = results
    assert beir_task == "beir:toy_beir/test (5 queries, 30 docs)"
    assert cls_task == "classification:toy_cls (30 train, 10 test)"
    assert list(results[beir_task]) == ["cpt-jax (trained)", "random init", "BM25"]
    assert list(results[cls_task]) == ["cpt-jax (trained)", "random init", "bag of words (TF-IDF)"]
    for scores in results[beir_task].values():
        assert set(scores) == {"ndcg@10", "mrr@10", "recall@100"}
        assert scores["mrr@10"] == 1.0  # each query shares both its words with its document only
    assert set(results[cls_task]["cpt-jax (trained)"]) == {"accuracy", "macro_f1", "best_c", "cv_accuracy"}
    assert results[cls_task]["cpt-jax (trained)"]["accuracy"] == 1.0
    assert results[cls_task]["bag of words (TF-IDF)"]["accuracy"] == 1.0
    assert beir_task in out and "recall@100" in out and "macro_f1" in out and "wrote" in out
    assert FakeEmbedder.loaded[-1] == (run, None, None)


def test_main_no_baselines_and_step(folders):
    run, beir, _ = folders
    cli.main(["--checkpoint", run, "--step", "3", "--tasks", "", "--beir", beir, "--split", "test", "--no_baselines"])
    (scores,) = json.loads(open(os.path.join(run, "eval_test_step3.json")).read()).values()
    assert list(scores) == ["cpt-jax (trained)"]
    assert FakeEmbedder.loaded[-1] == (run, 3, None)


def test_main_dtype_is_passed_on_and_names_the_results_file(folders):
    run, beir, _ = folders
    cli.main(["--checkpoint", run, "--dtype", "bfloat16", "--tasks", "", "--beir", beir, "--no_baselines"])
    assert FakeEmbedder.loaded[-1] == (run, None, "bfloat16")
    assert os.path.exists(os.path.join(run, "eval_test_bfloat16.json"))
    assert not os.path.exists(os.path.join(run, "eval_test.json"))  # the float32 results are not overwritten


def test_evaluate_beir_systems_programmatic(folders):
    _, beir, _ = folders
    results = cli.evaluate_beir_systems({"a": HashEncoder(), "b": HashEncoder("x")}, [beir], "test", 4, 8, bm25=False)
    (scores,) = results.values()
    assert list(scores) == ["a", "b"]


def test_format_table_mixed_columns():
    table = cli.format_table({"t": {"s1": {"accuracy": 0.5, "dev_accuracy": 0.25}, "s2": {"accuracy": 1.0}}})
    lines = table.splitlines()
    assert lines[1].split() == ["system", "accuracy", "dev_accuracy"]
    assert lines[2].split() == ["s1", "0.5000", "0.2500"] and lines[3].split() == ["s2", "1.0000", "-"]

