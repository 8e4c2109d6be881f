"""Made-up run records and the results dict `python -m report` builds from them (the QUICK plan),
for the summary, plot and Markdown tests; the main job's numbers are chosen so that its sentences
take each direction (trained below BM25 on code, above it on text, below the bag of words on the probe)."""

from __future__ import annotations

import json
import os
import pathlib

from cpt_jax.data import probe_tasks
from cpt_jax.eval.suite import BAG_OF_WORDS, BM25, RANDOM, START, TRAINED
from report import analysis, plots, runner
from report.experiments import QUICK, Run, experiments

CODE_KEY, TEXT_KEY = "stdlib_code/test (314 queries, 314 docs)", "stdlib_text/test (185 queries, 185 docs)"
PROBE_KEY = "classification:stdlib_packages (120 train, 40 test)"
SITE_CODE_KEY, SITE_TEXT_KEY = "site_code/test (100 queries, 100 docs)", "site_text/test (100 queries, 100 docs)"
MAIN_RESULTS = {
    SITE_CODE_KEY: {TRAINED: {"mrr": 0.42, "ndcg@10": 0.50}, START: {"mrr": 0.30, "ndcg@10": 0.38},
                    RANDOM: {"mrr": 0.01, "ndcg@10": 0.02}, BM25: {"mrr": 0.45, "ndcg@10": 0.52}},
    SITE_TEXT_KEY: {TRAINED: {"mrr": 0.60, "ndcg@10": 0.65}, START: {"mrr": 0.50, "ndcg@10": 0.55},
                    RANDOM: {"mrr": 0.03, "ndcg@10": 0.04}, BM25: {"mrr": 0.40, "ndcg@10": 0.45}},
    PROBE_KEY: {TRAINED: {"accuracy": 0.55, "macro_f1": 0.5}, START: {"accuracy": 0.5, "macro_f1": 0.45},
                RANDOM: {"accuracy": 0.26, "macro_f1": 0.2}, BAG_OF_WORDS: {"accuracy": 0.6, "macro_f1": 0.55}},
}


def metrics(steps: int, loss: float) -> list[dict[str, float]]:
    return [
        {"step": s, "loss": loss - 0.1 * s, "accuracy_xy": 0.02 * s, "accuracy_yx": 0.01 * s,
         "temperature": 14.0 + 0.01 * s, "steps_per_s": 2.0, "skipped_steps": 0.0}
        for s in range(1, steps + 1)
    ]


def scores(value: float, baselines: bool) -> dict[str, dict[str, float]]:
    out = {"cpt-jax (trained)": {"mrr": value, "ndcg@10": value + 0.01}}
    if baselines:
        out |= {"random init": {"mrr": 0.02, "ndcg@10": 0.03}, "BM25": {"mrr": 0.57, "ndcg@10": 0.62}}
    return out


def record(run: Run, index: int, runner_: runner.Runner) -> dict:
    """A record as Runner.execute returns it, with made-up but distinct numbers."""
    evals = {}
    if run.name == "main":
        (evaluation,) = run.evals
        evals["eval"] = {"command": " ".join(runner_.eval_argv(run, evaluation)), "wall_s": 90.0, "reused": False,
                         "results": json.loads(json.dumps(MAIN_RESULTS))}
    for j, evaluation in enumerate(run.evals if run.name != "main" else ()):
        value = 0.1 + 0.01 * index + 0.001 * j
        results = {CODE_KEY if evaluation.tasks == ("stdlib_code",) else TEXT_KEY: scores(value, evaluation.baselines)}
        if evaluation.classification:
            probe = {"cpt-jax (trained)": {"accuracy": 0.3 + 0.01 * index + 0.001 * j, "macro_f1": 0.25}}
            if evaluation.baselines:
                probe |= {"random init": {"accuracy": 0.26, "macro_f1": 0.2},
                          "bag of words (TF-IDF)": {"accuracy": 0.5, "macro_f1": 0.45}}
            results[PROBE_KEY] = probe
        evals[evaluation.name] = {"command": " ".join(runner_.eval_argv(run, evaluation)), "wall_s": 20.0 + j,
                                  "reused": False, "results": results}
    steps = dict(run.bindings).get("TrainConfig.num_steps", 100)
    return {
        "name": run.name, "label": run.label, "model": run.model, "run_dir": runner_.run_dir(run),
        "bindings": dict(run.bindings), "evals": evals, "metrics": metrics(steps, 4.0 + index), "s_per_step": 0.5,
        "train": {"command": " ".join(runner_.train_argv(run)), "wall_s": 60.0 + index, "reused": index == 0},
    }


def results(tmp_path: pathlib.Path) -> dict:
    """A results dict as __main__ builds it, from made-up records of the QUICK plan."""
    runner_ = runner.Runner(str(tmp_path / "runs"), str(tmp_path / "probe"))
    plan = experiments(QUICK)
    index = iter(range(100))
    by_experiment = {exp.key: [record(run, next(index), runner_) for run in exp.runs] for exp in plan}
    stats = {"classes": ["a", "b", "c", "d"], "counts": {s: {"a": 10} for s in probe_tasks.SPLITS},
             "seen_in_training_fraction": 0.75}
    train_examples = {r["name"]: 4891 if r["name"].startswith("code") else 20 for r in by_experiment["batch_size"]}
    summary = analysis.summarise(by_experiment, train_examples, stats)
    folder = tmp_path / "results"
    folder.mkdir()
    plot_paths = {k: os.path.relpath(v, tmp_path) for k, v in plots.draw_all(by_experiment, summary, str(folder)).items()}
    return {
        "report": {"command": "python -m report --quick", "mode": "quick", "date": "2026-11-27 12:00 UTC",
                   "wall_s": 754.0, "machine": {"cpus": 2, "processor": "cpu", "memory_gb": 24.0, "platform": "linux"},
                   "load_average": {"start": [0.1, 0.2, 0.3], "end": [1.0, 1.1, 1.2]}, "versions": {"jax": "0.10.2"},
                   "git": {"commit": "abc", "dirty": False}, "out_dir": "runs"},
        "probe": stats,
        "experiments": {exp.key: {"title": exp.title, "compares": exp.compares, "runs": [r.name for r in exp.runs]}
                        for exp in plan},
        "runs": {r["name"]: r for rs in by_experiment.values() for r in rs},
        "summary": summary,
        "plots": {**plot_paths, "json": "results/results.json"},
    }
