"""The results report: experiment definitions, the runner's reuse rules, summaries, plots, the
Markdown, and (slow) `python -m report --quick` end to end. The main line (the main job, its
table and sentences) is tested in test_main_line.py; the probe task's own rules with the library
(tests/data/test_probe_tasks.py)."""

from __future__ import annotations

import dataclasses
import importlib.util
import json
import os
import shlex
import subprocess
import sys

import gin
import pytest

from cpt_jax.cli import flags as config
from cpt_jax.data import probe_tasks
from cpt_jax.interop import pretrained
from cpt_jax.model import ModelConfig
from cpt_jax.train.config import validate
from report import analysis, markdown, runner
from report.experiments import FULL, MAIN_GIN, MINILM, QUICK, Eval, Run, Sizes, experiments
from cpt_jax.train.metrics import format_duration
from tests.report.fakes import CODE_KEY


def _experiment(sizes: Sizes, key: str):
    return next(exp for exp in experiments(sizes) if exp.key == key)


@pytest.fixture
def clean_gin():
    gin.clear_config()
    yield
    gin.clear_config()


# ---------------------------------------------------------------- where the report lives


def test_the_report_is_in_the_checkout_not_the_installed_package():
    """report/ sits beside configs/ at the repository root, which it finds from its own location."""
    assert importlib.util.find_spec("cpt_jax.report") is None
    assert os.path.dirname(os.path.abspath(runner.__file__)) == os.path.join(runner.REPO_ROOT, "report")
    for exp in experiments(QUICK):
        for run in exp.runs:
            assert all(os.path.isfile(os.path.join(runner.REPO_ROOT, f)) for f in run.gin_files)


# ---------------------------------------------------------------- experiment definitions


@pytest.mark.parametrize("sizes", [FULL, QUICK], ids=["full", "quick"])
def test_every_run_builds_the_train_config_it_means(sizes, clean_gin, tmp_path):
    """Each training command goes through the real gin edge and gives the intended TrainConfig, one
    that passes the checks training runs before it builds anything (on the report's one CPU device)."""
    run_names = []
    minilm = pretrained.model_config(pretrained.resolve(MINILM), ModelConfig())
    for exp in experiments(sizes):
        for run in exp.runs:
            run_names.append(run.name)
            argv = runner.Runner(str(tmp_path), str(tmp_path / "probe")).train_argv(run)
            gin.clear_config()
            assert config.parse_flags(argv[3:]) == []
            train = config.build("TrainConfig")
            assert train.output_dir == runner.display_path(str(tmp_path / run.name))
            validate(train, num_devices=1)
            if run.name == "main":
                _check_main_run(run, train, sizes)
                continue
            assert train.num_steps == dict(run.bindings)["TrainConfig.num_steps"]
            assert train.checkpoint_every == train.num_steps
            if train.grad_cache_chunk_size:
                assert train.global_batch_size % train.grad_cache_chunk_size == 0
            if run.name == "minilm_scratch":
                assert train.init_from is None and train.tokenizer_path == MINILM
                assert train.model == minilm  # the architecture init_from builds, at random init
            if run.name == "minilm_pretrained":
                assert train.init_from == MINILM
            assert train.shared_delimiters == (run.name == "delimiters_shared")
    assert len(run_names) == len(set(run_names)) and run_names[0] == "main"
    batches = [dict(r.bindings)["TrainConfig.global_batch_size"] for r in _experiment(sizes, "batch_size").runs]
    assert batches == list(sizes.batch_sizes) * 2


def _check_main_run(run, train, sizes):
    """FULL: the gin file alone (the README's main job, output_dir aside); QUICK: shortened."""
    assert train.init_from == MINILM
    assert [s.dataset for s in train.data.sources] == ["site_code", "site_text"]
    gin.clear_config()
    config.parse_flags([f"--gin_file={MAIN_GIN}"])
    as_in_readme = config.build("TrainConfig")
    if sizes is FULL:
        assert run.bindings == ()
        assert train == dataclasses.replace(as_in_readme, output_dir=train.output_dir)
    else:
        assert (train.num_steps, train.global_batch_size) == (QUICK.main_steps, QUICK.main_batch)
        assert train.num_steps < as_in_readme.num_steps and train.global_batch_size < as_in_readme.global_batch_size


def test_full_sizes_are_the_ones_the_issue_asks_for():
    assert FULL.batch_sizes == (64, 512, 4096) and FULL.main_max_pairs == 1000 and FULL.main_steps is None
    assert FULL.probe == probe_tasks.StdlibPackages(classes=15, max_train=150, max_held_out=50)
    assert all(b % FULL.grad_cache_chunk == 0 for b in FULL.batch_sizes if b > FULL.grad_cache_chunk)
    assert 0 < FULL.batch_warmup < FULL.batch_steps and 0 < FULL.delimiter_warmup < FULL.delimiter_steps
    assert QUICK.batch_steps < FULL.batch_steps and QUICK.init_steps < FULL.init_steps


@pytest.mark.parametrize(
    "value,flag",
    [(3, "--gin.A.b=3"), (1e-12, "--gin.A.b=1e-12"), (None, "--gin.A.b=None"), (True, "--gin.A.b=True"),
     ("gelu", "--gin.A.b=gelu"), ("pkg://p/m", "--gin.A.b=pkg://p/m"), ("None", "--gin.A.b='None'"),
     ("12", "--gin.A.b='12'"), ("@x", "--gin.A.b='@x'")],
)
def test_gin_flags_read_back_as_the_value(value, flag):
    assert runner.gin_flag("A.b", value) == flag
    _, bindings, _ = config.split_flags([flag])
    assert bindings == [f"A.b = {value!r}"]


# ---------------------------------------------------------------- the runner's reuse rules


def _fake_call(calls):
    """Stands in for runner._call: writes what the CLI would and records the command."""

    def call(argv, log_path):
        calls.append(argv[2])
        if argv[2] == "cpt_jax.train":
            run_dir = argv[-1].split("=", 1)[1]
            with open(os.path.join(run_dir, "metrics.jsonl"), "a") as f:
                f.write(json.dumps({"step": 1, "loss": 2.0, "steps_per_s": 4.0}) + "\n")
        else:
            with open(argv[argv.index("--output") + 1], "w") as f:
                json.dump({CODE_KEY: {}}, f)
        return 1.5

    return call


def test_finished_steps_are_reused_and_a_changed_command_is_refused(tmp_path, monkeypatch):
    calls = []
    monkeypatch.setattr(runner, "_call", _fake_call(calls))
    run = Run("r", "a run", "tiny", ("configs/experiments/tiny_code.gin",), (("TrainConfig.num_steps", 1),),
              (Eval("eval", ("stdlib_code",)), Eval("eval_step0", ("stdlib_code",), step=0)))
    execute = runner.Runner(str(tmp_path), str(tmp_path / "probe"), log=lambda _: None).execute
    first = execute(run)
    assert calls == ["cpt_jax.train", "cpt_jax.evaluate", "cpt_jax.evaluate"]
    assert not first["train"]["reused"] and first["train"]["wall_s"] == 1.5 and first["s_per_step"] == 0.25
    assert first["evals"]["eval"]["results"] == {CODE_KEY: {}}
    os.remove(tmp_path / "r" / "report_eval_step0.json")  # an evaluation lost: only it runs again
    second = execute(run)
    assert calls[3:] == ["cpt_jax.evaluate"] and second["train"]["reused"]
    assert second["evals"]["eval"]["reused"] and not second["evals"]["eval_step0"]["reused"]
    with pytest.raises(RuntimeError, match="different command"):
        execute(dataclasses.replace(run, bindings=(("TrainConfig.num_steps", 2),)))


def test_an_interrupted_training_resumes(tmp_path, monkeypatch):
    calls = []
    monkeypatch.setattr(runner, "_call", _fake_call(calls))
    run = Run("r", "a run", "tiny", ("configs/experiments/tiny_code.gin",), (), ())
    runner_ = runner.Runner(str(tmp_path), str(tmp_path / "probe"), log=lambda _: None)
    os.makedirs(tmp_path / "r")
    marker = {"train": {"command": shlex.join(runner_.train_argv(run)), "wall_s": None}, "evals": {}}
    (tmp_path / "r" / runner.MARKER_FILE).write_text(json.dumps(marker))
    record = runner_.execute(run)
    assert calls == ["cpt_jax.train"] and record["train"]["resumed"]


def test_metrics_keep_the_last_row_of_a_repeated_step(tmp_path):
    rows = [{"step": 1, "loss": 3.0}, {"step": 2, "loss": 2.0}, {"step": 2, "loss": 1.0}]
    (tmp_path / "metrics.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    assert runner.read_metrics(str(tmp_path)) == [rows[0], rows[2]]


# ---------------------------------------------------------------- summaries, Markdown, plots


@pytest.mark.parametrize(
    "values,word", [([1, 2, 3], "rises"), ([3, 2], "falls"), ([1, 1], "does not change"),
                    ([1, 3, 2], "does not move in one direction")],
)
def test_trend(values, word):
    assert analysis.trend(values) == word


def test_loss_stability_counts_rises():
    metrics = [{"step": i, "loss": v, "skipped_steps": float(i == 3)} for i, v in enumerate([5, 4, 4.5, 3, 3.5, 2], 1)]
    stats = analysis.loss_stability(metrics)
    assert stats == {"final_loss": 2.0, "rises": 2.0, "largest_rise": 0.5, "skipped_steps": 1.0}


def test_summaries_follow_the_numbers(results):
    batch = results["summary"]["batch_size"]
    assert [row["batch"] for row in batch["rows"]] == list(QUICK.batch_sizes)
    assert "rises with the batch size" in batch["sentences"][0]  # made-up scores grow with the run index
    assert any("larger than the 20 text training pairs" in s for s in batch["sentences"])
    init = results["summary"]["initialisation"]
    assert init["rows"]["scratch_before"]["mrr"] == 0.02 and "ends" in init["sentences"][0]
    probe = results["summary"]["probe"]["rows"]
    assert [r["system"] for r in probe].count("bag of words (TF-IDF)") == 1
    assert probe[0]["system"] == "bag of words (TF-IDF)"
    names = [r["system"] for r in probe]
    assert len(names) == len(set(names)) and "main job, pretrained start" in names
    assert {"MiniLM architecture, random init", "MiniLM architecture, random init (MiniLM from scratch)"} <= set(names)


def test_markdown_writes_every_number_from_the_results(results, tmp_path):
    text = markdown.render(results)
    runs = results["runs"]
    for row in results["summary"]["batch_size"]["rows"]:
        for value in (row["code"]["mrr"], row["code"]["ndcg@10"], row["text"]["ndcg@10"], row["text"]["mrr"]):
            assert analysis.fmt(value) in text
    pretrained_run = runs["minilm_pretrained"]["evals"]
    assert analysis.fmt(pretrained_run["eval_step0"]["results"][CODE_KEY]["cpt-jax (trained)"]["mrr"]) in text
    for kind in ("separate", "shared"):
        final = analysis.loss_stability(runs[f"delimiters_{kind}"]["metrics"])["final_loss"]
        assert f"| {kind} | {analysis.fmt(final)} |" in text
    assert format_duration(results["report"]["wall_s"]) in text
    for name, record in runs.items():
        assert f"`{name}`" in text and record["evals"]["eval"]["command"] in text
    for key, path in results["plots"].items():
        if key != "json":
            assert f"]({path})" in text
            assert (tmp_path / path).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert "1 of the 9 trainings were reused" in text


# ---------------------------------------------------------------- end to end


@pytest.mark.slow
@pytest.mark.timeout(1800)
def test_quick_report_end_to_end(tmp_path):
    """The real CLIs on tiny sizes: RESULTS.md, the PNGs and results.json, numbers matching; a
    second invocation reuses every run."""
    out = tmp_path / "report"
    env = dict(os.environ)
    # A user's process sees the real CPU device, not the 8 fake ones tests/conftest.py asks for.
    env["XLA_FLAGS"] = " ".join(f for f in env.get("XLA_FLAGS", "").split() if "device_count" not in f)
    command = [sys.executable, "-m", "report", "--quick", "--out_dir", str(out)]
    git = lambda *a: subprocess.run(["git", *a], cwd=runner.REPO_ROOT, capture_output=True, text=True).stdout.strip()  # noqa: E731
    code = {"commit": git("rev-parse", "HEAD"), "dirty": bool(git("status", "--porcelain"))}
    subprocess.run(command, cwd=runner.REPO_ROOT, env=env, check=True)
    text = (out / "RESULTS.md").read_text()
    results = json.loads((out / "results" / "results.json").read_text())
    for key, path in results["plots"].items():
        assert (out / path).is_file(), key
    for name in results["experiments"]["batch_size"]["runs"]:
        scores = results["runs"][name]["evals"]["eval"]["results"]
        task = next(k for k in scores if k.startswith(("stdlib_code/test", "stdlib_text/test")))
        assert analysis.fmt(scores[task]["cpt-jax (trained)"]["mrr"]) in text
    main = results["runs"]["main"]["evals"]["eval"]["results"]
    code_task = next(k for k in main if k.startswith("site_code/test"))
    assert list(main[code_task]) == ["cpt-jax (trained)", "pretrained start", "random init", "BM25"]
    for row in results["summary"]["main"]["rows"].values():
        assert analysis.fmt(row["code"]["mrr"]) in text and analysis.fmt(row["probe_accuracy"]) in text
    step0 = results["runs"]["minilm_pretrained"]["evals"]["eval_step0"]["results"]
    assert analysis.fmt(next(iter(step0.values()))["cpt-jax (trained)"]["mrr"]) in text
    for kind in ("separate", "shared"):
        stats = analysis.loss_stability(results["runs"][f"delimiters_{kind}"]["metrics"])
        assert f"| {kind} | {analysis.fmt(stats['final_loss'])} |" in text
    assert format_duration(results["report"]["wall_s"]) in text
    assert results["report"]["git"] == code  # the checkout the runs were trained from
    again = subprocess.run(command, cwd=runner.REPO_ROOT, env=env, check=True, capture_output=True, text=True)
    assert "training" not in again.stdout.replace("reusing the finished training", "")
    assert "of the 9 trainings were reused" in (out / "RESULTS.md").read_text()


@pytest.mark.parametrize(
    "data_config",
    [
        {"sources": [{"dataset": "stdlib_code", "split": "train", "data_dir": "outputs/tfds", "name": "stdlib_code"}]},
        {"dataset": "stdlib_code", "split": "train", "data_dir": "outputs/tfds"},  # a run from before the one data path
    ],
    ids=["sources", "older-run"],
)
def test_train_examples_reads_the_prepared_split_of_the_run(monkeypatch, data_config):
    import types

    import tensorflow_datasets as tfds

    from cpt_jax import checkpoint

    seen = []

    def builder(name, data_dir):
        seen.append((name, data_dir))
        return types.SimpleNamespace(info=types.SimpleNamespace(splits={"train": types.SimpleNamespace(num_examples=4891)}))

    monkeypatch.setattr(tfds, "builder", builder)
    monkeypatch.setattr(checkpoint, "read_meta", lambda run_dir: (400, {"data_config": data_config}))
    assert runner.train_examples("outputs/tiny_code") == 4891
    assert seen == [("stdlib_code", os.path.join(runner.REPO_ROOT, "outputs/tfds"))]
