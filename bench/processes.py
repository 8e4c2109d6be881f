"""Training steps per second: 1 process x 8 devices vs 2 processes x 4 devices (gloo), same global batch.

Both runs train the tiny config on the embedded stdlib_code data from the same prepared
dataset and tokenizer; steps/s is the median of the per-step rates logged after warm-up.

  python bench/processes.py [--steps 40] [--batch 64]
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import platform
import statistics
import subprocess
import sys
import tempfile

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def run(cmd: list[str], env: dict[str, str]) -> None:
    proc = subprocess.run(cmd, cwd=REPO, env={**os.environ, **env}, capture_output=True, text=True)
    if proc.returncode:
        raise SystemExit(proc.stdout[-2000:] + proc.stderr[-2000:])


def steps_per_second(run_dir: str, warmup: int) -> float:
    with open(os.path.join(run_dir, "metrics.jsonl")) as f:
        rates = [r["steps_per_s"] for r in map(json.loads, f) if r["step"] > warmup and "steps_per_s" in r]
    return statistics.median(rates)


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("--steps", type=int, default=40)
    p.add_argument("--batch", type=int, default=64)
    args = p.parse_args()
    from cpt_jax.data import builders
    from cpt_jax.data.pipeline import iter_training_texts
    from cpt_jax.data.tokenizer import Tokenizer

    tmp = tempfile.mkdtemp(prefix="bench_processes_")
    data_dir, tok = os.path.join(tmp, "tfds"), os.path.join(tmp, "tok")
    builders.prepare("stdlib_code", data_dir)
    Tokenizer.train(iter_training_texts(data_dir, datasets=("stdlib_code",), max_texts=20_000), 8000, tok)

    def flags(out: str) -> list[str]:
        return [
            "--gin_file=configs/experiments/tiny_code.gin",
            f"--gin.TrainConfig.output_dir={out}",
            f"--gin.DATA_DIR={data_dir}",
            f"--gin.TrainConfig.tokenizer_path={tok}",
            f"--gin.TrainConfig.num_steps={args.steps}",
            f"--gin.TrainConfig.global_batch_size={args.batch}",
            "--gin.TrainConfig.log_every=1",
            f"--gin.TrainConfig.checkpoint_every={10 * args.steps}",
        ]

    one = os.path.join(tmp, "one")
    run([sys.executable, "-m", "cpt_jax.train", *flags(one)],
        {"XLA_FLAGS": "--xla_force_host_platform_device_count=8", "JAX_PLATFORMS": "cpu"})
    two = os.path.join(tmp, "two")
    run(["bash", "launch/local.sh", "2", "4", *flags(two)], {"JAX_PLATFORMS": "cpu"})

    import jax

    print(f"# {datetime.date.today()} {platform.node()} {os.cpu_count()} cores, python {platform.python_version()}, "
          f"jax {jax.__version__}; tiny config, global batch {args.batch}, {args.steps} steps, median after 5")
    print(f"{'layout':<28} {'steps/s':>8}")
    for name, d in (("1 process x 8 devices", one), ("2 processes x 4 devices", two)):
        print(f"{name:<28} {steps_per_second(d, warmup=5):8.3f}")


if __name__ == "__main__":
    main()
