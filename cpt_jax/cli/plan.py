"""python -m cpt_jax.plan --gin_file=configs/model/xl.gin --batch 4976 --devices 256 --accelerator v5p

Compiles the real train step ahead of time for N devices (abstract state and batches: nothing is
allocated) on this machine's CPU, and prints per device the parameter, optimizer-state and gradient
bytes, the compiled peak memory, the collectives by kind with bytes per step, and a roofline
step time, MFU, pairs/s and days for the named accelerator (cpt_jax/plan/).

  --gin_file / --gin.NAME=VALUE   a model config (configs/model/*.gin) or an experiment; an experiment's
                                  TrainConfig gives the batch, lengths, optimizer and loss (flags override)
  --devices N --accelerator NAME  the target: v4, v5e, v5p, a100, h100, h200
  --batch, --len_x, --len_y       global batch and padded lengths
  --mesh DxFxT --chunk C --remat R   fix that part of the layout (-1 allowed in --mesh); the rest is searched
  --pack [--pack_fill F]          the packed batch at an average fill
  --no_search                     compile only the given layout (an experiment's own mesh and chunk)
  --max_compiles K                layouts the search compiles (the most promising by an analytic estimate)
  --pairs P                       training pairs for the days column (default: days per billion pairs)
  --no_propose                    when the batch does not split over every device, the search also
                                  tries the next batch that does and prints it as the proposal; this
                                  turns that off

The N fake CPU devices come from XLA_FLAGS=--xla_force_host_platform_device_count=N, which must be
set before jax starts: the command sets it itself, or, when jax already runs with fewer devices
(called from Python), reruns itself in a child process with it.
"""

from __future__ import annotations

import argparse
import dataclasses
import os
import re
import resource
import subprocess
import sys
import time

from cpt_jax.cli import flags
from cpt_jax.parallel.mesh import MeshConfig
from cpt_jax.plan import report
from cpt_jax.plan.search import NoFit, SearchResult, batch_note, nearest_batches, plan_one, search
from cpt_jax.plan.spec import PlanSpec
from cpt_jax.train.run import with_pretrained_shape

DEVICE_FLAG = "--xla_force_host_platform_device_count"


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m cpt_jax.plan", description=__doc__.splitlines()[0])
    p.add_argument("--devices", type=int, required=True, help="devices of the target")
    p.add_argument("--accelerator", default="v5p", help="v4, v5e, v5p, a100, h100 or h200")
    p.add_argument("--batch", type=int, default=None, help="global batch (pairs); an experiment's by default")
    p.add_argument("--len_x", type=int, default=None, help="x length (default: the experiment's, else 512)")
    p.add_argument("--len_y", type=int, default=None, help="y length (default: the experiment's, else 512)")
    p.add_argument("--mesh", default=None, help="data x fsdp x tensor, e.g. 1x16x16 (one may be -1)")
    p.add_argument("--chunk", type=int, default=None, help="GradCache chunk (pairs); 0 for the plain step")
    p.add_argument("--remat", default=None, help="none, full or dots")
    p.add_argument("--pack", action="store_true", help="plan the packed batch (TrainConfig.pack_sequences)")
    p.add_argument("--pack_fill", type=float, default=0.5, help="real tokens per padded position when packed")
    p.add_argument("--no_search", action="store_true", help="compile only the given layout")
    p.add_argument("--max_compiles", type=int, default=6)
    p.add_argument("--memory_fraction", type=float, default=0.9, help="usable part of each device's memory")
    p.add_argument("--pairs", type=float, default=0.0, help="training pairs for the days column")
    p.add_argument("--no_propose", action="store_true",
                   help="do not also search the nearest batch that splits over every device")
    return p


def parse_mesh(text: str | None) -> MeshConfig | None:
    if text is None:
        return None
    if not re.fullmatch(r"-?\d+x-?\d+x-?\d+", text):
        raise ValueError(f"--mesh {text!r} is not DATAxFSDPxTENSOR, e.g. --mesh 1x16x16 (one size may be -1).")
    data, fsdp, tensor = (int(x) for x in text.split("x"))
    return MeshConfig(data=data, fsdp=fsdp, tensor=tensor)


def _experiment():
    """The gin files' TrainConfig when they bind one (an experiment), else None (a model config)."""
    try:
        return with_pretrained_shape(flags.build("TrainConfig"))
    except TypeError as e:  # a model config binds none of TrainConfig's required fields
        if "missing" in str(e) and "required" in str(e):
            return None
        raise


def build_spec(args: argparse.Namespace) -> PlanSpec:
    """PlanSpec from the parsed gin files and flags (the flags win over an experiment's values)."""
    train = _experiment()
    model = train.model if train else flags.build("ModelConfig")
    fixed = args.no_search and train is not None  # without search an experiment runs its own layout
    batch = args.batch or (train.global_batch_size if train else None)
    if batch is None:
        raise ValueError("--batch is required with a model config (an experiment's TrainConfig gives its own).")
    if train is None:  # a model config alone: LoraConfig bindings still plan a LoRA run
        extra = dict(lora=flags.build("LoraConfig"))
    else:
        extra = dict(optimizer=train.optimizer, temperature=train.temperature, loss=train.loss, lora=train.lora,
                     sharding_rules=train.sharding_rules)
    return PlanSpec(
        model=dataclasses.replace(model, remat=args.remat) if args.remat else model,
        global_batch=batch,
        len_x=args.len_x or (train.data.max_len_x if train else min(512, model.max_len)),
        len_y=args.len_y or (train.data.max_len_y if train else min(512, model.max_len)),
        devices=args.devices,
        accelerator=args.accelerator,
        mesh=parse_mesh(args.mesh) or (train.mesh if fixed else None),
        grad_cache_chunk=args.chunk if args.chunk is not None else (train.grad_cache_chunk_size if fixed else None),
        remat=args.remat,
        pack_sequences=args.pack or bool(train and train.pack_sequences),
        pack_fill=args.pack_fill,
        search=not args.no_search,
        max_compiles=args.max_compiles,
        memory_fraction=args.memory_fraction,
        target_pairs=args.pairs,
        **extra,
    )


def with_device_count(xla_flags: str, n: int) -> str:
    """XLA_FLAGS with the host platform's device count at least n."""
    found = re.search(rf"{DEVICE_FLAG}=(\d+)", xla_flags)
    if found and int(found.group(1)) >= n:
        return xla_flags
    rest = re.sub(rf"\s*{DEVICE_FLAG}=\d+", "", xla_flags).strip()
    return f"{rest} {DEVICE_FLAG}={n}".strip()


def ensure_devices(n: int, argv: list[str]) -> int | None:
    """None when this process can have n CPU devices (XLA_FLAGS set here if jax has not started);
    else the exit code of this command rerun in a child process that has them."""
    import jax
    from jax._src import xla_bridge

    if not xla_bridge.backends_are_initialized():
        os.environ["XLA_FLAGS"] = with_device_count(os.environ.get("XLA_FLAGS", ""), n)
        return None
    if len(jax.devices("cpu")) >= n:
        return None
    env = dict(os.environ, XLA_FLAGS=with_device_count(os.environ.get("XLA_FLAGS", ""), n))
    return subprocess.run([sys.executable, "-m", "cpt_jax.plan", *argv], env=env, check=False).returncode


def main(argv: list[str]) -> int | None:
    """Parses the flags, gets the devices, plans, prints."""
    start = time.perf_counter()
    rest = flags.parse_flags(argv)
    args = parser().parse_args(rest)
    spec = build_spec(args)
    code = ensure_devices(spec.devices, list(argv))
    if code is not None:
        return code
    print(report.heading(spec))
    note = batch_note(spec)
    if note:
        print(f"note: {note}")
    if spec.search:
        propose = bool(note) and not args.no_propose
        result = _search_or_propose(spec, propose)
        if result is not None:
            print(report.ranking(result))
            print(report.dropped(result))
            print(report.details(spec, result.best))
        if propose:
            _propose(spec, result)
    else:
        print(report.details(spec, plan_one(spec)))
    rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024  # Linux reports KiB
    print(f"the plan took {time.perf_counter() - start:.0f} s here, peak RSS {report.gb(rss)}")
    return None


def _search_or_propose(spec: PlanSpec, propose: bool) -> SearchResult | None:
    """The search's result; None when nothing fits but a proposal will be searched (else NoFit)."""
    try:
        return search(spec)
    except NoFit as e:
        if not propose:
            raise
        print(f"nothing fits at batch {spec.global_batch}: {e}")
        return None


def _propose(spec: PlanSpec, result: SearchResult | None) -> None:
    """Searches the next batch that splits over every device and prints its best beside the spec's."""
    batch = nearest_batches(spec.global_batch, spec.devices)[1]
    try:
        alternative = search(dataclasses.replace(spec, global_batch=batch))
    except NoFit as e:
        if result is None:
            raise
        print(f"proposed instead: none; at batch {batch}: {e}")
        return
    best = alternative.best
    here = (f"{result.best.estimate.step_s:.3g} s per step, MFU {result.best.estimate.mfu:.1%} at batch "
            f"{spec.global_batch}" if result else f"nothing fits at batch {spec.global_batch}")
    print(f"proposed instead: batch {batch} (splits over all {spec.devices} devices): {best.layout}, peak "
          f"{report.gb(best.plan.peak_bytes)}, {best.estimate.step_s:.3g} s per step, MFU {best.estimate.mfu:.1%}, "
          f"{best.estimate.pairs_per_s:.4g} pairs/s, {best.estimate.days:.3g} days/"
          f"{'target' if spec.target_pairs else '1B pairs'} (vs {here}); searched in {alternative.wall_seconds:.0f} s")
