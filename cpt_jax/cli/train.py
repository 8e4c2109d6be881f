"""python -m cpt_jax.train --gin_file=configs/experiments/tiny_code.gin [--gin.NAME=VALUE ...]

Multi-process: add --coordinator_address=HOST:PORT --num_processes=N --process_id=I
(launch/local.sh does this on one machine); on SLURM, TPU VMs and JobSet it is automatic.
--initialization_timeout_s bounds the wait for all processes to join; --heartbeat_timeout_s how
long a dead peer goes unnoticed before the others stop. --compilation_cache_dir keeps compiled
steps between runs (default $CPT_JAX_COMPILATION_CACHE or ~/.cache/cpt_jax/xla; "" turns it off).
"""

from __future__ import annotations

import argparse

from cpt_jax.cli import flags
from cpt_jax.live_eval import make_evaluator
from cpt_jax.parallel import runtime
from cpt_jax.train.loop import train


def main(argv: list[str]) -> None:
    """Parses the flags, joins the job, trains."""
    rest = flags.parse_flags(argv)
    parser = argparse.ArgumentParser(prog="python -m cpt_jax.train")
    parser.add_argument("--coordinator_address", default=None)
    parser.add_argument("--num_processes", type=int, default=None)
    parser.add_argument("--process_id", type=int, default=None)
    parser.add_argument("--initialization_timeout_s", type=int, default=runtime.DEFAULT_INITIALIZATION_TIMEOUT_S)
    parser.add_argument("--heartbeat_timeout_s", type=int, default=runtime.DEFAULT_HEARTBEAT_TIMEOUT_S)
    parser.add_argument("--compilation_cache_dir", default=runtime.default_compilation_cache_dir())
    args, unknown = parser.parse_known_args(rest)
    if unknown:
        raise SystemExit(f"unknown arguments {unknown}; pass settings as --gin.NAME=VALUE or --gin_param.")
    # Build the configs first: a bad binding fails here, before any process joins the job.
    train_config = flags.build("TrainConfig")
    runtime.enable_compilation_cache(args.compilation_cache_dir)
    runtime.initialize(
        args.coordinator_address,
        args.num_processes,
        args.process_id,
        initialization_timeout_s=args.initialization_timeout_s,
        heartbeat_timeout_s=args.heartbeat_timeout_s,
    )
    runtime.print_malloc_advice()
    train(train_config, flags.operative_config, make_evaluator)
