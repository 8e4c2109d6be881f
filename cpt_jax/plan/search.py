"""Layout search: mesh shapes x GradCache chunks x remat policies for a spec, ranked by step time.

Bounded in wall time: every candidate first gets an analytic memory and time estimate (plan/
analytic.py, microseconds each); candidates whose analytic memory is far over the device's are
dropped, and the rest are compiled (plan/compile.py, cached in-process) fastest-by-analytic-time
first, until `PlanSpec.max_compiles` fit or twice that many were compiled. Each compile also
calibrates the analytic memory of its kind (remat policy, GradCache or not): later candidates
whose scaled guess is over the usable memory are dropped without compiling. Compiled candidates
whose peak bytes exceed the usable memory are dropped; the rest are ranked by the roofline step
time (plan/estimate.py).

Candidates: every (data, fsdp, tensor) with product = devices whose batch shards (data x fsdp)
divide the global batch and whose tensor size divides the heads (and key/value heads); the plain
step and GradCache chunks of about 1, 2, 4, ... pairs per batch shard (each a multiple of the
shards that divides the batch); remat "full", "dots" and "none". A part the spec fixes is not
searched.
"""

from __future__ import annotations

import dataclasses
import math
import time

from cpt_jax.model import param_count
from cpt_jax.model.config import REMAT_POLICIES
from cpt_jax.plan import analytic
from cpt_jax.plan.compile import CompiledPlan, compile_step
from cpt_jax.plan.estimate import Estimate, estimate, model_step_flops
from cpt_jax.plan.hardware import accelerator, size_text
from cpt_jax.plan.spec import Layout, PlanSpec, given_layout, train_config

_ANALYTIC_SLACK = 1.5  # the analytic memory may be this far over before a candidate is dropped uncompiled
_CALIBRATED_SLACK = 1.1  # the same, once compiled layouts of its kind have scaled the analytic memory


@dataclasses.dataclass(frozen=True)
class Candidate:
    """A layout with its analytic guesses and, once compiled, its plan and estimate."""

    layout: Layout
    analytic_bytes: float
    analytic_seconds: float
    plan: CompiledPlan | None = None
    estimate: Estimate | None = None
    dropped: str = ""  # why it is out of the ranking ("" while in it)


@dataclasses.dataclass(frozen=True)
class SearchResult:
    spec: PlanSpec
    ranked: tuple[Candidate, ...]  # compiled, fitting, fastest first
    dropped: tuple[Candidate, ...]  # with the reason
    considered: int
    wall_seconds: float

    @property
    def best(self) -> Candidate | None:
        return self.ranked[0] if self.ranked else None


def divisors(n: int) -> list[int]:
    return [d for d in range(1, n + 1) if n % d == 0]


def meshes(spec: PlanSpec) -> list[tuple[int, int, int]]:
    """(data, fsdp, tensor) sizes to try (module docstring); the spec's own when it fixes one."""
    if spec.mesh is not None:
        return [spec.mesh.resolve(spec.devices)]
    heads = math.gcd(spec.model.num_heads, spec.model.kv_heads)
    out = []
    for tensor in divisors(spec.devices):
        if heads % tensor:
            continue
        shards = spec.devices // tensor
        if spec.global_batch % shards:
            continue
        out.extend((data, shards // data, tensor) for data in divisors(shards))
    return out


def chunks(spec: PlanSpec, shards: int) -> list[int]:
    """GradCache chunks to try for `shards` batch shards: 0 (the plain step) and, per power of two
    p, the chunk nearest p pairs per shard that is a multiple of the shards dividing the batch."""
    if spec.grad_cache_chunk is not None:
        return [spec.grad_cache_chunk]
    per_shard = spec.global_batch // shards
    options = [d for d in divisors(per_shard) if d < per_shard]
    powers = range(int(math.log2(per_shard)) + 1)
    picked = {min(options, key=lambda d: abs(math.log2(d) - k)) for k in powers} if options else set()
    return [0] + sorted(shards * d for d in picked)


def candidates(spec: PlanSpec) -> list[Layout]:
    remats = [spec.remat] if spec.remat else list(REMAT_POLICIES)
    return [Layout(d, f, t, c, r) for d, f, t in meshes(spec) for c in chunks(spec, d * f) for r in remats]


def nearest_batches(batch: int, shards: int) -> tuple[int, int]:
    """The multiples of `shards` just below (at least `shards`) and above `batch`."""
    below = max(shards, batch // shards * shards)
    return below, -(-batch // shards) * shards


def _either(batches: tuple[int, int]) -> str:
    below, above = batches
    return f"{below}" if below == above else f"{below} or {above}"


def _compile(spec: PlanSpec, layout: Layout, model_flops: float) -> Candidate:
    device = accelerator(spec.accelerator)
    plan = compile_step(train_config(spec, layout), spec.devices, device.kind, spec.pack_fill)
    est = estimate(plan.program, device, spec.devices, model_flops, spec.global_batch, spec.target_pairs)
    return Candidate(layout, 0.0, 0.0, plan, est)


def plan_one(spec: PlanSpec, layout: Layout | None = None) -> Candidate:
    """The spec's own layout (or `layout`) compiled and estimated, fitting or not."""
    layout = layout or given_layout(spec)
    check_batch(spec, layout)
    candidate = _compile(spec, layout, _model_flops(spec))
    return dataclasses.replace(candidate, dropped="" if fits(spec, candidate.plan) else "does not fit")


def _model_flops(spec: PlanSpec) -> float:
    fill = spec.pack_fill if spec.pack_sequences else None
    return model_step_flops(spec.model, spec.global_batch, spec.len_x, spec.len_y, fill)


def usable_bytes(spec: PlanSpec) -> float:
    return spec.memory_fraction * accelerator(spec.accelerator).hbm_bytes


def fits(spec: PlanSpec, plan: CompiledPlan) -> bool:
    return plan.peak_bytes <= usable_bytes(spec)


def check_batch(spec: PlanSpec, layout: Layout) -> None:
    """ValueError when the layout's batch shards (or its chunk) do not divide the batch, naming the
    nearest batches and the meshes of this many devices that do divide it."""
    shards = layout.batch_shards
    chunk_ok = not layout.chunk or (spec.global_batch % layout.chunk == 0 and layout.chunk % shards == 0)
    if spec.global_batch % shards == 0 and chunk_ok:
        return
    nearest = sorted(set(nearest_batches(spec.global_batch, shards)))
    ok = [f"{d}x{f}x{t}" for d, f, t in meshes(dataclasses.replace(spec, mesh=None))][:6]
    what = (f"global batch {spec.global_batch}" if spec.global_batch % shards else
            f"GradCache chunk {layout.chunk} (it must divide the batch and be a multiple of the shards)")
    raise ValueError(
        f"{what} does not split over the {shards} batch shards of mesh {layout.data}x{layout.fsdp}x{layout.tensor} "
        f"(data x fsdp x tensor); nearest batches that do: {' and '.join(map(str, nearest))}; meshes of {spec.devices} devices "
        f"that divide batch {spec.global_batch}: {', '.join(ok) or 'none'}."
    )


class NoFit(ValueError):
    """No tried layout fits the device's memory; the message names the closest and what would fit."""


def _compile_or_drop(spec: PlanSpec, candidate: Candidate, model_flops: float) -> Candidate:
    try:
        done = _compile(spec, candidate.layout, model_flops)
    except (ValueError, RuntimeError) as e:  # a layout the step or XLA refuses, e.g. uneven shardings
        return dataclasses.replace(candidate, dropped=f"does not compile: {str(e).splitlines()[0][:160]}")
    done = dataclasses.replace(done, analytic_bytes=candidate.analytic_bytes, analytic_seconds=candidate.analytic_seconds)
    if fits(spec, done.plan):
        return done
    return dataclasses.replace(done, dropped=f"needs {size_text(done.plan.peak_bytes)} > {size_text(usable_bytes(spec))} usable")


def search(spec: PlanSpec) -> SearchResult:
    """The spec's candidate layouts, the promising ones compiled, ranked by estimated step time
    (module docstring). ValueError when no mesh splits the batch; NoFit when nothing fits."""
    start = time.perf_counter()
    device = accelerator(spec.accelerator)
    layouts = candidates(spec)
    if not layouts:
        raise ValueError(
            f"no mesh of {spec.devices} devices splits global batch {spec.global_batch} with a tensor size that "
            f"divides the {spec.model.num_heads} heads; use batch "
            f"{_either(nearest_batches(spec.global_batch, spec.devices))}, or fix PlanSpec.mesh."
        )
    params, model_flops, budget = param_count(spec.model), _model_flops(spec), usable_bytes(spec)
    scored = [Candidate(l, analytic.memory_bytes(spec, l, params), analytic.seconds(spec, l, device, params, model_flops))
              for l in layouts]
    hopeful = sorted((c for c in scored if c.analytic_bytes <= _ANALYTIC_SLACK * budget), key=lambda c: c.analytic_seconds)
    dropped = [dataclasses.replace(c, dropped=f"analytic memory {c.analytic_bytes / 2**30:.0f} GiB") for c in scored
               if c.analytic_bytes > _ANALYTIC_SLACK * budget]
    ranked, scale = _compile_best(spec, hopeful, dropped, model_flops)
    ranked.sort(key=lambda c: c.estimate.step_s)
    result = SearchResult(spec, tuple(ranked), tuple(dropped), len(scored), time.perf_counter() - start)
    if not ranked:
        raise NoFit(no_fit_message(result, params, scale))
    return result


def _compile_best(
    spec: PlanSpec, hopeful: list[Candidate], dropped: list[Candidate], model_flops: float
) -> tuple[list[Candidate], dict[tuple[str, bool], float]]:
    """Compiles candidates in order until max_compiles fit (or twice that many were tried), and
    returns them with the calibration learnt: per (remat, GradCache or not), the largest ratio of
    compiled peak to analytic memory seen, by which later candidates' analytic memory is scaled
    (and dropped, uncompiled, once it is over the usable memory). Dropped ones join `dropped`."""
    budget = usable_bytes(spec)
    ranked: list[Candidate] = []
    scale: dict[tuple[str, bool], float] = {}
    compiles = 0
    for candidate in hopeful:
        if len(ranked) >= spec.max_compiles or compiles >= 2 * spec.max_compiles:
            break  # bounded: the rest stay uncompiled
        key = (candidate.layout.remat, bool(candidate.layout.chunk))
        guess = candidate.analytic_bytes * scale.get(key, 1.0)
        if guess > budget * (_CALIBRATED_SLACK if key in scale else _ANALYTIC_SLACK):
            dropped.append(dataclasses.replace(
                candidate, dropped=f"analytic memory {guess / 2**30:.0f} GiB (scaled by the compiled layouts)"))
            continue
        done = _compile_or_drop(spec, candidate, model_flops)
        compiles += 1
        if done.plan is not None:
            scale[key] = max(scale.get(key, 1.0), done.plan.peak_bytes / candidate.analytic_bytes)
        (dropped if done.dropped else ranked).append(done)
    return ranked, scale


def devices_needed(spec: PlanSpec, params: int, scale: dict[tuple[str, bool], float] | None = None) -> int | None:
    """The fewest devices (the spec's count times a power of two, up to 64x) on which some layout's
    analytic memory (scaled as the search calibrated it) fits, or None."""
    scale = scale or {}
    for factor in (2**k for k in range(1, 7)):
        bigger = dataclasses.replace(spec, devices=spec.devices * factor, mesh=None)
        if any(analytic.memory_bytes(bigger, l, params) * scale.get((l.remat, bool(l.chunk)), 1.0) <= usable_bytes(spec)
               for l in candidates(bigger)):
            return bigger.devices
    return None


def no_fit_message(result: SearchResult, params: int, scale: dict[tuple[str, bool], float] | None = None) -> str:
    spec = result.spec
    compiled = [c for c in result.dropped if c.plan is not None]
    closest = min(compiled, key=lambda c: c.plan.peak_bytes) if compiled else min(result.dropped, key=lambda c: c.analytic_bytes)
    need = closest.plan.peak_bytes if closest.plan else closest.analytic_bytes
    more = devices_needed(spec, params, scale)
    bigger = [a for a in ("v5p", "h200") if a != spec.accelerator]
    hint = f"{more} {spec.accelerator} devices" if more else "more devices"
    return (
        f"no tried layout of {spec.model.num_layers}-layer width-{spec.model.d_model} at batch {spec.global_batch} fits "
        f"{spec.devices} x {spec.accelerator} ({size_text(usable_bytes(spec))} usable each): the closest, "
        f"{closest.layout}, needs {size_text(need)} per device (state alone: 16 bytes per parameter = "
        f"{size_text(16 * params)} over all devices). Nearest that fits by the analytic estimate: {hint}; or a "
        f"device with more memory ({', '.join(bigger)}); or a smaller --batch / lengths; or fix --chunk smaller."
    )


def batch_note(spec: PlanSpec) -> str:
    """'' when the batch splits over every device; else how far it splits and the nearest batches that split fully."""
    if spec.global_batch % spec.devices == 0:
        return ""
    shards = max(d for d in divisors(spec.devices) if spec.global_batch % d == 0)
    return (f"batch {spec.global_batch} splits over at most {shards} of the {spec.devices} devices as batch shards "
            f"(the rest must be tensor parallel); batch {_either(nearest_batches(spec.global_batch, spec.devices))} "
            f"splits over all {spec.devices}.")
