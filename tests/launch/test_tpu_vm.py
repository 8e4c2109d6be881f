"""Dry runs of launch/tpu_vm.sh (single slice, multi-slice, setup, errors)."""

from __future__ import annotations

import os
import re
import shlex

import pytest

from tests.launch.common import REPO, TPU_VM, TRAIN, TRIPWIRE, _write_exe, execute_printed, ok, option, run, segments


def test_tpu_single_slice_dry_run(tripwire, tmp_path):
    env, _ = tripwire
    lines = ok(TPU_VM, ["--name=my-v5e-32", "--zone=us-west4-a", "--project=proj", "--dry_run", "--", *TRAIN],
               env, tmp_path)
    assert len(lines) == 1
    words = shlex.split(lines[0])
    assert words[:6] == ["gcloud", "compute", "tpus", "tpu-vm", "ssh", "my-v5e-32"]
    assert option(words, "--zone") == "us-west4-a"
    assert option(words, "--project") == "proj"
    assert "--worker=all" in words
    assert segments(option(words, "--command")) == [
        ["cd", "~/cpt-jax"],
        ["python3", "-m", "cpt_jax.train", *TRAIN],
    ]


def test_tpu_options_in_any_spelling_and_train_flags_without_separator(tripwire, tmp_path):
    env, _ = tripwire
    lines = ok(TPU_VM, ["--zone", "europe-west4-b", "--name", "t", "--dry_run", *TRAIN], env, tmp_path)
    words = shlex.split(lines[0])
    assert option(words, "--zone") == "europe-west4-b"
    assert not any(w.startswith("--project") for w in words)
    assert segments(option(words, "--command"))[-1] == ["python3", "-m", "cpt_jax.train", *TRAIN]


def test_tpu_dry_run_output_runs_the_train_flags_verbatim(tripwire, tmp_path):
    env, _ = tripwire
    printed = "\n".join(ok(TPU_VM, ["--name=t", "--zone=z", "--dry_run", *TRAIN], env, tmp_path))
    [(argv, _)] = execute_printed(printed, tmp_path)
    assert argv[:6] == ["gcloud", "compute", "tpus", "tpu-vm", "ssh", "t"]
    # Now be the worker: its login shell runs the --command string.
    home = tmp_path / "worker_home"
    (home / "cpt-jax").mkdir(parents=True)
    calls = execute_printed(option(argv, "--command"), tmp_path, home=home)
    assert [argv for argv, _ in calls] == [["python3", "-m", "cpt_jax.train", *TRAIN]]


def test_tpu_setup_and_repo_dir(tripwire, tmp_path):
    env, _ = tripwire
    jax_pin = re.search(r"^jax\[[a-z0-9_,]*\]==(\S+)", (REPO / "requirements.txt").read_text(), re.M)
    lines = ok(TPU_VM, ["--name=t", "--zone=z", "--setup", "--repo_dir=/opt/my repo", "--dry_run", "--",
                        "--gin_file=a.gin"], env, tmp_path)
    words = shlex.split(lines[0])
    expected_jax = f"jax[tpu]=={jax_pin.group(1)}" if jax_pin else "jax[tpu]"
    assert segments(option(words, "--command")) == [
        ["cd", "/opt/my repo"],
        ["git", "pull", "--ff-only"],
        ["python3", "-m", "pip", "install", "-r", "requirements.txt"],
        ["python3", "-m", "pip", "install", expected_jax],
        ["python3", "-m", "cpt_jax.train", "--gin_file=a.gin"],
    ]


def test_tpu_multislice_queued_resource(tripwire, tmp_path):
    env, _ = tripwire
    lines = ok(TPU_VM, ["--name=my-qr", "--zone=z", "--num_slices=4", "--dry_run", "--", *TRAIN], env, tmp_path)
    assert len(lines) == 1
    words = shlex.split(lines[0])
    assert words[:6] == ["gcloud", "compute", "tpus", "queued-resources", "ssh", "my-qr"]
    assert "--node=all" in words and "--worker=all" in words
    remote = option(words, "--command")
    assert "MEGASCALE" not in remote  # the queued resource's slices carry their own settings
    assert segments(remote)[-1] == ["python3", "-m", "cpt_jax.train", *TRAIN]


def test_tpu_multislice_env_sets_megascale_per_slice(tripwire, tmp_path):
    env, _ = tripwire
    lines = ok(TPU_VM, ["--name=pod", "--zone=z", "--project=p", "--num_slices=3", "--multislice=env",
                        "--dry_run", "--", *TRAIN], env, tmp_path)
    assert len(lines) == 5  # coordinator lookup, one ssh per slice, wait
    assert lines[0].startswith("COORDINATOR=$(") and lines[0].endswith(")")
    describe = shlex.split(lines[0][len("COORDINATOR=$("):-1])
    assert describe[:6] == ["gcloud", "compute", "tpus", "tpu-vm", "describe", "pod-0"]
    assert option(describe, "--format") == "value(networkEndpoints[0].ipAddress)"
    assert option(describe, "--zone") == "z" and option(describe, "--project") == "p"
    assert all(line.endswith(" &") for line in lines[1:4]) and lines[4] == "wait"

    calls = execute_printed("\n".join(lines), tmp_path)
    ssh_calls = sorted((argv for argv, _ in calls if "ssh" in argv), key=lambda a: a[5])
    assert len(calls) == 4 and len(ssh_calls) == 3
    for i, argv in enumerate(ssh_calls):
        assert argv[:6] == ["gcloud", "compute", "tpus", "tpu-vm", "ssh", f"pod-{i}"]
        assert "--worker=all" in argv and option(argv, "--zone") == "z"
        first, *rest = segments(option(argv, "--command"))
        assert first == ["export", "MEGASCALE_COORDINATOR_ADDRESS=10.0.0.2:8080", "MEGASCALE_NUM_SLICES=3",
                         f"MEGASCALE_SLICE_ID={i}", "MEGASCALE_PORT=8080"]
        assert rest == [["cd", "~/cpt-jax"], ["python3", "-m", "cpt_jax.train", *TRAIN]]
        # and on the worker the training process sees exactly that environment
        home = tmp_path / f"home{i}"
        (home / "cpt-jax").mkdir(parents=True)
        [(train_argv, megascale)] = execute_printed(option(argv, "--command"), tmp_path, home=home)
        assert train_argv == ["python3", "-m", "cpt_jax.train", *TRAIN]
        assert megascale.split() == ["MEGASCALE_COORDINATOR_ADDRESS=10.0.0.2:8080", "MEGASCALE_NUM_SLICES=3",
                                     "MEGASCALE_PORT=8080", f"MEGASCALE_SLICE_ID={i}"]


def test_tpu_multislice_env_with_given_coordinator(tripwire, tmp_path):
    env, _ = tripwire
    lines = ok(TPU_VM, ["--name=pod", "--zone=z", "--num_slices=2", "--multislice", "env", "--coordinator=10.9.8.7",
                        "--megascale_port=9999", "--dry_run", "--gin_file=a.gin"], env, tmp_path)
    assert len(lines) == 3 and lines[2] == "wait"  # no lookup
    for i, line in enumerate(lines[:2]):
        words = shlex.split(line.removesuffix(" &"))
        assert words[5] == f"pod-{i}"
        assert segments(option(words, "--command"))[0] == [
            "export", "MEGASCALE_COORDINATOR_ADDRESS=10.9.8.7:9999", "MEGASCALE_NUM_SLICES=2",
            f"MEGASCALE_SLICE_ID={i}", "MEGASCALE_PORT=9999"]


@pytest.mark.parametrize(
    "args, message",
    [
        (["--zone=z", "--dry_run"], "--name is required"),
        (["--name=t", "--dry_run"], "--zone is required"),
        (["--name=t", "--zone=z", "--num_slices=0", "--dry_run"], "--num_slices must be"),
        (["--name=t", "--zone=z", "--multislice=env", "--dry_run"], "--multislice needs --num_slices > 1"),
        (["--name=t", "--zone=z", "--num_slices=2", "--multislice=mpi", "--dry_run"], "--multislice must be"),
        (["--name=t", "--zone=z", "--num_slices=2", "--coordinator=1.2.3.4", "--dry_run"], "--coordinator is for"),
        (["--name=t", "--dry_run", "--zone"], "--zone needs a value"),
    ],
)
def test_tpu_bad_options_fail_with_usage(tripwire, tmp_path, args, message):
    env, _ = tripwire
    result = run(TPU_VM, args, env, tmp_path)
    assert result.returncode == 2
    assert message in result.stderr and "usage: launch/tpu_vm.sh" in result.stderr
    assert result.stdout == ""


def test_tpu_help(tripwire, tmp_path):
    env, _ = tripwire
    result = run(TPU_VM, ["--help"], env, tmp_path)
    assert result.returncode == 0 and result.stdout.startswith("usage: launch/tpu_vm.sh")


def test_tripwire_catches_a_real_launch(tmp_path):
    """The guard works: without --dry_run the launcher does call gcloud (here the failing stand-in)."""
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    _write_exe(bin_dir / "gcloud", TRIPWIRE)
    log = tmp_path / "called.log"
    env = dict(os.environ, PATH=f"{bin_dir}{os.pathsep}{os.environ['PATH']}", TRIPWIRE_LOG=str(log))
    result = run(TPU_VM, ["--name=t", "--zone=z", "--gin_file=a.gin"], env, tmp_path)
    assert result.returncode == 97 and "FAKE gcloud CALLED" in result.stderr
    assert log.read_text().startswith("gcloud compute tpus tpu-vm ssh t --zone=z --worker=all")


# -- launch/slurm.sbatch ----------------------------------------------------------------------------
