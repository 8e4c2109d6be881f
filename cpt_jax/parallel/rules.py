"""Logical axis names -> mesh axes: the one sharding table.

Parameters and activations are annotated with logical names in the model; this table
decides where each name lives on the mesh, so switching between data parallel, FSDP and
tensor parallel is a config change (levanter / MaxText style).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import flax.linen as nn
import jax
from jax.sharding import Mesh, NamedSharding
from jax.sharding import PartitionSpec as P

Rules = tuple[tuple[str, Any], ...]

DEFAULT_RULES: Rules = (
    # parameters
    ("vocab", "tensor"),
    ("embed", "fsdp"),
    ("heads", "tensor"),
    ("kv_heads", "tensor"),  # key/value heads (fewer than "heads" under grouped-query attention)
    ("kv", None),
    ("mlp", "tensor"),
    ("layers", None),
    ("pos", None),
    ("lora_rank", None),  # LoRA adapters' rank (model/lora.py): small, kept whole
    # activations
    ("act_batch", ("data", "fsdp")),
    ("act_length", None),
    ("act_embed", None),
    ("act_heads", "tensor"),
    ("act_kv_heads", "tensor"),
    ("act_kv", None),
    ("act_mlp", "tensor"),
)


def rules_from_config(rules: Sequence[Sequence[Any]] | None) -> Rules:
    """Normalise a gin-provided rule list (lists become tuples) or return the defaults."""
    if rules is None:
        return DEFAULT_RULES
    out = []
    for rule in rules:
        if len(rule) != 2:
            raise ValueError(f"sharding rule {rule!r} must be a (logical_name, mesh_axes) pair.")
        name, axes = rule
        out.append((name, tuple(axes) if isinstance(axes, list) else axes))
    return tuple(out)


def logical_shardings(boxed_tree: Any, mesh: Mesh, rules: Rules) -> Any:
    """NamedShardings for a tree of nn.Partitioned leaves (e.g. an abstract init)."""
    specs = nn.get_partition_spec(boxed_tree)
    return nn.logical_to_mesh_sharding(specs, mesh, list(rules))


def replicated(mesh: Mesh) -> NamedSharding:
    return NamedSharding(mesh, P())


def batch_sharding(mesh: Mesh, batch_axes: Sequence[str]) -> NamedSharding:
    """Leading (batch) dimension split over batch_axes, the rest replicated."""
    return NamedSharding(mesh, P(tuple(batch_axes)))


def describe(shardings: Any) -> dict[str, str]:
    """Flat {param path: partition spec} for logs and tests."""
    flat = jax.tree_util.tree_flatten_with_path(shardings)[0]
    return {jax.tree_util.keystr(path): str(s.spec) for path, s in flat}
