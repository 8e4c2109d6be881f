"""python -m cpt_jax.plan: flags and gin -> PlanSpec, the device count it gets, a plan printed."""

import os
import subprocess
import sys

import gin
import pytest

from cpt_jax.cli import plan as cli
from cpt_jax.parallel.mesh import MeshConfig

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
SMALL = ["--gin_file=configs/model/tiny.gin", "--gin.ModelConfig.vocab_size=512", "--gin.ModelConfig.d_model=32",
         "--gin.ModelConfig.num_heads=2", "--gin.ModelConfig.d_mlp=64", "--gin.ModelConfig.max_len=16"]


@pytest.fixture(autouse=True)
def clean_gin():
    gin.clear_config()
    yield
    gin.clear_config()


def _spec(argv):
    gin.clear_config()
    rest = cli.flags.parse_flags(argv)
    return cli.build_spec(cli.parser().parse_args(rest))


def test_a_model_config_and_flags_make_the_spec():
    spec = _spec([*SMALL, "--batch", "16", "--len_x", "8", "--len_y", "8", "--devices", "8", "--accelerator", "h100",
                  "--mesh", "1x-1x1", "--remat", "full", "--pairs", "1e9"])
    assert (spec.global_batch, spec.len_x, spec.devices, spec.accelerator) == (16, 8, 8, "h100")
    assert spec.mesh == MeshConfig(data=1, fsdp=-1, tensor=1) and spec.model.remat == "full" == spec.remat
    assert spec.search and spec.grad_cache_chunk is None and spec.target_pairs == 1e9


def test_an_experiment_gives_batch_lengths_and_packing():
    spec = _spec(["--gin_file=configs/experiments/tiny_code.gin", "--devices", "8"])
    assert spec.global_batch == 64 and spec.pack_sequences and spec.len_x == 64
    assert spec.mesh is None  # searched
    fixed = _spec(["--gin_file=configs/experiments/tiny_code.gin", "--devices", "8", "--no_search"])
    assert fixed.mesh == MeshConfig(data=-1) and fixed.grad_cache_chunk == 0


def test_bad_flags_are_named():
    with pytest.raises(ValueError, match="--batch is required"):
        _spec([*SMALL, "--devices", "8"])
    with pytest.raises(ValueError, match="--mesh '16x16' is not DATAxFSDPxTENSOR"):
        _spec([*SMALL, "--batch", "16", "--devices", "8", "--mesh", "16x16"])


def test_the_device_count_flag_is_raised_never_lowered():
    flag = cli.DEVICE_FLAG
    assert cli.with_device_count("", 256) == f"{flag}=256"
    assert cli.with_device_count(f"--a=1 {flag}=8", 256) == f"--a=1 {flag}=256"
    assert cli.with_device_count(f"{flag}=512 --b", 256) == f"{flag}=512 --b"


def test_a_plan_without_search_prints_memory_collectives_and_the_roofline(capsys):
    argv = [*SMALL, "--batch", "16", "--len_x", "8", "--len_y", "8", "--devices", "8", "--accelerator", "h100",
            "--mesh", "1x8x1", "--chunk", "0", "--remat", "none", "--no_search"]
    assert cli.main(argv) is None
    out = capsys.readouterr().out
    assert "# plan: 2 layers, width 32" in out and "8 x h100" in out
    assert "layout 1x8x1 plain remat none" in out and "optimizer state" in out and ": fits" in out
    for kind in ("all-gather", "reduce-scatter", "all-reduce", "all-to-all", "collective-permute"):
        assert kind in out
    assert "roofline on h100" in out and "MFU" in out and "days/1B pairs" in out


def test_a_batch_that_does_not_split_over_every_device_gets_a_proposal(monkeypatch, capsys):
    """Nothing fits at batch 12 on 8 devices; the next batch that splits over all 8 is searched
    and printed as the proposal (the searches are stand-ins: the logic under test is the CLI's)."""
    from types import SimpleNamespace

    from cpt_jax.plan.search import NoFit

    best = SimpleNamespace(layout="8x1x1 plain remat full", plan=SimpleNamespace(peak_bytes=2**30),
                           estimate=SimpleNamespace(step_s=0.5, mfu=0.4, pairs_per_s=32.0, days=3.0))

    def fake_search(spec):
        if spec.global_batch == 12:
            raise NoFit("no tried layout fits")
        return SimpleNamespace(best=best, wall_seconds=1.0)

    monkeypatch.setattr(cli, "search", fake_search)
    argv = [*SMALL, "--batch", "12", "--len_x", "8", "--len_y", "8", "--devices", "8"]
    assert cli.main(argv) is None
    out = capsys.readouterr().out
    assert "note: batch 12 splits over at most 4 of the 8 devices" in out
    assert "nothing fits at batch 12: no tried layout fits" in out
    assert "proposed instead: batch 16 (splits over all 8 devices): 8x1x1 plain remat full, peak 1.0 GiB" in out
    gin.clear_config()
    with pytest.raises(NoFit):
        cli.main([*argv, "--no_propose"])


@pytest.mark.slow
def test_more_devices_than_the_process_has_rerun_in_a_child():
    """From a process whose jax already runs 8 devices, a 16-device plan reruns itself with 16."""
    argv = [*SMALL, "--batch", "16", "--len_x", "8", "--len_y", "8", "--devices", "16", "--mesh", "1x16x1",
            "--chunk", "0", "--remat", "none", "--no_search"]
    code = f"import sys, jax; jax.devices(); from cpt_jax.cli.plan import main; sys.exit(main({argv!r}))"
    env = dict(os.environ, XLA_FLAGS=f"{cli.DEVICE_FLAG}=8")
    proc = subprocess.run([sys.executable, "-c", code], cwd=ROOT, env=env, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert "16 x v5p" in proc.stdout and "layout 1x16x1 plain remat none" in proc.stdout
