"""The evaluation-during-training curve of one or more runs, read back from their TensorBoard event
files (the "eval/<task>/<metric>" scalars the loop writes), as a PNG and a table; marks each run's
best step (its best.json).

    python bench/eval_curve.py outputs/matryoshka/minilm_code_with_matryoshka outputs/matryoshka/minilm_code_without_matryoshka \\
        --metric stdlib_code/validation/ndcg@10 --out bench/eval_curve.png
"""

from __future__ import annotations

import argparse
import glob
import json
import os

import matplotlib

matplotlib.use("Agg")  # files only
from matplotlib.figure import Figure  # noqa: E402


def curve(run_dir: str, metric: str) -> list[tuple[int, float]]:
    """(step, value) of eval/<metric> over all event files of the run (a restart's repeat: the later)."""
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    points: dict[int, float] = {}
    for path in sorted(glob.glob(os.path.join(run_dir, "tensorboard", "events.*"))):
        acc = EventAccumulator(path)
        acc.Reload()
        if f"eval/{metric}" in acc.Tags()["scalars"]:
            points.update({e.step: e.value for e in acc.Scalars(f"eval/{metric}")})
    if not points:
        raise SystemExit(f"{run_dir} has no eval/{metric} in its TensorBoard events; was TrainConfig.evaluation set?")
    return sorted(points.items())


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("runs", nargs="+")
    p.add_argument("--metric", default="stdlib_code/validation/ndcg@10")
    p.add_argument("--out", default="bench/eval_curve.png")
    args = p.parse_args()
    fig = Figure(figsize=(6.5, 4))
    ax = fig.add_subplot()
    for run in args.runs:
        points = curve(run, args.metric)
        steps, values = zip(*points)
        label = os.path.basename(os.path.normpath(run))
        ax.plot(steps, values, marker="o", label=label)
        best_path = os.path.join(run, "best.json")
        best = json.load(open(best_path)) if os.path.exists(best_path) else None
        if best:
            ax.scatter([best["step"]], [best["value"]], s=120, facecolors="none", edgecolors="black")
        kept = sorted(d for d in os.listdir(os.path.join(run, "checkpoints")) if d.isdigit())
        print(f"{label}: " + ", ".join(f"{s} {v:.4f}" for s, v in points)
              + (f" | best step {best['step']} ({best['value']:.4f}); checkpoints on disk {kept}" if best else ""))
    ax.set_xlabel("step")
    ax.set_ylabel(args.metric)
    ax.set_title("evaluation during training (circled: the kept best step)")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(args.out, dpi=110)
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
