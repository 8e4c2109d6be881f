"""PNG plots of the report, drawn with matplotlib's object API on the Agg canvas (no display,
no pyplot state). Each function writes one file and returns its path."""

from __future__ import annotations

import os
from collections.abc import Sequence
from typing import Any

import matplotlib

matplotlib.use("Agg")  # before anything imports pyplot: files only, never a window

from matplotlib.figure import Figure  # noqa: E402

from report.analysis import Record, series  # noqa: E402

TEMPERATURE_LABEL = "logit scale exp(tau) = 1/temperature"


def _accuracy(metrics: Sequence[dict[str, float]]) -> tuple[list[int], list[float]]:
    """Mean of the x->y and y->x in-batch accuracies per logged step."""
    steps, xy = series(metrics, "accuracy_xy")
    _, yx = series(metrics, "accuracy_yx")
    return steps, [(a + b) / 2 for a, b in zip(xy, yx)]


def training_curves(records: Sequence[Record], path: str, title: str) -> str:
    """Loss, in-batch accuracy and logit scale over steps, one line per run."""
    fig = Figure(figsize=(15, 4.2), layout="constrained")
    axes = fig.subplots(1, 3)
    panels = (
        ("training loss", lambda m: series(m, "loss")),
        ("in-batch accuracy (mean of x->y, y->x)", _accuracy),
        (TEMPERATURE_LABEL, lambda m: series(m, "temperature")),
    )
    for ax, (ylabel, get) in zip(axes, panels):
        for record in records:
            steps, values = get(record["metrics"])
            ax.plot(steps, values, marker="." if len(steps) < 40 else None, label=record["label"])
        ax.set_xlabel("step")
        ax.set_ylabel(ylabel)
        ax.grid(alpha=0.3)
    axes[0].legend(fontsize="small")
    fig.suptitle(title)
    fig.savefig(path, dpi=100)
    return path


def batch_size_scores(summary: dict[str, Any], path: str) -> str:
    """Held-out code MRR and text nDCG@10 against the global batch size (log scale), BM25 dashed."""
    fig = Figure(figsize=(6.5, 4.2), layout="constrained")
    ax = fig.subplots()
    batches = [row["batch"] for row in summary["rows"]]
    for kind, metric, color in (("code", "mrr", "C0"), ("text", "ndcg@10", "C1")):
        ax.plot(batches, [row[kind][metric] for row in summary["rows"]], marker="o", color=color, label=f"{kind} {metric}")
        bm25 = summary["baselines"][kind].get("BM25")
        if bm25:
            ax.axhline(bm25[metric], color=color, linestyle="--", alpha=0.6, label=f"BM25 {kind} {metric}")
    ax.set_xscale("log", base=2)
    ax.set_xticks(batches, [str(b) for b in batches])
    ax.set_xlabel("global batch size")
    ax.set_ylabel("held-out score")
    ax.grid(alpha=0.3)
    ax.legend(fontsize="small")
    fig.suptitle(f"Batch size at {summary['steps']} steps")
    fig.savefig(path, dpi=100)
    return path


def temperature(records: Sequence[Record], path: str) -> str:
    """The learned logit scale of every run against the fraction of its steps done (runs differ in length)."""
    fig = Figure(figsize=(7.5, 4.5), layout="constrained")
    ax = fig.subplots()
    for record in records:
        steps, values = series(record["metrics"], "temperature")
        # A run without a num_steps binding (the main job, as its gin file has it) ends at its last logged step.
        total = record["bindings"].get("TrainConfig.num_steps") or max(steps)
        ax.plot([s / total for s in steps], values, label=record["label"])
    ax.set_xlabel("fraction of the run's steps")
    ax.set_ylabel(TEMPERATURE_LABEL)
    ax.grid(alpha=0.3)
    ax.legend(fontsize="x-small", ncol=2)
    fig.suptitle("Learned temperature")
    fig.savefig(path, dpi=100)
    return path


def draw_all(by_experiment: dict[str, list[Record]], summary: dict[str, Any], folder: str) -> dict[str, str]:
    """Every PNG of the report, written into folder; returns {name: path}."""
    batch = by_experiment["batch_size"]
    path = lambda name: os.path.join(folder, f"{name}.png")  # noqa: E731
    return {
        "main": training_curves(by_experiment["main"], path("main"), "Main job"),
        "batch_size_scores": batch_size_scores(summary["batch_size"], path("batch_size_scores")),
        "batch_size_code": training_curves(
            [r for r in batch if r["name"].startswith("code")], path("batch_size_code"), "Batch size: code"
        ),
        "batch_size_text": training_curves(
            [r for r in batch if r["name"].startswith("text")], path("batch_size_text"), "Batch size: text"
        ),
        "initialisation": training_curves(by_experiment["initialisation"], path("initialisation"), "Initialisation"),
        "delimiters": training_curves(by_experiment["delimiters"], path("delimiters"), "Delimiters"),
        "temperature": temperature([r for rs in by_experiment.values() for r in rs], path("temperature")),
    }
