"""Dry runs of the cluster launchers (launch/tpu_vm.sh, launch/slurm.sbatch, launch/k8s/render.sh).

Nothing here reaches a cluster: every launcher runs with stand-ins for gcloud, kubectl, srun and
sbatch first on PATH that fail loudly and leave a mark, and each test checks that none ran. The
printed commands are checked word by word (parsed as a shell would), and then executed as the
script they claim to be, against recording stand-ins, so the quoting is proven end to end: a train
flag with spaces, quotes or `$` arrives on the worker as the very same single argument.
"""

from __future__ import annotations

import os
import re
import shlex
import shutil
import subprocess
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
TPU_VM = REPO / "launch" / "tpu_vm.sh"
SLURM = REPO / "launch" / "slurm.sbatch"
RENDER = REPO / "launch" / "k8s" / "render.sh"
TEMPLATE = REPO / "launch" / "k8s" / "jobset.yaml"
SCRIPTS = (TPU_VM, SLURM, RENDER)
CLUSTER_TOOLS = ("gcloud", "kubectl", "srun", "sbatch", "envsubst")

# Train flags that break naive quoting: spaces, a quote, a dollar, a glob, a semicolon.
TRAIN = [
    "--gin_file=configs/experiments/tiny_code.gin",
    "--gin_param=OptimizerConfig.learning_rate = 1e-3",
    "--gin.TrainConfig.output_dir=/tmp/it's a $HOME run",
    "--gin_param=TrainConfig.seed = 7; ModelConfig.name = '*'",
]

TRIPWIRE = """#!/usr/bin/env bash
echo "FAKE $(basename "$0") CALLED: $*" >&2
echo "$(basename "$0") $*" >> "$TRIPWIRE_LOG"
exit 97
"""

# Records its argv (NUL-separated) and the MEGASCALE_* environment, one file pair per call.
RECORDER = """#!/usr/bin/env bash
f=$(mktemp "$RECORD_DIR/call.XXXXXX")
printf '%s\\0' "$(basename "$0")" "$@" > "$f"
env | grep '^MEGASCALE_' | sort > "$f.env" || true
if [[ $(basename "$0") == gcloud && " $* " == *" describe "* ]]; then echo 10.0.0.2; fi
exit 0
"""


def _write_exe(path: Path, text: str) -> None:
    path.write_text(text)
    path.chmod(0o755)


@pytest.fixture
def tripwire(tmp_path):
    """PATH with failing stand-ins for every cluster tool; yields the env and the log to check."""
    bin_dir = tmp_path / "tripwire_bin"
    bin_dir.mkdir()
    for tool in CLUSTER_TOOLS:
        _write_exe(bin_dir / tool, TRIPWIRE)
    log = tmp_path / "tripwire.log"
    env = {k: v for k, v in os.environ.items() if not k.startswith(("SLURM_", "MEGASCALE_", "JAX_LOCAL"))}
    env.update(PATH=f"{bin_dir}{os.pathsep}{os.environ['PATH']}", TRIPWIRE_LOG=str(log))
    env.pop("DRY_RUN", None)
    yield env, log
    assert not log.exists(), f"a cluster tool was called: {log.read_text()}"


def run(script: Path, args, env, cwd, extra_env=None) -> subprocess.CompletedProcess:
    full_env = dict(env, **(extra_env or {}))
    return subprocess.run(["bash", str(script), *args], env=full_env, cwd=cwd, capture_output=True,
                          text=True, timeout=30)


def ok(script, args, env, cwd, extra_env=None) -> list[str]:
    result = run(script, args, env, cwd, extra_env)
    assert result.returncode == 0, result.stderr
    return result.stdout.splitlines()


def execute_printed(script_text: str, tmp_path: Path, home: Path | None = None) -> list[tuple[list[str], str]]:
    """Runs a dry run's output with recording stand-ins; returns (argv, MEGASCALE env) per call."""
    rec_bin = tmp_path / "rec_bin"
    rec_dir = tmp_path / "records"
    rec_bin.mkdir(exist_ok=True)
    rec_dir.mkdir(exist_ok=True)
    for tool in (*CLUSTER_TOOLS, "python3", "git"):
        _write_exe(rec_bin / tool, RECORDER)
    env = {"PATH": f"{rec_bin}{os.pathsep}/usr/bin{os.pathsep}/bin", "RECORD_DIR": str(rec_dir),
           "HOME": str(home or tmp_path)}
    result = subprocess.run(["bash", "-euo", "pipefail", "-c", script_text], env=env, cwd=tmp_path,
                            capture_output=True, text=True, timeout=30)
    assert result.returncode == 0, result.stderr
    calls = []
    for f in sorted(p for p in rec_dir.iterdir() if not p.name.endswith(".env")):
        argv = f.read_text().split("\0")[:-1]
        calls.append((argv, Path(f"{f}.env").read_text()))
        f.unlink()
        Path(f"{f}.env").unlink()
    return calls


def option(words: list[str], name: str) -> str:
    values = [w.split("=", 1)[1] for w in words if w.startswith(f"{name}=")]
    assert len(values) == 1, (name, words)
    return values[0]


def segments(remote: str) -> list[list[str]]:
    """The worker's command split into its `&&`-joined simple commands, each parsed into words."""
    out, cur = [], []
    for w in shlex.split(remote):
        if w == "&&":
            out.append(cur)
            cur = []
        else:
            cur.append(w)
    return [*out, cur]


# -- launch/tpu_vm.sh -------------------------------------------------------------------------------


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


def _render(env, cwd, n=4, gpus=8, train=TRAIN, extra=()):
    return "\n".join(ok(RENDER, ["--name=cpt-run1", "--image=ghcr.io/acme/cpt-jax:v1", f"--num_processes={n}",
                                 f"--gpus_per_pod={gpus}", *extra, "--", *train], env, cwd)) + "\n"


def _structural_checks(text: str, n: int) -> None:
    """What must hold of the manifest text whether or not a YAML parser is around."""
    assert re.search(r"^apiVersion: jobset\.x-k8s\.io/v1alpha2$", text, re.M)
    assert re.search(r"^kind: JobSet$", text, re.M)
    assert re.search(rf"^\s+parallelism: {n}$", text, re.M)
    assert re.search(rf"^\s+completions: {n}$", text, re.M)
    assert re.search(r"^\s+completionMode: Indexed$", text, re.M)
    assert re.search(r"^\s+- --coordinator_address=\$\(COORDINATOR\):1234$", text, re.M)
    assert re.search(rf"^\s+- --num_processes={n}$", text, re.M)
    assert re.search(r"^\s+- --process_id=\$\(JOB_COMPLETION_INDEX\)$", text, re.M)
    assert re.search(r"^\s+value: cpt-run1-workers-0-0\.cpt-run1$", text, re.M)
    assert "fieldPath: metadata.annotations['batch.kubernetes.io/job-completion-index']" in text
    assert not re.search(r"__[A-Z_]+__", text), "a placeholder was left unfilled"
    assert "\t" not in text


def _yaml():
    """The yaml module when installed; without it the tests keep to the structural checks."""
    try:
        import yaml
    except ImportError:
        return None
    return yaml


def _container(doc):
    rjob = doc["spec"]["replicatedJobs"][0]
    return rjob, rjob["template"]["spec"], rjob["template"]["spec"]["template"]["spec"]["containers"][0]


def test_render_jobset(tripwire, tmp_path):
    env, _ = tripwire
    text = _render(env, tmp_path, n=4, gpus=8)
    _structural_checks(text, 4)
    if (yaml := _yaml()) is None:
        return
    doc = yaml.safe_load(text)
    assert doc["apiVersion"] == "jobset.x-k8s.io/v1alpha2" and doc["kind"] == "JobSet"
    assert doc["metadata"]["name"] == "cpt-run1"
    assert doc["spec"]["network"]["enableDNSHostnames"] is True
    rjob, job, c = _container(doc)
    assert rjob["name"] == "workers" and rjob["replicas"] == 1
    assert job["parallelism"] == job["completions"] == 4 and job["completionMode"] == "Indexed"
    assert job["template"]["spec"]["restartPolicy"] == "Never"
    assert c["image"] == "ghcr.io/acme/cpt-jax:v1"
    assert c["command"] == ["python3", "-m", "cpt_jax.train"]
    assert c["args"] == [*TRAIN, "--coordinator_address=$(COORDINATOR):1234", "--num_processes=4",
                         "--process_id=$(JOB_COMPLETION_INDEX)"]
    env_vars = {e["name"]: e for e in c["env"]}
    # JobSet's pod DNS: <jobset>-<replicated job>-<job index>-<pod index>.<jobset>
    assert env_vars["COORDINATOR"]["value"] == "cpt-run1-workers-0-0.cpt-run1"
    assert env_vars["JOB_COMPLETION_INDEX"]["valueFrom"]["fieldRef"]["fieldPath"] == (
        "metadata.annotations['batch.kubernetes.io/job-completion-index']")
    assert c["resources"] == {"requests": {"nvidia.com/gpu": 8}, "limits": {"nvidia.com/gpu": 8}}
    assert c["ports"][0]["containerPort"] == 1234


def test_render_escapes_kubernetes_expansion_and_quotes(tripwire, tmp_path):
    env, _ = tripwire
    train = ["--gin.TrainConfig.output_dir=/runs/$(date)", "--gin_param=A.b = 'x: y' # not a comment", "--x=&*!|>"]
    text = _render(env, tmp_path, n=2, train=train, extra=["--port=4321", "--dry_run"])
    assert "              - '--gin.TrainConfig.output_dir=/runs/$$(date)'\n" in text
    assert "              - '--gin_param=A.b = ''x: y'' # not a comment'\n" in text
    if (yaml := _yaml()) is None:
        return
    _, _, c = _container(yaml.safe_load(text))
    # Kubernetes turns $$( back into $(, so the process gets the flag as written.
    assert c["args"][:3] == ["--gin.TrainConfig.output_dir=/runs/$$(date)", train[1], train[2]]
    assert c["args"][3] == "--coordinator_address=$(COORDINATOR):4321"


def test_render_without_gpus_or_train_flags(tripwire, tmp_path):
    env, _ = tripwire
    text = _render(env, tmp_path, n=1, gpus=0, train=[])
    _structural_checks(text, 1)
    assert "nvidia.com/gpu:" not in text and "resources:" not in text
    if (yaml := _yaml()) is None:
        return
    _, job, c = _container(yaml.safe_load(text))
    assert "resources" not in c
    assert c["args"] == ["--coordinator_address=$(COORDINATOR):1234", "--num_processes=1",
                         "--process_id=$(JOB_COMPLETION_INDEX)"]


@pytest.mark.parametrize(
    "args, message",
    [
        (["--image=i", "--num_processes=2", "--gpus_per_pod=1"], "--name is required"),
        (["--name=a", "--num_processes=2", "--gpus_per_pod=1"], "--image is required"),
        (["--name=a", "--image=i", "--gpus_per_pod=1"], "--num_processes is required"),
        (["--name=a", "--image=i", "--num_processes=2"], "--gpus_per_pod is required"),
        (["--name=a", "--image=i", "--num_processes=0", "--gpus_per_pod=1"], "--num_processes must be"),
        (["--name=Bad_Name", "--image=i", "--num_processes=2", "--gpus_per_pod=1"], "DNS label"),
        (["--name=" + "a" * 60, "--image=i", "--num_processes=2", "--gpus_per_pod=1"], "too long"),
        (["--name=a", "--image=i x", "--num_processes=2", "--gpus_per_pod=1"], "--image must not"),
    ],
)
def test_render_bad_options_fail_with_usage(tripwire, tmp_path, args, message):
    env, _ = tripwire
    result = run(RENDER, args, env, tmp_path)
    assert result.returncode == 2
    assert message in result.stderr and "usage: launch/k8s/render.sh" in result.stderr
    assert result.stdout == ""


# -- the scripts themselves -------------------------------------------------------------------------


@pytest.mark.parametrize("script", SCRIPTS, ids=lambda p: p.name)
def test_scripts_parse_and_pass_shellcheck(script):
    assert subprocess.run(["bash", "-n", str(script)], capture_output=True).returncode == 0
    assert os.access(script, os.X_OK), f"{script} is not executable"
    if shutil.which("shellcheck") is None:
        pytest.skip("shellcheck not installed")
    result = subprocess.run(["shellcheck", "-x", str(script)], capture_output=True, text=True, timeout=30)
    assert result.returncode == 0, result.stdout


def test_template_placeholders_are_the_documented_ones():
    found = set(re.findall(r"__[A-Z_]+__", TEMPLATE.read_text()))
    assert found == {"__NAME__", "__IMAGE__", "__NUM_PROCESSES__", "__GPUS_PER_POD__", "__PORT__", "__TRAIN_ARGS__"}
