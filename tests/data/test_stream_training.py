"""Real processes: train on a two-source mixture (with hard negatives) in 2 processes over gloo, stop,
resume in 1 process, and see exactly the global batches (and losses) of an uninterrupted run."""

from __future__ import annotations

import json
import os
import shutil
import socket
import subprocess
import sys

import pytest

from cpt_jax.checkpoint import read_meta
from cpt_jax.data.pipeline import STREAM_META_KEY, iter_source_texts
from cpt_jax.data.tokenizer import Tokenizer
from cpt_jax.embedder import Embedder
from tests.data.stream_sources import JsonlPairs, write_jsonl_corpus

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
pytestmark = pytest.mark.slow
STEPS, CUT = 8, 4
# python -m cpt_jax.train, with the in-test source registered for gin.
RUNNER = (
    "import sys; from tests.data.stream_sources import register_gin; register_gin(); "
    "from cpt_jax.cli.train import main; main(sys.argv[1:])"
)


@pytest.fixture(scope="module")
def corpus(tmp_path_factory):
    root = tmp_path_factory.mktemp("corpus")
    code = write_jsonl_corpus(str(root), "code", num_files=6, per_file=40, empty_every=7)  # more shards than readers
    text = write_jsonl_corpus(str(root), "text", num_files=2, per_file=100)  # fewer: shared shards
    sources = [JsonlPairs("code", code).build(), JsonlPairs("text", text).build()]
    Tokenizer.train(iter_source_texts(sources, 4000), 400, str(root / "tok"))
    return {"code": code, "text": text, "tok": str(root / "tok")}


def _flags(corpus, out, steps):
    return [
        "--gin_file=configs/experiments/tiny_code.gin",
        f"--gin.TrainConfig.output_dir={out}",
        f"--gin.TrainConfig.tokenizer_path={corpus['tok']}",
        "--gin.ModelConfig.vocab_size=400",
        "--gin.ModelConfig.d_model=32",
        "--gin.ModelConfig.d_mlp=64",
        "--gin.ModelConfig.num_heads=2",
        "--gin.DataConfig.max_len_x=16",
        "--gin.DataConfig.max_len_y=24",
        "--gin_param=DataConfig.sources = (@code/JsonlPairs(), @text/JsonlPairs())",
        "--gin.code/JsonlPairs.name=code",
        f"--gin.code/JsonlPairs.pattern={corpus['code']}",
        "--gin.text/JsonlPairs.name=text",
        f"--gin.text/JsonlPairs.pattern={corpus['text']}",
        "--gin.DataConfig.weights=(3, 1)",
        "--gin.DataConfig.stream_readers=4",
        "--gin.DataConfig.shuffle_window=8",
        "--gin.DataConfig.num_negatives=1",
        "--gin.DataConfig.log_fingerprints=True",
        "--gin.TrainConfig.global_batch_size=16",
        "--gin.TrainConfig.log_every=1",
        f"--gin.TrainConfig.num_steps={steps}",
        f"--gin.TrainConfig.checkpoint_every={CUT}",
        "--gin_param=OptimizerConfig.warmup_steps = 2",
    ]


def _train(flags, processes, devices, logs):
    """Runs training in `processes` processes; returns process 0's output."""
    with socket.socket() as s:
        s.bind(("localhost", 0))
        port = s.getsockname()[1]
    env = {**os.environ, "XLA_FLAGS": f"--xla_force_host_platform_device_count={devices}", "JAX_PLATFORMS": "cpu"}
    # Output to files: a full pipe would block one process and, through the collectives, all.
    paths = [logs / f"{len(list(logs.iterdir()))}-{i}.log" for i in range(processes)]
    procs = []
    for i, path in enumerate(paths):
        join = [f"--coordinator_address=localhost:{port}", f"--num_processes={processes}", f"--process_id={i}"]
        with open(path, "w") as log:
            command = [sys.executable, "-c", RUNNER, *flags, *(join if processes > 1 else [])]
            procs.append(subprocess.Popen(command, cwd=REPO, env=env, stdout=log, stderr=subprocess.STDOUT))
    try:
        for p in procs:
            p.wait(timeout=600)
    finally:
        for p in procs:
            if p.poll() is None:
                p.kill()
    outputs = [path.read_text() for path in paths]
    for p, out in zip(procs, outputs):
        assert p.returncode == 0, out[-4000:]
    return outputs[0]


def _jsonl(path, key, value):
    """key -> value of a JSONL file; a key written twice keeps the last."""
    with open(path) as f:
        return {r[key]: r[value] for r in map(json.loads, f)}


# Mixed batches; and one source per step with per-source instructions (DataConfig.batching).
BATCHING = {
    "mixed": [],
    "by_source": ["--gin.DataConfig.batching='by_source'",
                  "--gin_param=DataConfig.instructions = (('Find: ', 'Code: '), ('', 'passage: '))"],
}


@pytest.mark.parametrize("batching", list(BATCHING))
def test_two_processes_then_one_see_the_batches_of_an_uninterrupted_run(corpus, tmp_path, batching):
    ref, out, logs = tmp_path / "ref", tmp_path / "split", tmp_path / "logs"
    logs.mkdir()

    def run(run_dir, processes, devices):
        return _train(_flags(corpus, run_dir, STEPS) + BATCHING[batching], processes, devices, logs)

    run(ref, processes=1, devices=8)
    want = _jsonl(ref / "batch_fingerprints.jsonl", "batch", "fingerprint")
    assert sorted(want) == list(range(STEPS)) and len(set(want.values())) == STEPS

    # Two processes; then keep only their step-CUT checkpoint and continue in one process.
    run(out, processes=2, devices=4)
    assert _jsonl(out / "batch_fingerprints.jsonl", "batch", "fingerprint") == want
    stream = read_meta(str(out), CUT)[1][STREAM_META_KEY]
    assert stream["step"] == CUT and [len(s["readers"]) for s in stream["sources"]] == [4, 4]
    shutil.rmtree(out / "checkpoints" / str(STEPS))
    for name in ("batch_fingerprints.jsonl", "metrics.jsonl"):
        os.remove(out / name)
    resumed = run(out, processes=1, devices=8)
    assert f"restored checkpoint at step {CUT}" in resumed

    got = _jsonl(out / "batch_fingerprints.jsonl", "batch", "fingerprint")
    assert got == {b: want[b] for b in range(CUT, STEPS)}, "the resumed global batches differ"
    ref_losses, losses = _jsonl(ref / "metrics.jsonl", "step", "loss"), _jsonl(out / "metrics.jsonl", "step", "loss")
    for step in range(CUT + 1, STEPS + 1):
        assert abs(losses[step] - ref_losses[step]) <= 1e-5 * abs(ref_losses[step]), step

    with open(out / "data_stats.json") as f:
        stats = json.load(f)
    assert stats["code"]["empty"] > 0 and stats["code"]["kept"] > 0 and stats["text"]["kept"] > 0
    assert "data drop statistics" in resumed
    if batching == "by_source":  # the instructions are saved with the run and read back by the Embedder
        assert Embedder.load(str(out)).instructions == {"code": ("Find: ", "Code: "), "text": ("", "passage: ")}


def test_evaluation_during_training_in_two_processes_scores_as_one(corpus, tmp_path):
    """TrainConfig.evaluation in 2 processes over gloo: every process takes part in the encoding, the
    scores equal a 1-process run's, process 0 alone logs them, and both keep the same best step."""
    from tests.eval.fakes import write_toy_folders

    beir, _ = write_toy_folders(str(tmp_path))
    metric = "beir:toy_beir/test/ndcg@10"
    evaluation = ["--gin.EvalConfig.every=4", "--gin.EvalConfig.split='test'", f"--gin.EvalConfig.beir=('{beir}',)",
                  f"--gin.EvalConfig.best_metric='{metric}'", "--gin.EvalConfig.batch_size=16"]
    logs = tmp_path / "logs"
    logs.mkdir()
    scores = {}
    for name, processes, devices in (("one", 1, 8), ("two", 2, 4)):
        out = _train(_flags(corpus, tmp_path / name, STEPS) + evaluation, processes, devices, logs)
        assert "eval at step 4" in out
        with open(tmp_path / name / "metrics.jsonl") as f:
            scores[name] = {r["step"]: r[f"eval/{metric}"] for r in map(json.loads, f) if f"eval/{metric}" in r}
        assert sorted(scores[name]) == [0, 4, STEPS]
        with open(tmp_path / name / "best.json") as f:
            scores[name]["best"] = json.load(f)["step"]
    assert "eval at step" not in (sorted(logs.iterdir())[-1]).read_text()  # process 1 wrote nothing
    for step in (0, 4, STEPS):
        assert abs(scores["two"][step] - scores["one"][step]) <= 1e-5, step
    assert scores["two"]["best"] == scores["one"]["best"]
