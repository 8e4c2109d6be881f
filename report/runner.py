"""Runs each experiment through the real CLIs and gathers what they wrote.

Every training is a `python -m cpt_jax.train` subprocess and every evaluation a
`python -m cpt_jax.evaluate` one, run from the repository root, their output in
<run_dir>/train.log and <run_dir>/eval.log. <run_dir>/report_run.json records each command before
it starts and its wall time once it succeeds, so a re-run of the report reuses finished steps
and resumes an interrupted training from its last checkpoint (train() restores it); a run
directory made by a different command is an error, never silently reused.
"""

from __future__ import annotations

import json
import os
import shlex
import statistics
import subprocess
import sys
import time
from collections.abc import Callable
from typing import Any

from cpt_jax.cli.flags import binding_value
from cpt_jax.data.probe_tasks import CLASSIFICATION_TASKS
from report.experiments import Eval, Run

REPO_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))  # the checkout holding report/
MARKER_FILE = "report_run.json"


def gin_flag(name: str, value: Any) -> str:
    """``--gin.NAME=VALUE`` that reads back as ``value`` through cpt_jax.cli.flags.binding_value
    (the one quoting rule): a string that rule quotes anyway stays bare, anything else is
    written as a Python literal."""
    bare = isinstance(value, str) and binding_value(value) == repr(value)
    return f"--gin.{name}={value if bare else repr(value)}"


def display_path(path: str) -> str:
    """``path`` relative to the repository root when inside it (commands run from there), else absolute."""
    path = os.path.abspath(path)
    relative = os.path.relpath(path, REPO_ROOT)
    return path if relative.startswith("..") else relative


class Runner:
    """Trains and evaluates runs under ``out_dir``; ``log`` receives one line per step taken.
    ``probe``: the ``--classification`` of evaluations with the probe, a built-in task's name or a folder."""

    def __init__(self, out_dir: str, probe: str, log: Callable[[str], None] = print) -> None:
        self.out_dir = display_path(out_dir)
        self.probe = probe if probe in CLASSIFICATION_TASKS else display_path(probe)
        self.log = log

    def run_dir(self, run: Run) -> str:
        return os.path.join(self.out_dir, run.name)

    def train_argv(self, run: Run) -> list[str]:
        """The exact training command (``python`` first), output_dir last."""
        argv = ["python", "-m", "cpt_jax.train"] + [f"--gin_file={f}" for f in run.gin_files]
        argv += [gin_flag(name, value) for name, value in run.bindings]
        return argv + [gin_flag("TrainConfig.output_dir", self.run_dir(run))]

    def eval_path(self, run: Run, evaluation: Eval) -> str:
        return os.path.join(self.run_dir(run), f"report_{evaluation.name}.json")

    def eval_argv(self, run: Run, evaluation: Eval) -> list[str]:
        argv = ["python", "-m", "cpt_jax.evaluate", "--checkpoint", self.run_dir(run), "--tasks", ",".join(evaluation.tasks)]
        if evaluation.step is not None:
            argv += ["--step", str(evaluation.step)]
        if evaluation.max_pairs is not None:
            argv += ["--max_pairs", str(evaluation.max_pairs)]
        if evaluation.max_len is not None:
            argv += ["--max_len", str(evaluation.max_len)]
        if evaluation.classification:
            argv += ["--classification", self.probe]
        if not evaluation.baselines:
            argv.append("--no_baselines")
        return argv + ["--output", self.eval_path(run, evaluation)]

    def execute(self, run: Run) -> dict[str, Any]:
        """Trains (unless finished) and evaluates (each unless written) one run; returns its
        record: bindings, commands, wall times, what was reused, the evaluation JSONs and metrics."""
        run_dir = os.path.join(REPO_ROOT, self.run_dir(run))
        os.makedirs(run_dir, exist_ok=True)
        marker_path = os.path.join(run_dir, MARKER_FILE)
        marker = _read_json(marker_path) or {"train": None, "evals": {}}
        train = self._train(run, run_dir, marker, marker_path)
        evals = {evaluation.name: self._evaluate(run, evaluation, run_dir, marker, marker_path) for evaluation in run.evals}
        metrics = read_metrics(run_dir)
        return {
            "name": run.name,
            "label": run.label,
            "model": run.model,
            "run_dir": self.run_dir(run),
            "bindings": dict(run.bindings),
            "train": train,
            "evals": evals,
            "metrics": metrics,
            "s_per_step": seconds_per_step(metrics),
        }

    def _train(self, run: Run, run_dir: str, marker: dict[str, Any], marker_path: str) -> dict[str, Any]:
        """The training step of execute: reused when the marker says this command finished."""
        command = shlex.join(self.train_argv(run))
        done = marker["train"]
        if done and done["command"] != command:
            raise RuntimeError(
                f"{run_dir} was trained by a different command:\n  {done['command']}\nnot\n  {command}\n"
                "Delete the directory, or give the report another --out_dir."
            )
        if done and done["wall_s"] is not None:
            self.log(f"{run.name}: reusing the finished training ({done['wall_s']:.0f}s when it ran)")
            return {**done, "reused": True}
        resumed = done is not None
        marker["train"] = {"command": command, "wall_s": None}  # recorded first: a crash leaves it pending
        marker["evals"] = {}  # evaluations of an unfinished training are never reused
        _write_json(marker_path, marker)
        self.log(f"{run.name}: training{' (resuming)' if resumed else ''}")
        wall = _call(self.train_argv(run), os.path.join(run_dir, "train.log"))
        marker["train"] = {"command": command, "wall_s": wall, "resumed": resumed}
        _write_json(marker_path, marker)
        self.log(f"{run.name}: trained in {wall:.0f}s")
        return {**marker["train"], "reused": False}

    def _evaluate(
        self, run: Run, evaluation: Eval, run_dir: str, marker: dict[str, Any], marker_path: str
    ) -> dict[str, Any]:
        """One evaluation step of execute: reused when this command wrote a readable output."""
        command = shlex.join(self.eval_argv(run, evaluation))
        path = os.path.join(REPO_ROOT, self.eval_path(run, evaluation))
        done = marker["evals"].get(evaluation.name)
        result = _read_json(path)
        if done and done["command"] == command and result is not None:
            self.log(f"{run.name}: reusing {evaluation.name} ({done['wall_s']:.0f}s when it ran)")
            return {**done, "reused": True, "results": result}
        self.log(f"{run.name}: {evaluation.name}")
        wall = _call(self.eval_argv(run, evaluation), os.path.join(run_dir, "eval.log"))
        marker["evals"][evaluation.name] = {"command": command, "wall_s": wall}
        _write_json(marker_path, marker)
        self.log(f"{run.name}: {evaluation.name} in {wall:.0f}s")
        return {**marker["evals"][evaluation.name], "reused": False, "results": _read_json(path)}


def read_metrics(run_dir: str) -> list[dict[str, float]]:
    """The rows of <run_dir>/metrics.jsonl by step, merged (a step's training row and its "eval/..."
    row are one row); for a key logged twice at a step (a resumed run repeats the steps after its
    last checkpoint) the later value wins."""
    rows: dict[int, dict[str, float]] = {}
    with open(os.path.join(run_dir, "metrics.jsonl")) as f:
        for line in f:
            if line.strip():
                row = json.loads(line)
                rows[int(row["step"])] = {**rows.get(int(row["step"]), {}), **row}
    return [rows[step] for step in sorted(rows)]


def seconds_per_step(metrics: list[dict[str, float]]) -> float | None:
    """Median seconds per training step over the logged intervals (compilation excluded)."""
    rates = [row["steps_per_s"] for row in metrics if row.get("steps_per_s")]
    return 1.0 / statistics.median(rates) if rates else None


def train_examples(run_dir: str) -> int:
    """Pairs in the prepared training splits the run drew its batches from (its checkpoint's data
    config: the PreparedPairsSource entries of DataConfig.sources; a run from before the one data
    path recorded dataset / split / data_dir at the top)."""
    import tensorflow_datasets as tfds  # deferred: only the report's summary needs it

    from cpt_jax import checkpoint

    _, meta = checkpoint.read_meta(os.path.join(REPO_ROOT, run_dir))
    data = meta["data_config"]
    prepared = [s for s in data.get("sources", ()) if isinstance(s, dict) and "dataset" in s] or [data]
    total = 0
    for source in prepared:
        builder = tfds.builder(source["dataset"], data_dir=os.path.join(REPO_ROOT, source["data_dir"]))
        total += int(builder.info.splits[source["split"]].num_examples)
    return total


def _call(argv: list[str], log_path: str) -> float:
    """Runs argv (its ``python`` replaced by this interpreter) from the repository root, output
    appended to log_path; returns the wall time, or raises with the log's tail on failure."""
    env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": os.environ.get("TF_CPP_MIN_LOG_LEVEL", "2")}
    start = time.perf_counter()
    with open(log_path, "a") as log:
        log.write(f"$ {shlex.join(argv)}\n")
        log.flush()
        code = subprocess.run(
            [sys.executable, *argv[1:]], cwd=REPO_ROOT, stdout=log, stderr=subprocess.STDOUT, env=env
        ).returncode
    if code:
        with open(log_path) as log:
            tail = "".join(log.readlines()[-30:])
        raise RuntimeError(f"exit {code}: {shlex.join(argv)}\nlast lines of {log_path}:\n{tail}")
    return time.perf_counter() - start


def _read_json(path: str) -> Any:
    """The file's JSON, or None when it is missing or cut short (a run killed while writing)."""
    try:
        with open(path) as f:
            return json.load(f)
    except (FileNotFoundError, json.JSONDecodeError):
        return None


def _write_json(path: str, obj: Any) -> None:
    tmp = f"{path}.tmp"
    with open(tmp, "w") as f:
        json.dump(obj, f, indent=1)
    os.replace(tmp, path)
