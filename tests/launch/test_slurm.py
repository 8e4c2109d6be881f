"""Dry runs of launch/slurm.sbatch inside and outside a SLURM job."""

from __future__ import annotations

import re
import shlex

from tests.launch.common import REPO, SLURM, TRAIN, execute_printed, ok, run


def _sbatch_header() -> dict[str, str]:
    opts = {}
    for line in SLURM.read_text().splitlines()[1:]:
        if not line.startswith("#"):
            break  # sbatch reads #SBATCH lines only before the first command
        if m := re.match(r"#SBATCH --([a-z-]+)=(\S+)", line):
            opts[m.group(1)] = m.group(2)
    return opts


def test_slurm_header():
    opts = _sbatch_header()
    assert opts["ntasks-per-node"] == "1"
    assert {"nodes", "gpus-per-node", "time", "output"} <= opts.keys()


def test_slurm_dry_run_outside_slurm(tripwire, tmp_path):
    env, _ = tripwire
    opts = _sbatch_header()
    nodes, gpus = int(opts["nodes"]), int(opts["gpus-per-node"])
    lines = ok(SLURM, TRAIN, env, tmp_path, {"DRY_RUN": "1"})
    assert f"# nodes={nodes}" in lines and f"# tasks={nodes}" in lines and "# tasks_per_node=1" in lines
    assert f"export JAX_LOCAL_DEVICE_IDS={','.join(map(str, range(gpus)))}" in lines
    assert [shlex.split(line) for line in lines if line.startswith("cd ")] == [["cd", str(REPO)]]
    srun = shlex.split(lines[-1])
    assert srun[0] == "srun" and "--kill-on-bad-exit=1" in srun
    assert f"--cpus-per-task={opts['cpus-per-task']}" in srun
    assert srun[srun.index("python3"):] == ["python3", "-m", "cpt_jax.train", *TRAIN]
    # The printed lines are a script: run it with a recording srun.
    [(argv, _)] = execute_printed("\n".join(lines), tmp_path)
    assert argv == srun


def test_slurm_dry_run_inside_a_job(tripwire, tmp_path):
    env, _ = tripwire
    job = {"DRY_RUN": "1", "SLURM_JOB_NUM_NODES": "4", "SLURM_NTASKS": "4", "SLURM_NTASKS_PER_NODE": "1",
           "SLURM_GPUS_ON_NODE": "4", "SLURM_CPUS_PER_TASK": "12", "SLURM_SUBMIT_DIR": str(tmp_path)}
    lines = ok(SLURM, ["--gin_file=a.gin"], env, tmp_path, job)
    assert lines[:5] == ["# nodes=4", "# tasks=4", "# tasks_per_node=1", "# gpus_per_node=4",
                         "export JAX_LOCAL_DEVICE_IDS=0,1,2,3"]
    assert shlex.split(lines[5]) == ["cd", str(tmp_path)]
    assert shlex.split(lines[6]) == ["srun", "--kill-on-bad-exit=1", "--cpus-per-task=12", "python3", "-m",
                                     "cpt_jax.train", "--gin_file=a.gin"]


def test_slurm_one_process_per_gpu_keeps_jax_default(tripwire, tmp_path):
    env, _ = tripwire
    lines = ok(SLURM, ["--gin_file=a.gin"], env, tmp_path,
               {"DRY_RUN": "1", "SLURM_JOB_NUM_NODES": "2", "SLURM_NTASKS_PER_NODE": "8", "SLURM_GPUS_ON_NODE": "8"})
    assert "# tasks=16" in lines
    assert not any("JAX_LOCAL_DEVICE_IDS" in line for line in lines)


def test_slurm_without_train_flags_fails_with_usage(tripwire, tmp_path):
    env, _ = tripwire
    result = run(SLURM, [], env, tmp_path, {"DRY_RUN": "1"})
    assert result.returncode == 2 and "usage: sbatch" in result.stderr and result.stdout == ""


# -- launch/k8s/render.sh ---------------------------------------------------------------------------
