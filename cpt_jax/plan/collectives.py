"""The collectives of a compiled program: replica groups in each form XLA prints, and wire bytes.

A collective's groups appear in one of these forms (all are read):
  replica_groups={{0,1},{2,3}}                  explicit lists ({} is one group of every device)
  replica_groups=[4,2]<=[2,2,2]T(1,0,2)         iota: arange(8) reshaped [2,2,2], transposed, as 4 groups of 2
  replica_groups=mesh['a'=2,'b'=4], device_ids=([2,2,2]T(1,0,2)) {'a'}
                                                a mesh of named axes over the (iota) device ids; a group
                                                is the devices that differ only along the named axes
  source_target_pairs={{0,1},{1,0}}             collective-permute
"""

from __future__ import annotations

import dataclasses
import math
import re

import numpy as np


_EXPLICIT = re.compile(r"replica_groups=\{((?:\{[\d,]*\},?)*)\}")
_IOTA = re.compile(r"replica_groups=\[([\d,]+)\]<=\[([\d,]+)\](?:T\(([\d,]+)\))?")
_MESH = re.compile(r"replica_groups=mesh\[([^\]]*)\](?:, device_ids=\(([^)]*\)?)\))? \{([^}]*)\}")
_PAIRS = re.compile(r"source_target_pairs=\{((?:\{\d+,\d+\},?)*)\}")
KINDS = ("all-gather", "reduce-scatter", "all-reduce", "all-to-all", "collective-permute")


@dataclasses.dataclass(frozen=True)
class Collective:
    """One collective instruction: kind, result bytes, group size, runs per step, wire bytes per
    run, and its groups of device ids (None when the text's form could not be read)."""

    kind: str
    payload: float
    group_size: int
    runs: int
    wire: float
    groups: np.ndarray | None
    source: str = ""  # the JAX operation it comes from (the HLO metadata's op_name)

    def crosses(self, node_size: int) -> bool:
        """Whether a group spans more than one node of `node_size` consecutive device ids (0: never);
        groups that could not be read count as crossing once they are larger than a node."""
        if not node_size:
            return False
        if self.groups is None:
            return self.group_size > node_size
        return bool(np.any(self.groups // node_size != (self.groups[:, :1] // node_size)))


def _ints(text: str) -> list[int]:
    return [int(x) for x in text.split(",") if x]


def _iota(dims: list[int], perm: list[int] | None) -> np.ndarray:
    ids = np.arange(math.prod(dims)).reshape(dims)
    return ids.transpose(perm) if perm else ids


def _device_ids(text: str | None, size: int) -> np.ndarray:
    """The flat device ids of a mesh form's device_ids=([dims]T(perm)) (None: 0..size-1)."""
    if not text:
        return np.arange(size)
    m = re.fullmatch(r"\[([\d,]+)\](?:T\(([\d,]+)\))?", text.strip())
    if not m:
        return np.array(_ints(text.strip("{}")))
    return _iota(_ints(m.group(1)), _ints(m.group(2)) if m.group(2) else None).reshape(-1)


def _mesh_groups(axes_text: str, ids_text: str | None, named_text: str) -> np.ndarray:
    """Groups of the mesh form: the named axes (a sub-axis 'a':(pre)size takes that part of a) vary."""
    axes = [(name, int(size)) for name, size in re.findall(r"'([^']+)'=(\d+)", axes_text)]
    dims, group_dims = [], []
    named = {name: (int(pre or 1), int(size) if size else None)
             for name, pre, size in re.findall(r"'([^']+)'(?::\((\d+)\)(\d+))?", named_text)}
    for name, size in axes:  # split each axis into (before, sub-axis, after) when a sub-axis is named
        pre, sub = named.get(name, (1, None))
        sub = size // pre if name in named and sub is None else sub
        if name not in named:
            dims.append(size)
            continue
        parts = [pre, sub, size // (pre * sub)]
        group_dims.append(len(dims) + 1)
        dims.extend(parts)
    ids = _device_ids(ids_text, math.prod(dims)).reshape(dims)
    rest = [d for d in range(len(dims)) if d not in group_dims]
    group = math.prod(dims[d] for d in group_dims)
    return ids.transpose(rest + group_dims).reshape(-1, group)


def replica_groups(attrs: str, num_devices: int) -> np.ndarray | None:
    """[groups, group size] device ids of a collective, or None when the form is not recognised."""
    m = _MESH.search(attrs)
    if m:
        return _mesh_groups(m.group(1), m.group(2), m.group(3))
    m = _IOTA.search(attrs)
    if m:
        shape = _ints(m.group(1))
        return _iota(_ints(m.group(2)), _ints(m.group(3)) if m.group(3) else None).reshape(shape)
    m = _EXPLICIT.search(attrs)
    if m:
        groups = [_ints(g) for g in re.findall(r"\{([\d,]*)\}", m.group(1))]
        if not groups:
            return np.arange(num_devices)[None, :]
        if len({len(g) for g in groups}) == 1:
            return np.array(groups)
    return None


def wire_bytes(kind: str, payload: float, n: int, moved_fraction: float = 1.0) -> float:
    """Bytes one device sends (= receives) per run with ring algorithms (hlo.py's docstring)."""
    if n <= 1:
        return 0.0
    return {
        "all-gather": payload * (n - 1) / n,
        "reduce-scatter": payload * (n - 1),
        "all-reduce": 2 * payload * (n - 1) / n,
        "all-to-all": payload * (n - 1) / n,
        "collective-permute": payload * moved_fraction,
    }[kind]


def collective(kind: str, payload: float, attrs: str, runs: int, num_devices: int) -> Collective:
    """A collective of `kind` (KINDS) whose result is `payload` bytes, from its attributes text."""
    name = re.search(r'op_name="([^"]*)"', attrs)
    source = name.group(1) if name else ""
    if kind == "collective-permute":
        m = _PAIRS.search(attrs)
        pairs = np.array(_ints(m.group(1).replace("{", "").replace("}", ""))).reshape(-1, 2) if m else None
        moved = 1.0 if pairs is None or not len(pairs) else float(np.mean(pairs[:, 0] != pairs[:, 1]))
        return Collective(kind, payload, 2, runs, wire_bytes(kind, payload, 2, moved), pairs, source)
    groups = replica_groups(attrs, num_devices)
    n = groups.shape[1] if groups is not None else num_devices
    return Collective(kind, payload, n, runs, wire_bytes(kind, payload, n), groups, source)
