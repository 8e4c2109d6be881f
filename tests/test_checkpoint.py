"""Orbax checkpoints: interval policy, sharded round trip, metadata, clear errors."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from jax.sharding import NamedSharding
from jax.sharding import PartitionSpec as P

from cpt_jax import checkpoint
from cpt_jax.parallel.mesh import MeshConfig, make_mesh


def _tree(mesh):
    shard = NamedSharding(mesh, P("data"))
    params = {"w": jax.device_put(jnp.arange(16.0).reshape(8, 2), shard), "t": jnp.float32(2.5)}
    opt_state = {"mu": jax.device_put(jnp.ones((8, 2)), shard)}
    return params, opt_state


def test_saves_on_interval_and_when_forced(tmp_path):
    mesh = make_mesh(MeshConfig(data=-1))
    params, opt_state = _tree(mesh)
    ckpt = checkpoint.Checkpointer(str(tmp_path), save_every=5, keep=10, async_save=False)
    saved = [s for s in range(1, 13) if ckpt.save(s, params, opt_state, {"step": s}, force=s == 12)]
    ckpt.wait()
    assert saved == [5, 10, 12]
    assert ckpt.latest_step() == 12
    ckpt.close()


def test_round_trip_onto_a_sharded_target(tmp_path):
    mesh = make_mesh(MeshConfig(data=-1))
    params, opt_state = _tree(mesh)
    ckpt = checkpoint.Checkpointer(str(tmp_path), save_every=1)
    ckpt.save(3, params, opt_state, {"step": 3, "note": "x"})
    ckpt.wait()
    shardings = jax.tree.map(lambda a: a.sharding, params)
    got_params, got_opt, meta = ckpt.restore(
        3, checkpoint.abstract_like(params, shardings),
        checkpoint.abstract_like(opt_state, jax.tree.map(lambda a: a.sharding, opt_state)),
    )
    ckpt.close()
    np.testing.assert_array_equal(got_params["w"], params["w"])
    assert got_params["w"].sharding == params["w"].sharding
    np.testing.assert_array_equal(got_opt["mu"], opt_state["mu"])
    assert meta == {"step": 3, "note": "x"}
    assert checkpoint.read_meta(str(tmp_path)) == (3, meta)


def test_read_meta_without_checkpoints_says_what_to_pass(tmp_path):
    with pytest.raises(FileNotFoundError, match="output_dir of a training run"):
        checkpoint.read_meta(str(tmp_path))


def test_shape_mismatches_lists_every_differing_parameter():
    from cpt_jax.model import ModelConfig

    small = ModelConfig(vocab_size=64, d_model=32, num_layers=2, num_heads=4, d_mlp=64, max_len=16)
    assert checkpoint.shape_mismatches(small, small) == []
    wider = ModelConfig(**{**small.__dict__, "d_mlp": 128})
    assert checkpoint.shape_mismatches(small, wider) == [
        "['blocks']['mlp']['wi']['bias']: (2, 64) -> (2, 128)",
        "['blocks']['mlp']['wi']['kernel']: (2, 32, 64) -> (2, 32, 128)",
        "['blocks']['mlp']['wo']['kernel']: (2, 64, 32) -> (2, 128, 32)",
    ]
    unscanned = ModelConfig(**{**small.__dict__, "scan_layers": False})
    assert "['blocks']['mlp']['wi']['bias']: (2, 64) -> absent" in checkpoint.shape_mismatches(small, unscanned)
