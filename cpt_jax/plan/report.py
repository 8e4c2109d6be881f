"""The plan as text: the ranked layouts, and per device the memory, the collectives and the roofline."""

from __future__ import annotations

import collections

from cpt_jax.model import param_count
from cpt_jax.plan.collectives import KINDS
from cpt_jax.plan.hardware import accelerator, size_text
from cpt_jax.plan.search import Candidate, SearchResult, usable_bytes
from cpt_jax.plan.spec import PlanSpec

gb = size_text


def heading(spec: PlanSpec) -> str:
    device = accelerator(spec.accelerator)
    pack = f", packed at fill {spec.pack_fill}" if spec.pack_sequences else ""
    return (f"# plan: {spec.model.num_layers} layers, width {spec.model.d_model}, {param_count(spec.model) / 1e9:.3g}B "
            f"parameters, {spec.model.dtype}; batch {spec.global_batch}, lengths {spec.len_x}+{spec.len_y}{pack}; "
            f"{spec.devices} x {device.name} ({gb(device.hbm_bytes)}, {spec.memory_fraction:.0%} usable)")


def _days(spec: PlanSpec) -> str:
    return f"days/{spec.target_pairs:.3g} pairs" if spec.target_pairs else "days/1B pairs"


def ranking(result: SearchResult) -> str:
    """One row per compiled layout that fits, fastest first."""
    rows = [f"{'rank':>4} {'layout (data x fsdp x tensor)':<36} {'peak/dev':>10} {'coll. wire/dev':>14} "
            f"{'step s':>8} {'bound':>11} {'MFU':>6} {'pairs/s':>9} {_days(result.spec):>14}"]
    for i, c in enumerate(result.ranked, 1):
        e = c.estimate
        wire = sum(w for _, _, w in c.plan.program.by_kind().values())
        rows.append(f"{i:>4} {str(c.layout):<36} {gb(c.plan.peak_bytes):>10} {gb(wire):>14} {e.step_s:8.3g} "
                    f"{e.bound:>11} {e.mfu:6.1%} {e.pairs_per_s:9.4g} {e.days:14.3g}")
    return "\n".join(rows)


def _reason(why: str) -> str:
    if why.startswith("needs"):
        return "over memory when compiled"
    if why.startswith("analytic"):
        return "over memory by the analytic estimate (not compiled)"
    return "did not compile"


def dropped(result: SearchResult, limit: int = 5) -> str:
    """How many candidates were dropped and why, with the closest few that were compiled."""
    reasons = collections.Counter(_reason(c.dropped) for c in result.dropped)
    lines = [f"{result.considered} layouts considered, {len(result.ranked)} compiled and fit, "
             f"{sum(c.plan is not None for c in result.dropped)} compiled and dropped; search took "
             f"{result.wall_seconds:.0f} s"]
    if reasons:
        lines.append("dropped: " + ", ".join(f"{n} {why}" for why, n in reasons.most_common()))
    for c in [c for c in result.dropped if c.plan is not None][:limit]:
        lines.append(f"  {c.layout}: {c.dropped}")
    return "\n".join(lines)


def _unknown(loops: int) -> str:
    return f", {loops} loops of unknown count counted once" if loops else ""


def _short(op_name: str) -> str:
    """The JAX operation path of a collective without its jit(...) prefix (its last 90 characters)."""
    path = op_name.split("/", 1)[-1] if op_name.startswith("jit(") else op_name
    return ("..." + path[-87:]) if len(path) > 90 else (path or "?")


def details(spec: PlanSpec, c: Candidate) -> str:
    """Per device: memory, collectives by kind, FLOPs and the roofline of one compiled layout."""
    p, e, device = c.plan, c.estimate, accelerator(spec.accelerator)
    s = p.state
    fit = "fits" if p.peak_bytes <= usable_bytes(spec) else "does NOT fit"
    lines = [
        f"layout {c.layout}",
        f"  per device: parameters {gb(s.params)}, optimizer state {gb(s.opt_state)}, gradients {gb(s.grads)} "
        f"(from the state's shardings); arguments {gb(p.argument_bytes)} (state + batch), peak temporaries "
        f"{gb(p.temp_bytes)} (XLA:CPU memory analysis, gradients included); peak {gb(p.peak_bytes)} of "
        f"{gb(usable_bytes(spec))} usable: {fit}",
        f"  collectives per step per device (loops counted by trip count{_unknown(p.program.unknown_loops)}):",
        f"    {'kind':<19} {'runs':>9} {'payload':>12} {'wire':>12} {'seconds':>9}",
    ]
    by_kind = p.program.by_kind()
    for kind in KINDS:
        runs, payload, wire = by_kind[kind]
        secs = sum(x.runs * x.wire / device.link_for(x.crosses(device.node_size))
                   for x in p.program.collectives if x.kind == kind)
        lines.append(f"    {kind:<19} {runs:>9} {gb(payload):>12} {gb(wire):>12} {secs:9.3g}")
    for x in sorted(p.program.collectives, key=lambda x: -x.runs * x.wire)[:3]:
        lines.append(f"    largest: {x.kind} of {gb(x.payload)} in groups of {x.group_size}, {x.runs} runs, "
                     f"{gb(x.runs * x.wire)} on the wire, from {_short(x.source)}")
    lines += [
        f"  FLOPs per device: model {e.mfu * e.step_s * device.peak_flops:.3g} (model/flops.py), compiled "
        f"{p.program.flops:.3g} (remat and GradCache recomputation included); memory traffic {gb(p.program.traffic)}",
        f"  roofline on {device.name}: ops {e.ops_s:.3g} s (compute floor {e.flops_s:.3g} s, memory floor {e.hbm_s:.3g} s), "
        f"collectives {e.comm_s:.3g} s -> step {e.step_s:.3g} s overlapped ({e.serial_s:.3g} s serial), bound by "
        f"{e.bound}; MFU {e.mfu:.1%}; {e.pairs_per_s:.4g} pairs/s; {e.days:.3g} {_days(spec)}",
        f"  compiled here in {p.lower_seconds:.1f} s (lower) + {p.compile_seconds:.1f} s (compile)",
    ]
    return "\n".join(lines)
