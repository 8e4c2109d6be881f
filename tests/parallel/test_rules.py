"""DEFAULT_RULES on a (data, fsdp, tensor) = (2, 2, 2) mesh: specs, and a state created sharded."""

from __future__ import annotations

import jax
import numpy as np
import optax
import pytest
from jax.sharding import PartitionSpec as P

from cpt_jax.parallel.rules import DEFAULT_RULES, describe, rules_from_config
from tests.helpers import TINY, created_state

LAYOUT = (2, 2, 2)

# Global shape, spec and per-device shard shape (TINY: vocab 64, d 32, 2 layers, 4 heads x 8, mlp 64, max_len 16).
EXPECTED = {
    "['encoder']['token_embedding']['embedding']": ((64, 32), P("tensor", "fsdp"), (32, 16)),
    "['encoder']['position_embedding']": ((16, 32), P(None, "fsdp"), (16, 16)),
    "['encoder']['blocks']['mlp']['wi']['kernel']": ((2, 32, 64), P(None, "fsdp", "tensor"), (2, 16, 32)),
    "['encoder']['blocks']['mlp']['wi']['bias']": ((2, 64), P(None, "tensor"), (2, 32)),
    "['encoder']['blocks']['mlp']['wo']['kernel']": ((2, 64, 32), P(None, "tensor", "fsdp"), (2, 32, 16)),
    "['encoder']['blocks']['attention']['query_kernel']": ((2, 32, 4, 8), P(None, "fsdp", "tensor", None), (2, 16, 2, 8)),
    "['encoder']['blocks']['attention']['out_kernel']": ((2, 4, 8, 32), P(None, "tensor", None, "fsdp"), (2, 2, 8, 16)),
    "['encoder']['blocks']['ln_mlp']['scale']": ((2, 32), P(None, "fsdp"), (2, 16)),
    "['encoder']['ln_final']['scale']": ((32,), P("fsdp"), (16,)),
    "['log_temperature']": ((), P(), ()),
}


@pytest.fixture(scope="module")
def created():
    return created_state(TINY, LAYOUT)


def _flat(tree):
    return {jax.tree_util.keystr(p): v for p, v in jax.tree_util.tree_flatten_with_path(tree)[0]}


def test_state_shardings_follow_the_rules(created):
    _, shardings = created
    specs = describe(shardings.params)
    for name, (_, spec, _) in EXPECTED.items():
        assert specs[name] == str(spec), name
    # Every encoder matrix is split over fsdp somewhere; nothing sharded over data.
    for name, spec in specs.items():
        assert "data" not in spec, name
        if name.endswith("kernel']") or name.endswith("embedding']"):
            assert "fsdp" in spec, name


def test_params_are_created_sharded(created):
    state, _ = created
    params = _flat(state.params)
    for name, (shape, spec, shard_shape) in EXPECTED.items():
        leaf = params[name]
        assert leaf.shape == shape, name
        assert leaf.sharding.spec == spec, name
        assert len(leaf.addressable_shards) == 8
        assert {s.data.shape for s in leaf.addressable_shards} == {shard_shape}, name
    # The 8 shards of the MLP kernel hold 4 distinct blocks (fsdp x tensor), each twice (data).
    kernel = params["['encoder']['blocks']['mlp']['wi']['kernel']"]
    full = np.asarray(kernel)
    corners = set()
    for shard in kernel.addressable_shards:
        corners.add(tuple(sl.start or 0 for sl in shard.index))
        np.testing.assert_array_equal(np.asarray(shard.data), full[shard.index])
    assert corners == {(0, 0, 0), (0, 0, 32), (0, 16, 0), (0, 16, 32)}


def test_optimizer_moments_follow_their_params(created):
    state, shardings = created
    mu = optax.tree_utils.tree_get(state.opt_state, "mu")
    nu_shardings = optax.tree_utils.tree_get(shardings.opt_state, "nu")
    name = "['blocks']['mlp']['wi']['kernel']"
    assert _flat(mu["encoder"])[name].sharding.spec == P(None, "fsdp", "tensor")
    assert _flat(nu_shardings["encoder"])[name].spec == P(None, "fsdp", "tensor")
    assert {s.data.shape for s in _flat(mu["encoder"])[name].addressable_shards} == {(2, 16, 32)}
    assert state.step.sharding.spec == P()


def test_rules_from_config():
    assert rules_from_config(None) == DEFAULT_RULES
    assert rules_from_config([["embed", "fsdp"], ["act_batch", ["data", "fsdp"]]]) == (
        ("embed", "fsdp"),
        ("act_batch", ("data", "fsdp")),
    )
    with pytest.raises(ValueError, match=r"must be a \(logical_name, mesh_axes\) pair"):
        rules_from_config([["embed", "fsdp", "tensor"]])
