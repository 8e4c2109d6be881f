"""The real CLIs end to end: train (gin overrides), resume, evaluate. Slow: CI runs it in its own step."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
pytestmark = pytest.mark.slow


def _run(args, tmp_path):
    env = {**os.environ, "XLA_FLAGS": "--xla_force_host_platform_device_count=2"}
    proc = subprocess.run(
        [sys.executable, "-m", *args], cwd=REPO, env=env, capture_output=True, text=True, timeout=900
    )
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    return proc.stdout


def _train(tmp_path, steps):
    return _run(
        [
            "cpt_jax.train",
            "--gin_file=configs/experiments/tiny_code.gin",
            f"--gin.TrainConfig.output_dir={tmp_path / 'run'}",
            f"--gin.DATA_DIR={tmp_path / 'tfds'}",
            f"--gin.TrainConfig.num_steps={steps}",
            "--gin.TrainConfig.global_batch_size=16",
            "--gin.TrainConfig.log_every=4",
            "--gin.TrainConfig.checkpoint_every=6",
            "--gin.ModelConfig.vocab_size=1000",
            "--gin_param=OptimizerConfig.warmup_steps = 2",
        ],
        tmp_path,
    )


def test_train_resume_and_evaluate(tmp_path):
    out = _train(tmp_path, 12)
    run = tmp_path / "run"
    assert "step 12/12" in out and "ETA" in out
    assert sorted(os.listdir(run / "checkpoints")) == ["12", "6"]
    assert "TrainConfig.num_steps = 12" in (run / "config.gin").read_text()
    assert any(f.startswith("events.out.tfevents") for f in os.listdir(run / "tensorboard"))
    assert (run / "tokenizer" / "tokenizer.json").exists()

    out = _train(tmp_path, 16)  # a longer run picks up the latest checkpoint
    assert "restored checkpoint at step 12" in out and "step 16/16" in out

    # Another model into the same directory: a clear error, and no checkpoint is moved or lost.
    proc = subprocess.run(
        [sys.executable, "-m", "cpt_jax.train", "--gin_file=configs/experiments/tiny_code.gin",
         f"--gin.TrainConfig.output_dir={run}", f"--gin.DATA_DIR={tmp_path / 'tfds'}",
         "--gin.ModelConfig.vocab_size=1000", "--gin.ModelConfig.d_mlp=256", "--gin.TrainConfig.num_steps=20"],
        cwd=REPO, capture_output=True, text=True, timeout=900,
    )
    assert proc.returncode != 0
    assert "written by a different model" in proc.stderr and "['blocks']['mlp']['wi']['kernel']" in proc.stderr
    assert sorted(os.listdir(run / "checkpoints")) == ["12", "16"]

    out = _run(["cpt_jax.evaluate", f"--checkpoint={run}", "--tasks=stdlib_code"], tmp_path)
    assert "cpt-jax (trained)" in out and "random init" in out and "BM25" in out
    results = json.loads((run / "eval_test.json").read_text())
    (task,) = results
    assert task.startswith("stdlib_code/test")
    for system in ("cpt-jax (trained)", "random init", "BM25"):
        assert 0.0 < results[task][system]["mrr"] <= 1.0


def test_diverging_run_skips_nonfinite_steps_then_stops_with_a_checkpoint(tmp_path):
    """A learning rate of 1e30 blows the weights up after one update; every later step is
    non-finite and skipped, and after 3 in a row the run saves and stops with a clear error."""
    env = {**os.environ, "XLA_FLAGS": "--xla_force_host_platform_device_count=1"}
    proc = subprocess.run(
        [
            sys.executable, "-m", "cpt_jax.train",
            "--gin_file=configs/experiments/tiny_code.gin",
            f"--gin.TrainConfig.output_dir={tmp_path / 'run'}",
            f"--gin.DATA_DIR={tmp_path / 'tfds'}",
            "--gin.TrainConfig.num_steps=50",
            "--gin.TrainConfig.global_batch_size=8",
            "--gin.TrainConfig.log_every=1",
            "--gin.TrainConfig.max_consecutive_nonfinite=3",
            "--gin.ModelConfig.vocab_size=1000",
            "--gin.OptimizerConfig.learning_rate=1e30",
            "--gin.OptimizerConfig.warmup_steps=0",
        ],
        cwd=REPO, env=env, capture_output=True, text=True, timeout=900,
    )
    assert proc.returncode != 0
    assert "FloatingPointError: 3 consecutive steps" in proc.stderr
    records = [json.loads(line) for line in (tmp_path / "run" / "metrics.jsonl").read_text().splitlines()]
    skipped = [r["step"] for r in records if r["skipped_steps"]]
    assert skipped == skipped[:1] + list(range(skipped[0] + 1, skipped[0] + len(skipped)))  # one run of bad steps
    stop = skipped[-1]
    assert (tmp_path / "run" / "checkpoints" / str(stop)).is_dir()


def test_the_main_job_shortened(tmp_path):
    """The README's first command on a short leash: MiniLM imported from its pip package, the site
    corpora built from this environment, two GradCache steps, then evaluated beside its start."""
    run = tmp_path / "run"
    out = _run(
        [
            "cpt_jax.train",
            "--gin_file=configs/experiments/minilm_cpt.gin",
            f"--gin.TrainConfig.output_dir={run}",
            f"--gin.DATA_DIR={tmp_path / 'tfds'}",
            "--gin.TrainConfig.num_steps=2",
            "--gin.TrainConfig.global_batch_size=16",
            "--gin.TrainConfig.grad_cache_chunk_size=8",
            "--gin.TrainConfig.log_every=1",
            "--gin.TrainConfig.checkpoint_every=2",
            "--gin_param=OptimizerConfig.warmup_steps = 1",
        ],
        tmp_path,
    )
    assert "step 2/2" in out and "site_code" in out and "site_text" in out
    out = _run(["cpt_jax.evaluate", f"--checkpoint={run}", "--tasks=site_code,site_text", "--max_pairs=20",
                "--classification=stdlib_packages", f"--data_dir={tmp_path / 'tfds'}"], tmp_path)
    results = json.loads((run / "eval_test.json").read_text())
    code, text, probe = results
    assert code.startswith("site_code/test (20 queries") and text.startswith("site_text/test (20 queries")
    assert probe.startswith("classification:stdlib_packages")
    for task in (code, text):
        assert list(results[task]) == ["cpt-jax (trained)", "pretrained start", "random init", "BM25"]
        # the pretrained start is far above random init even on 20 pairs
        assert results[task]["pretrained start"]["mrr"] > results[task]["random init"]["mrr"]
    assert list(results[probe]) == ["cpt-jax (trained)", "pretrained start", "random init", "bag of words (TF-IDF)"]
