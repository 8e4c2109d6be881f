"""False-negative masking (issue 20): the duplicated text set at batch 4096, masking off vs on.

    python bench/false_negatives.py [--out outputs/bench/false_negatives] [--steps N] [--batch B]

RESULTS.md's batch-size ablation trains the tiny text model (`text_batch4096`: report/experiments.py,
FULL sizes: configs/experiments/tiny_text.gin, 20 steps at batch 4096 in GradCache chunks of 256).
Its 1056 training pairs fill a batch about 3.9 times, and each pair's copies count as its
negatives, so the loss is bounded away from zero. This trains that run twice through
`python -m cpt_jax.train`, with the report's own bindings: as the report runs it, and with
`LossConfig.mask_duplicates=True` (reading the first run's tokenizer, so both see the same token
ids). It prints each command, then loss, in-batch top-1 accuracy each way and the masked logits
per step at a few steps, from each run's metrics.jsonl (log_every=1). --steps / --batch shorten
the run for a smoke test; the defaults are the report's.
"""

from __future__ import annotations

import argparse
import os
import shlex
import shutil
import subprocess
import sys
import time

REPO_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, REPO_ROOT)  # report/ lives in the checkout
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from common import header  # noqa: E402

RUN = "text_batch4096"
MASKING = (("LossConfig.mask_duplicates", True),)


def report_run():
    """The report's run (gin files and bindings) of RUN under the FULL sizes."""
    from report.experiments import FULL, batch_size_experiment

    return next(r for r in batch_size_experiment(FULL).runs if r.name == RUN)


def train_argv(gin_files: tuple[str, ...], bindings: dict, out_dir: str) -> list[str]:
    from report.runner import gin_flag

    argv = ["python", "-m", "cpt_jax.train"] + [f"--gin_file={f}" for f in gin_files]
    return argv + [gin_flag(k, v) for k, v in bindings.items()] + [gin_flag("TrainConfig.output_dir", out_dir)]


def train(argv: list[str], log_path: str) -> float:
    """Runs argv from the repository root (its `python` this interpreter), echoing the step lines;
    returns the wall time, or raises with the log's tail."""
    start = time.perf_counter()
    with open(log_path, "w") as log:
        proc = subprocess.Popen([sys.executable, *argv[1:]], cwd=REPO_ROOT, stdout=subprocess.PIPE,
                                stderr=subprocess.STDOUT, text=True, env={**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2"})
        for line in proc.stdout:
            log.write(line)
            if line.startswith(("step ", "first step")):
                print("   ", line.rstrip(), flush=True)
    if proc.wait():
        with open(log_path) as f:
            raise RuntimeError(f"exit {proc.returncode}: {shlex.join(argv)}\n{''.join(f.readlines()[-30:])}")
    return time.perf_counter() - start


def table(rows: dict[str, list[dict]], batch: int, steps: int) -> str:
    off, on = rows["off"], rows["on"]
    shown = sorted({s for s in (1, 5, 10, 15, 20, *(steps * q // 4 for q in (1, 2, 3)), steps) if 1 <= s <= steps})
    lines = [
        "| step | loss off | loss on | acc x->y off | acc x->y on | acc y->x off | acc y->x on "
        "| masked logits (on) | masked per row (on) |",
        "| ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |",
    ]
    for s in shown:
        a, b = off[s - 1], on[s - 1]
        masked = b.get("masked_duplicates", 0.0)
        lines.append(
            f"| {s} | {a['loss']:.4f} | {b['loss']:.4f} | {a['accuracy_xy']:.4f} | {b['accuracy_xy']:.4f} "
            f"| {a['accuracy_yx']:.4f} | {b['accuracy_yx']:.4f} | {masked:.0f} | {masked / (2 * batch):.2f} |"
        )
    return "\n".join(lines)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--out", default="outputs/bench/false_negatives")
    p.add_argument("--steps", type=int, default=None, help="default: the report's 20")
    p.add_argument("--batch", type=int, default=None, help="default: the report's 4096")
    args = p.parse_args()

    from report.runner import display_path, read_metrics, seconds_per_step

    run = report_run()
    bindings = dict(run.bindings)
    if args.steps:
        bindings.update({"TrainConfig.num_steps": args.steps, "TrainConfig.checkpoint_every": args.steps})
    if args.batch:
        bindings["TrainConfig.global_batch_size"] = args.batch
    steps, batch = bindings["TrainConfig.num_steps"], bindings["TrainConfig.global_batch_size"]
    out = os.path.join(REPO_ROOT, args.out) if not os.path.isabs(args.out) else args.out
    dirs = {"off": os.path.join(out, "off"), "on": os.path.join(out, "on")}
    tokenizer = display_path(os.path.join(dirs["off"], "tokenizer"))
    masked = {**bindings, "TrainConfig.tokenizer_path": tokenizer, **dict(MASKING)}
    print(header(f"{RUN} (report/experiments.py FULL) masking off vs on, {steps} steps at batch {batch}"), flush=True)
    rows, seconds = {}, {}
    for name, binds in (("off", bindings), ("on", masked)):
        shutil.rmtree(dirs[name], ignore_errors=True)  # a fresh run, not a resume
        os.makedirs(dirs[name])
        argv = train_argv(run.gin_files, binds, display_path(dirs[name]))
        print(f"masking {name}:\n{shlex.join(argv)}", flush=True)
        wall = train(argv, os.path.join(dirs[name], "bench.log"))
        rows[name] = read_metrics(dirs[name])
        seconds[name] = seconds_per_step(rows[name])
        print(f"masking {name}: {wall:.0f}s wall, {seconds[name]:.2f} s/step after compilation", flush=True)
    print(table(rows, batch, steps))


if __name__ == "__main__":
    main()
