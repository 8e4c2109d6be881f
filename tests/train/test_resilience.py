"""Multi-process training, exact resume after kill -9, SIGTERM, corrupted checkpoints, and
restoring a 2-process checkpoint on a different mesh. Real processes, gloo collectives."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time

import pytest

from cpt_jax import checkpoint
from cpt_jax.data import builders
from cpt_jax.data.pipeline import iter_training_texts
from cpt_jax.data.tokenizer import Tokenizer
from cpt_jax.parallel import runtime

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
pytestmark = pytest.mark.slow
STEPS = 30


@pytest.fixture(scope="module")
def shared(tmp_path_factory):
    root = tmp_path_factory.mktemp("shared")
    builders.prepare("stdlib_code", str(root / "tfds"))
    texts = iter_training_texts(str(root / "tfds"), datasets=("stdlib_code",), max_texts=4000)
    Tokenizer.train(texts, 1000, str(root / "tok"))
    return root


def _flags(shared, out, steps=STEPS, every=10, keep=5, extra=()):
    return [
        "--gin_file=configs/experiments/tiny_code.gin",
        f"--gin.TrainConfig.output_dir={out}",
        f"--gin.DATA_DIR={shared / 'tfds'}",
        f"--gin.TrainConfig.tokenizer_path={shared / 'tok'}",
        "--gin.ModelConfig.vocab_size=1000",
        "--gin.ModelConfig.d_model=32",
        "--gin.ModelConfig.d_mlp=64",
        "--gin.ModelConfig.num_heads=2",
        "--gin.DataConfig.max_len_x=32",
        "--gin.DataConfig.max_len_y=32",
        "--gin.TrainConfig.global_batch_size=16",
        "--gin.TrainConfig.log_every=1",
        f"--gin.TrainConfig.num_steps={steps}",
        f"--gin.TrainConfig.checkpoint_every={every}",
        f"--gin.TrainConfig.keep_checkpoints={keep}",
        "--gin_param=OptimizerConfig.warmup_steps = 2",
        *extra,
    ]


def _env(devices):
    return {**os.environ, "XLA_FLAGS": f"--xla_force_host_platform_device_count={devices}", "JAX_PLATFORMS": "cpu"}


def _train(flags, devices=8, check=True):
    proc = subprocess.run([sys.executable, "-m", "cpt_jax.train", *flags], cwd=REPO, env=_env(devices),
                          capture_output=True, text=True, timeout=600)
    if check:
        assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    return proc


def _losses(out) -> dict[int, float]:
    """step -> loss; a step logged twice (before a crash and after the restart) keeps the last."""
    with open(out / "metrics.jsonl") as f:
        return {r["step"]: r["loss"] for r in map(json.loads, f)}


def _wait_for_step(out, step, proc, timeout=300):
    deadline = time.time() + timeout
    while time.time() < deadline:
        if (out / "metrics.jsonl").exists() and _losses(out) and max(_losses(out)) >= step:
            return
        assert proc.poll() is None, "training ended before the step was reached"
        time.sleep(0.05)
    raise TimeoutError(f"step {step} not reached")


@pytest.fixture(scope="module")
def reference(shared, tmp_path_factory):
    out = tmp_path_factory.mktemp("ref")
    _train(_flags(shared, out))
    losses = _losses(out)
    assert sorted(losses) == list(range(1, STEPS + 1))
    return losses


def _assert_close(got, want, steps, rtol=1e-5):
    for s in steps:
        assert abs(got[s] - want[s]) <= rtol * abs(want[s]), f"step {s}: {got[s]} vs {want[s]}"


def _without_preload() -> dict[str, str]:
    return {k: v for k, v in os.environ.items() if k != "LD_PRELOAD"}


def test_two_processes_match_one_and_restore_on_another_mesh(shared, reference, tmp_path):
    out = tmp_path / "mp"
    proc = subprocess.run(["bash", "launch/local.sh", "2", "4", *_flags(shared, out)], cwd=REPO,
                          env={**_without_preload(), "JAX_PLATFORMS": "cpu"}, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    _assert_close(_losses(out), reference, range(1, STEPS + 1))
    # local.sh preloads tcmalloc where it is installed; without it the processes name the fix.
    assert ("runs on glibc malloc" in proc.stdout) == (runtime.find_tcmalloc() is None), proc.stdout[-3000:]

    # Keep only the step-10 checkpoint written by the two processes, then continue in one
    # process on a 2-device FSDP mesh.
    for step in ("20", "30"):
        shutil.rmtree(out / "checkpoints" / step)
    os.remove(out / "metrics.jsonl")
    proc = _train(_flags(shared, out, extra=["--gin.MeshConfig.data=1", "--gin.MeshConfig.fsdp=2"]), devices=2)
    assert "restored checkpoint at step 10" in proc.stdout
    _assert_close(_losses(out), reference, range(11, STEPS + 1))


def test_two_processes_with_packed_sequences_match_one_unpacked(shared, reference, tmp_path):
    """TrainConfig.pack_sequences: each process packs its own groups, the row counts are agreed
    over the processes every step, and the losses are those of the unpacked one-process run."""
    out = tmp_path / "packed"
    flags = _flags(shared, out, extra=["--gin.TrainConfig.pack_sequences=True"])
    proc = subprocess.run(["bash", "launch/local.sh", "2", "4", *flags], cwd=REPO,
                          env={**_without_preload(), "JAX_PLATFORMS": "cpu"}, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    _assert_close(_losses(out), reference, range(1, STEPS + 1))


def _kill_minus_9_then_restart(out, flags, step: int) -> int:
    """Trains with `flags`, SIGKILLs the process once `step` is logged, trains again; the step resumed from."""
    proc = subprocess.Popen([sys.executable, "-m", "cpt_jax.train", *flags], cwd=REPO, env=_env(8),
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    _wait_for_step(out, step, proc)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    restarted = _train(flags)
    return int(restarted.stdout.split("restored checkpoint at step ")[1].split()[0])


def test_kill_minus_9_then_restart_reproduces_the_run_exactly(shared, reference, tmp_path):
    out = tmp_path / "kill"
    resumed_from = _kill_minus_9_then_restart(out, _flags(shared, out, every=1, keep=3), 13)
    assert 10 <= resumed_from <= STEPS
    losses = _losses(out)
    assert all(losses[s] == reference[s] for s in range(14, STEPS + 1)), "resumed losses differ"


def test_corrupted_latest_checkpoint_is_reported_and_the_previous_one_used(shared, reference, tmp_path):
    out = tmp_path / "corrupt"
    _train(_flags(shared, out))
    # Truncate every array data file of the latest (step 30) parameters.
    for root, _, files in os.walk(out / "checkpoints" / "30" / "params"):
        if os.path.basename(root) == "d":
            for name in files:
                open(os.path.join(root, name), "wb").close()
    os.remove(out / "metrics.jsonl")
    proc = _train(_flags(shared, out))
    assert "checkpoint at step 30 cannot be restored" in proc.stdout
    assert "restored checkpoint at step 20" in proc.stdout
    assert os.path.isdir(out / "checkpoints" / "30.unreadable"), "the bad checkpoint is kept aside, not deleted"
    _assert_close(_losses(out), reference, range(21, STEPS + 1), rtol=0)  # same mesh and program: bitwise


@pytest.mark.parametrize("signum", [signal.SIGTERM, signal.SIGINT], ids=["sigterm", "ctrl-c"])
def test_sigterm_saves_at_the_current_step_exits_cleanly_and_resumes(shared, tmp_path, signum):
    """SIGTERM, and Ctrl-C (SIGINT) alike: a checkpoint after the step in flight, exit 0, and a
    rerun resumes there; the saved step passes its integrity check (its manifest is written)."""
    out = tmp_path / "term"
    flags = _flags(shared, out, steps=100_000, every=100_000)
    proc = subprocess.Popen([sys.executable, "-m", "cpt_jax.train", *flags], cwd=REPO, env=_env(1),
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    _wait_for_step(out, 5, proc)
    proc.send_signal(signum)
    stdout, _ = proc.communicate(timeout=120)
    assert proc.returncode == 0, stdout[-3000:]
    saved = int(stdout.split("preempted: saved a checkpoint at step ")[1].split(";")[0])
    assert saved >= 5 and os.path.isdir(out / "checkpoints" / str(saved))
    checkpoint.verify(str(out / "checkpoints" / str(saved)))  # its manifest exists and matches
    assert os.path.exists(out / "checkpoints" / str(saved) / checkpoint.MANIFEST_FILE)
    resumed = _train(_flags(shared, out, steps=saved + 2, every=100_000), devices=1)
    assert f"restored checkpoint at step {saved}" in resumed.stdout
    assert max(_losses(out)) == saved + 2


LORA = ["--gin.LoraConfig.rank=4", "--gin.LoraConfig.alpha=8.0", "--gin.TrainConfig.pack_sequences=True",
        "--gin.TrainConfig.global_batch_size=32", "--gin.TrainConfig.grad_cache_chunk_size=16",
        "--gin_param=OptimizerConfig.learning_rate = 5e-3"]
LORA_STEPS = 12


def test_a_lora_run_in_two_processes_matches_one_survives_kill_minus_9_and_reshards(shared, tmp_path):
    """LoRA (a frozen random base of the seed, adapters trained) with GradCache and packing: one
    process on 8 devices, two gloo processes of 4, a kill -9 and restart, and a resume from step 4
    on a 2-device fsdp mesh all give the same losses."""
    ref = tmp_path / "ref"
    _train(_flags(shared, ref, steps=LORA_STEPS, every=4, extra=LORA))
    reference = _losses(ref)
    assert sorted(reference) == list(range(1, LORA_STEPS + 1))
    assert reference[LORA_STEPS] < reference[1]  # the adapters learn
    step_dir = ref / "checkpoints" / str(LORA_STEPS)
    assert checkpoint.read_meta(str(ref))[1]["lora"]["base"] == {"seed": 0}
    with open(step_dir / "params" / "_METADATA") as f:
        assert not [k for k in json.load(f)["tree_metadata"] if "encoder" in k]  # adapters only

    mp = tmp_path / "mp"
    proc = subprocess.run(["bash", "launch/local.sh", "2", "4", *_flags(shared, mp, steps=LORA_STEPS, every=4, extra=LORA)],
                          cwd=REPO, env={**_without_preload(), "JAX_PLATFORMS": "cpu"}, capture_output=True, text=True,
                          timeout=600)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    _assert_close(_losses(mp), reference, range(1, LORA_STEPS + 1))

    kill = tmp_path / "kill"
    assert 4 <= _kill_minus_9_then_restart(kill, _flags(shared, kill, steps=LORA_STEPS, every=1, keep=3, extra=LORA), 6)
    losses = _losses(kill)
    assert all(losses[s] == reference[s] for s in range(8, LORA_STEPS + 1)), "resumed losses differ"

    for step in ("8", "12"):  # resume the 2-process run from step 4 on another mesh
        shutil.rmtree(mp / "checkpoints" / step)
    os.remove(mp / "metrics.jsonl")
    proc = _train(_flags(shared, mp, steps=LORA_STEPS, every=4,
                         extra=[*LORA, "--gin.MeshConfig.data=1", "--gin.MeshConfig.fsdp=2"]), devices=2)
    assert "restored checkpoint at step 4" in proc.stdout
    _assert_close(_losses(mp), reference, range(5, LORA_STEPS + 1))
