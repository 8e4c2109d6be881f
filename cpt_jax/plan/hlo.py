"""What a compiled step does per device, read from its HLO text (`compiled.as_text()`).

The text is the program of one SPMD partition, so every number here is per device. Each
instruction counts as many times as it runs: the computations form a call graph from ENTRY, and a
`while` body runs `known_trip_count` times (the backend_config XLA writes for the scans over layers
and over GradCache chunks), nested loops multiplying. A loop whose trip count XLA did not record
counts once and is reported (`Program.unknown_loops`). Both branches of a `conditional` count (the
step's update branch runs; the other is the identity of a skipped step and costs nothing).

Collectives (all-gather, reduce-scatter, all-reduce, all-to-all, collective-permute; the `-start`
forms of async collectives, never the `-done`) give their kind, payload (result) bytes, replica
groups and the bytes each device puts on the wire with ring algorithms, for a group of n devices:
all-gather out (n-1)/n, reduce-scatter out (n-1), all-reduce 2 size (n-1)/n, all-to-all
size (n-1)/n, collective-permute size (pairs that leave the device).

Ops: for every instruction that runs as a kernel (outside fused computations), its matmul FLOPs
(2 x output elements x contracted size of each `dot`, fused or not) and the memory it touches:
its operands and result, where an operand read only through slices (a scan reading one layer
of stacked weights) counts the slices, and an in-place dynamic-update-slice counts the update.
"""

from __future__ import annotations

import dataclasses
import math
import re
from collections.abc import Iterator

from cpt_jax.plan.collectives import KINDS, Collective, collective

DTYPE_BYTES = {"pred": 1, "s4": 0.5, "u4": 0.5, "s8": 1, "u8": 1, "s16": 2, "u16": 2, "f16": 2, "bf16": 2,
               "s32": 4, "u32": 4, "f32": 4, "s64": 8, "u64": 8, "f64": 8, "c64": 8, "c128": 16}
_ARRAY = re.compile(r"\b(pred|token|bf16|c64|c128|f8e\w+|[suf]\d+)\[([\d,]*)\]")
_HEADER = re.compile(r"^(ENTRY )?%([\w.\-]+) .*\{$")
_CALLS = re.compile(r"\b(condition|body|to_apply|calls|true_computation|false_computation)=%([\w.\-]+)")
_BRANCHES = re.compile(r"\bbranch_computations=\{([^}]*)\}")
_TRIP = re.compile(r'"known_trip_count":\{"n":"(\d+)"\}')
_NO_TRAFFIC = {"parameter", "constant", "get-tuple-element", "tuple", "bitcast", "while", "conditional", "call",
               "after-all", "partition-id", "replica-id", "opt-barrier", "add-dependency", "async-start",
               "async-done", "async-update"}
_SLICES = {"dynamic-slice", "slice", "gather"}
_PASS_THROUGH = {"convert", "bitcast", "copy", "reshape"}


@dataclasses.dataclass(frozen=True)
class Instruction:
    name: str
    type: str  # the result type text, e.g. "f32[96,768]{1,0}" or a tuple "(f32[2], s32[])"
    opcode: str
    operands: tuple[str, ...]
    attrs: str
    args: str = ""  # the text inside the opcode's parentheses (a parameter's number)

    @property
    def bytes(self) -> float:
        return type_bytes(self.type)


@dataclasses.dataclass(frozen=True)
class Op:
    """One kernel-level instruction: matmul FLOPs and bytes touched per run, and runs per step."""

    flops: float
    bytes: float
    runs: int


@dataclasses.dataclass(frozen=True)
class Program:
    collectives: tuple[Collective, ...]
    ops: tuple[Op, ...]
    unknown_loops: int
    num_partitions: int

    @property
    def flops(self) -> float:
        return sum(op.flops * op.runs for op in self.ops)

    @property
    def traffic(self) -> float:
        return sum(op.bytes * op.runs for op in self.ops)

    def by_kind(self) -> dict[str, tuple[int, float, float]]:
        """kind -> (runs per step, payload bytes per step, wire bytes per step), every kind present."""
        out = {k: (0, 0.0, 0.0) for k in KINDS}
        for c in self.collectives:
            runs, payload, wire = out[c.kind]
            out[c.kind] = (runs + c.runs, payload + c.payload * c.runs, wire + c.wire * c.runs)
        return out


def type_bytes(text: str) -> float:
    """Bytes of an HLO type: an array "f32[2,3]{1,0}" or a tuple of them (summed)."""
    return sum(DTYPE_BYTES.get(d, 0) * math.prod(int(x) for x in dims.split(",") if x)
               for d, dims in _ARRAY.findall(text))


def _balanced(text: str, start: int) -> int:
    """Index just past the parenthesis group opening at text[start]."""
    depth = 0
    for i in range(start, len(text)):
        depth += {"(": 1, ")": -1}.get(text[i], 0)
        if depth == 0:
            return i + 1
    raise ValueError(f"unbalanced parentheses in HLO line: {text[:200]}")


def parse_instruction(line: str) -> Instruction:
    """`  [ROOT ]%name = TYPE opcode(OPERANDS), attrs` -> Instruction."""
    name, _, rest = line.strip().removeprefix("ROOT ").partition(" = ")
    end = _balanced(rest, 0) if rest.startswith("(") else rest.index(" ")
    type_text, rest = rest[:end], rest[end:].lstrip()
    opcode = rest[: rest.index("(")]
    close = _balanced(rest, len(opcode))
    operands = tuple(re.findall(r"%([\w.\-]+)", rest[len(opcode): close]))
    return Instruction(name.lstrip("%"), type_text, opcode, operands, rest[close:], rest[len(opcode) + 1: close - 1])


def parse_computations(text: str) -> tuple[dict[str, list[Instruction]], str]:
    """The module's computations (name -> instructions) and the ENTRY computation's name."""
    computations: dict[str, list[Instruction]] = {}
    entry, current = "", None
    for line in text.splitlines():
        header = _HEADER.match(line)
        if header:
            current = computations.setdefault(header.group(2), [])
            entry = header.group(2) if header.group(1) else entry
        elif line == "}":
            current = None
        elif current is not None and line.startswith("  ") and " = " in line:
            current.append(parse_instruction(line))
    if not entry:
        raise ValueError("no ENTRY computation in the HLO text; pass compiled.as_text() of a compiled step.")
    return computations, entry


def _callees(ins: Instruction) -> Iterator[tuple[str, str]]:
    """(role, computation) pairs this instruction calls."""
    for role, name in _CALLS.findall(ins.attrs):
        yield role, name
    for group in _BRANCHES.findall(ins.attrs):
        for name in re.findall(r"%([\w.\-]+)", group):
            yield "branch", name


def runs_per_step(computations: dict[str, list[Instruction]], entry: str) -> tuple[dict[str, int], int, set[str]]:
    """(computation -> runs per step, loops without a known trip count, fused computations)."""
    edges: dict[str, list[tuple[str, int]]] = {name: [] for name in computations}
    fused: set[str] = set()
    unknown = 0
    for name, instructions in computations.items():
        for ins in instructions:
            trip = _TRIP.search(ins.attrs)
            if ins.opcode == "while" and not trip:
                unknown += 1
            for role, callee in _callees(ins):
                if role == "to_apply":
                    continue  # reducers run inside their instruction
                if ins.opcode == "fusion":
                    fused.add(callee)
                factor = 1
                if trip:  # the condition runs once more than the body
                    factor = {"body": int(trip.group(1)), "condition": int(trip.group(1)) + 1}.get(role, 1)
                edges[name].append((callee, factor))
    order: list[str] = []
    seen: set[str] = set()

    def visit(node: str) -> None:  # depth-first post-order, so callers come first once reversed
        seen.add(node)
        for callee, _ in edges.get(node, ()):
            if callee not in seen:
                visit(callee)
        order.append(node)

    visit(entry)
    runs = dict.fromkeys(computations, 0)
    runs[entry] = 1
    for node in reversed(order):
        for callee, factor in edges.get(node, ()):
            runs[callee] += runs[node] * factor
    return runs, unknown, fused


def _dims(type_text: str) -> list[int]:
    """Dimensions of the first array in a type text."""
    m = _ARRAY.search(type_text)
    return [int(x) for x in m.group(2).split(",") if x] if m else []


def dot_flops(ins: Instruction, symbols: dict[str, Instruction]) -> float:
    """2 x output elements x contracted size of a dot (0 if its left operand is unknown)."""
    lhs = symbols.get(ins.operands[0]) if ins.operands else None
    m = re.search(r"lhs_contracting_dims=\{([\d,]*)\}", ins.attrs)
    if lhs is None or not m:
        return 0.0
    dims = _dims(lhs.type)
    contracted = math.prod(dims[int(i)] for i in m.group(1).split(",") if i)
    return 2.0 * math.prod(_dims(ins.type)) * contracted


class _Module:
    """Parsed computations with their symbol tables, runs per step and fused set."""

    def __init__(self, text: str) -> None:
        self.computations, self.entry = parse_computations(text)
        self.symbols = {c: {i.name: i for i in ins} for c, ins in self.computations.items()}
        self.runs, self.unknown_loops, self.fused = runs_per_step(self.computations, self.entry)
        m = re.search(r"num_partitions=(\d+)", text)
        self.num_partitions = int(m.group(1)) if m else 1

    def fused_flops(self, name: str) -> float:
        total = 0.0
        for ins in self.computations.get(name, ()):
            if ins.opcode == "dot":
                total += dot_flops(ins, self.symbols[name])
            elif ins.opcode == "fusion":
                total += sum(self.fused_flops(c) for _, c in _callees(ins))
        return total

    def in_place_update(self, name: str, fusion: Instruction) -> tuple[Instruction, str] | None:
        """(the dynamic-update-slice, the parameter it updates) when a fusion updates a buffer the
        size of its result in place, its buffer read straight from a parameter or through the dtype
        converts XLA:CPU wraps around a narrow update; None otherwise."""
        symbols, dims = self.symbols[name], _dims(fusion.type)
        if fusion.type.startswith("("):
            return None
        for i in self.computations.get(name, []):
            if i.opcode != "dynamic-update-slice" or _dims(i.type) != dims:
                continue
            source = symbols.get(i.operands[0])
            while source is not None and source.opcode in _PASS_THROUGH and source.operands:
                source = symbols.get(source.operands[0])
            if source is not None and source.opcode == "parameter":
                return i, source.name
        return None

    def fusion_bytes(self, ins: Instruction) -> float:
        """Operands read and result written by a fusion; a buffer read only through slices counts
        the slices, and one updated in place counts the update (in the result's dtype)."""
        name = next(c for role, c in _callees(ins) if role == "calls")
        body = self.computations.get(name, [])
        users: dict[str, list[Instruction]] = {}
        for i in body:
            for operand in i.operands:
                users.setdefault(operand, []).append(i)
        update = self.in_place_update(name, ins)
        buffer = update[1] if update else None
        if update:
            written = math.prod(_dims(self.symbols[name][update[0].operands[1]].type))
            total = written * type_bytes(ins.type) / max(math.prod(_dims(ins.type)), 1)
        else:
            total = ins.bytes
        for p in (i for i in body if i.opcode == "parameter" and i.name != buffer):
            used = users.get(p.name, [])
            if used and all(u.opcode in _SLICES and u.operands[0] == p.name for u in used):
                total += sum(u.bytes for u in used)
            else:
                total += p.bytes
        return total

    def op(self, ins: Instruction, computation: str) -> Op | None:
        """The kernel-level cost of one instruction of a control computation (None: no kernel)."""
        if ins.opcode in _NO_TRAFFIC or ins.opcode.endswith("-done"):
            return None
        runs = self.runs[computation]
        symbols = self.symbols[computation]
        if ins.opcode == "fusion":
            flops = sum(self.fused_flops(c) for role, c in _callees(ins) if role == "calls")
            return Op(flops, self.fusion_bytes(ins), runs)
        if ins.opcode in ("dynamic-slice", "slice", "gather"):
            return Op(0.0, 2 * ins.bytes, runs)
        if ins.opcode == "dynamic-update-slice":
            return Op(0.0, 2 * symbols[ins.operands[1]].bytes, runs)
        flops = dot_flops(ins, symbols) if ins.opcode == "dot" else 0.0
        return Op(flops, ins.bytes + sum(symbols[o].bytes for o in ins.operands if o in symbols), runs)


def read_program(text: str) -> Program:
    """The per-device collectives and kernel-level ops of a compiled program's HLO text."""
    module = _Module(text)
    found, ops = [], []
    for name, instructions in module.computations.items():
        runs = module.runs[name]
        if not runs:
            continue
        for ins in instructions:
            kind = ins.opcode.removesuffix("-start")
            if kind in KINDS:
                payload = ins.bytes
                if ins.opcode.endswith("-start") and ins.type.startswith("("):
                    payload = max(type_bytes(t) for t in _tuple_parts(ins.type))  # the output part
                found.append(collective(kind, payload, ins.attrs, runs, module.num_partitions))
            if name not in module.fused:
                op = module.op(ins, name)
                if op is not None and (op.flops or op.bytes):
                    ops.append(op)
    return Program(tuple(found), tuple(ops), module.unknown_loops, module.num_partitions)


def _tuple_parts(type_text: str) -> list[str]:
    """The top-level element types of a tuple type text."""
    inner, parts, depth, start = type_text[1:-1], [], 0, 0
    for i, ch in enumerate(inner):
        depth += {"(": 1, ")": -1, "[": 1, "]": -1, "{": 1, "}": -1}.get(ch, 0)
        if ch == "," and depth == 0:
            parts.append(inner[start:i])
            start = i + 1
    parts.append(inner[start:])
    return parts
