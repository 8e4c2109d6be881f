"""python -m report [--quick] [--out_dir DIR] [--results FILE] — train, evaluate, write RESULTS.md.

Run from the repository root (report/ is part of the checkout, not of the installed cpt_jax
package). Runs every experiment of report/experiments.py through the training and evaluation
CLIs (runs under --out_dir, each in its own directory; finished ones are reused), then writes
FILE (default: RESULTS.md at the repository root; <out_dir>/RESULTS.md with --quick, so a quick
run never overwrites the real one) and, in a results/ folder beside it, the PNG plots and
results.json with every number FILE shows.
"""

from __future__ import annotations

import argparse
import dataclasses
import datetime
import importlib.metadata
import json
import os
import platform
import shlex
import subprocess
import sys
import time
from typing import Any

import psutil

from cpt_jax.data import probe_tasks
from cpt_jax.data.probe_tasks import CLASSIFICATION_TASKS, STDLIB_PACKAGES
from cpt_jax.eval.spec import DEFAULT_DATA_DIR
from report import analysis, markdown, plots
from report.experiments import FULL, QUICK, Sizes, experiments
from report.runner import REPO_ROOT, Runner, display_path, train_examples

PACKAGES = (
    "jax", "jaxlib", "flax", "optax", "orbax-checkpoint", "grain", "tensorflow-datasets", "tokenizers",
    "transformers", "scikit-learn", "numpy", "matplotlib",
)


def parse_args(argv: list[str]) -> argparse.Namespace:
    p = argparse.ArgumentParser(
        prog="python -m report",
        description=__doc__.splitlines()[0],
        epilog="Run from the repository root (report/ is part of the checkout, not of the installed cpt_jax).",
    )
    p.add_argument("--quick", action="store_true", help="tiny sizes that check the plumbing in a few minutes")
    p.add_argument("--out_dir", default=None, help="run directories (default: outputs/report, outputs/report_quick)")
    p.add_argument("--results", default=None, help="the Markdown file (default: RESULTS.md, <out_dir>/RESULTS.md)")
    return p.parse_args(argv)


def machine() -> dict[str, Any]:
    processor = platform.processor()
    try:
        with open("/proc/cpuinfo") as f:
            processor = next((line.split(":", 1)[1].strip() for line in f if line.startswith("model name")), processor)
    except OSError:
        pass
    return {
        "cpus": os.cpu_count(),
        "processor": processor or "unknown processor",
        "memory_gb": psutil.virtual_memory().total / 2**30,
        "platform": platform.platform(),
    }


def versions() -> dict[str, str]:
    out = {"Python": platform.python_version()}
    for name in PACKAGES:
        try:
            out[name] = importlib.metadata.version(name)
        except importlib.metadata.PackageNotFoundError:
            continue
    return out


def git_state() -> dict[str, Any] | None:
    """The checkout's commit and whether it has uncommitted changes; None outside git."""
    try:
        git = lambda *args: subprocess.run(  # noqa: E731
            ["git", *args], cwd=REPO_ROOT, capture_output=True, text=True, check=True
        ).stdout.strip()
        commit, status = git("rev-parse", "HEAD"), git("status", "--porcelain")
    except (OSError, subprocess.CalledProcessError):
        return None
    return {"commit": commit, "dirty": bool(status)}


def probe_task(sizes: Sizes, out_dir: str) -> tuple[str, dict[str, Any]]:
    """The evaluations' ``--classification`` value and the task's stats. The built-in task at its
    own sizes (FULL) is named, as the README's command names it, and built where the evaluate CLI
    builds it (under the runs' data dir, outputs/tfds); other sizes (QUICK) get a folder under out_dir."""
    if sizes.probe == CLASSIFICATION_TASKS[STDLIB_PACKAGES]:
        folder = probe_tasks.task_dir(os.path.join(REPO_ROOT, DEFAULT_DATA_DIR), STDLIB_PACKAGES)
        return STDLIB_PACKAGES, probe_tasks.ensure_task(folder, sizes.probe)
    folder = os.path.join(out_dir, "probe", STDLIB_PACKAGES)
    return folder, probe_tasks.ensure_task(folder, sizes.probe)


def main(argv: list[str]) -> None:
    args = parse_args(argv)
    start, load_start = time.perf_counter(), os.getloadavg()
    # The code the runs are trained with: read before the report writes its own tracked files
    # (RESULTS.md, results/), which would otherwise always count as uncommitted changes.
    git = git_state()
    date = datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
    sizes = QUICK if args.quick else FULL
    default_out = os.path.join(REPO_ROOT, "outputs", "report_quick" if args.quick else "report")
    out_dir = os.path.abspath(args.out_dir or default_out)
    default_results = os.path.join(out_dir if args.quick else REPO_ROOT, "RESULTS.md")
    results_path = os.path.abspath(args.results or default_results)
    folder = os.path.join(os.path.dirname(results_path), "results")
    os.makedirs(folder, exist_ok=True)
    log = lambda line: print(f"[report {time.perf_counter() - start:6.0f}s] {line}", flush=True)  # noqa: E731

    probe, probe_stats = probe_task(sizes, out_dir)
    runner = Runner(out_dir, probe, log)
    plan = experiments(sizes)
    by_experiment = {exp.key: [runner.execute(run) for run in exp.runs] for exp in plan}
    batch = by_experiment["batch_size"]
    summary = analysis.summarise(by_experiment, {r["name"]: train_examples(r["run_dir"]) for r in batch}, probe_stats)
    relative = lambda path: os.path.relpath(path, os.path.dirname(results_path))  # noqa: E731
    plot_paths = {k: relative(v) for k, v in plots.draw_all(by_experiment, summary, folder).items()}
    json_path = os.path.join(folder, "results.json")
    command = shlex.join(["python", "-m", "report", *argv])
    results = {
        "report": {
            "command": command,
            "mode": "quick" if args.quick else "full",
            "date": date,
            "wall_s": time.perf_counter() - start,
            "machine": machine(),
            "load_average": {"start": list(load_start), "end": list(os.getloadavg())},
            "versions": versions(),
            "git": git,
            "out_dir": display_path(out_dir),
        },
        "sizes": dataclasses.asdict(sizes),
        "probe": probe_stats,
        "experiments": {
            exp.key: {"title": exp.title, "compares": exp.compares, "runs": [run.name for run in exp.runs]}
            for exp in plan
        },
        "runs": {r["name"]: r for rs in by_experiment.values() for r in rs},
        "summary": summary,
        "plots": {**plot_paths, "json": relative(json_path)},
    }
    with open(json_path, "w") as f:
        json.dump(results, f, indent=1)
    with open(results_path, "w") as f:
        f.write(markdown.render(results))
    log(f"wrote {results_path}, {json_path} and {len(plot_paths)} plots")


if __name__ == "__main__":
    main(sys.argv[1:])
