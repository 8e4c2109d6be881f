"""Shared pieces of the launcher dry-run tests: paths, stand-in tools, parsing helpers.

Dry runs of the cluster launchers (launch/tpu_vm.sh, launch/slurm.sbatch, launch/k8s/render.sh).

Nothing here reaches a cluster: every launcher runs with stand-ins for gcloud, kubectl, srun and
sbatch first on PATH that fail loudly and leave a mark, and each test checks that none ran. The
printed commands are checked word by word (parsed as a shell would), and then executed as the
script they claim to be, against recording stand-ins, so the quoting is proven end to end: a train
flag with spaces, quotes or `$` arrives on the worker as the very same single argument.
"""

from __future__ import annotations

import os
import shlex
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
