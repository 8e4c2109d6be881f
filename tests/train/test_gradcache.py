"""GradCache: chunked gradients equal the un-chunked step, across chunkings and device counts."""

from __future__ import annotations

import math

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np

import pytest

from cpt_jax.batch import PaddedSide, PairBatch
from cpt_jax.model import ModelConfig
from cpt_jax.parallel.mesh import MeshConfig, make_mesh
from cpt_jax.parallel.rules import DEFAULT_RULES
from cpt_jax.train.gradcache import from_chunks, to_chunks
from cpt_jax.train.optimizer import OptimizerConfig, make_optimizer
from cpt_jax.train.state import TemperatureConfig, create_train_state
from cpt_jax.train.step import _value_and_grad
from tests.helpers import build_test_run

CFG = ModelConfig(vocab_size=64, d_model=32, num_layers=2, num_heads=4, d_mlp=64, max_len=16)


def _batch(n=32, seq=12, seed=0):
    r = np.random.default_rng(seed)
    t = r.integers(6, 64, (n, seq)).astype(np.int32)
    m = np.ones_like(t)
    for i, length in enumerate(r.integers(3, seq + 1, n)):
        t[i, length:], m[i, length:] = 0, 0
    y = np.roll(t, 1, axis=1) * m
    y[:, 0] = 7
    return PairBatch(PaddedSide(t, m), PaddedSide(y.astype(np.int32), m))


def _grads(mesh_config, devices, chunks, dropout_rng=None, model=CFG):
    layout = (mesh_config.data, mesh_config.fsdp, mesh_config.tensor)
    assert math.prod(layout) == len(devices)
    run = build_test_run(model, layout, batch=32, chunk=32 // chunks if chunks > 1 else 0, opt=OptimizerConfig())
    with jax.set_mesh(run.mesh), nn.logical_axis_rules(list(run.rules)):
        (loss, _), g = jax.jit(lambda p, b: _value_and_grad(p, b, dropout_rng, run.context))(run.state.params, _batch())
    return float(loss), jax.device_get(g)


def _assert_close(got, want, rtol=1e-5):
    # Relative to the whole gradient's scale: some leaves (e.g. the key bias, whose gradient is
    # zero in exact arithmetic) are pure rounding noise, so a per-leaf ratio is meaningless.
    scale = np.sqrt(sum(np.sum(np.square(w)) for w in jax.tree.leaves(want)))
    for (path, g), w in zip(jax.tree_util.tree_flatten_with_path(got)[0], jax.tree.leaves(want)):
        err = np.linalg.norm(np.asarray(g) - np.asarray(w)) / scale
        assert err <= rtol, f"{jax.tree_util.keystr(path)}: relative error {err:.2e}"


def test_chunk_layout_round_trips_and_keeps_rows_on_their_shard():
    x = np.arange(32)
    chunks = to_chunks(jnp.asarray(x), num_shards=4, num_chunks=2)
    assert chunks.shape == (2, 16)
    # Chunk 0 holds the first 4 rows of each of the 4 shards of 8 rows.
    np.testing.assert_array_equal(chunks[0], [0, 1, 2, 3, 8, 9, 10, 11, 16, 17, 18, 19, 24, 25, 26, 27])
    np.testing.assert_array_equal(from_chunks(chunks, num_shards=4), x)


@pytest.fixture(scope="module")
def reference():
    return _grads(MeshConfig(data=1), jax.devices()[:1], chunks=1)


@pytest.mark.parametrize(
    "mesh_config,n_devices,chunks",
    [
        (MeshConfig(data=1), 1, 8),
        (MeshConfig(data=2), 2, 4),
        (MeshConfig(data=2, fsdp=4), 8, 2),
    ],
)
def test_gradcache_equals_unchunked(reference, mesh_config, n_devices, chunks):
    loss, grads = _grads(mesh_config, jax.devices()[:n_devices], chunks)
    np.testing.assert_allclose(loss, reference[0], rtol=1e-5)
    _assert_close(grads, reference[1])


def test_gradcache_with_dropout_matches_direct_autodiff_with_the_same_keys():
    """With dropout, the recomputation must reuse each chunk's key: compare against autodiff
    straight through the chunked forward (which keeps all activations)."""
    from cpt_jax.loss import sharded_contrastive_loss
    from cpt_jax.train.gradcache import _chunk_keys
    from cpt_jax.model import embed
    from cpt_jax.parallel.mesh import BATCH_AXES

    model = ModelConfig(**{**CFG.__dict__, "dropout": 0.3})
    rng = jax.random.key(3)
    mesh = make_mesh(MeshConfig(data=2), jax.devices()[:2])
    _, cached = _grads(MeshConfig(data=2), jax.devices()[:2], chunks=4, dropout_rng=rng, model=model)

    tx = make_optimizer(OptimizerConfig(), 10)
    state, _ = create_train_state(model, TemperatureConfig(), tx, mesh, DEFAULT_RULES, 0)

    def direct(params, batch):
        chunks = jax.tree.map(lambda v: to_chunks(v, 2, 4), batch)
        xs, ys = [], []
        for k in range(4):
            kx, ky = _chunk_keys(rng, jnp.asarray(k))
            xs.append(embed(params["encoder"], model, chunks.x.tokens[k], chunks.x.mask[k], kx))
            ys.append(embed(params["encoder"], model, chunks.y.tokens[k], chunks.y.mask[k], ky))
        x, y = from_chunks(jnp.stack(xs), 2), from_chunks(jnp.stack(ys), 2)
        return sharded_contrastive_loss(x, y, params["log_temperature"], mesh, BATCH_AXES)[0]

    with jax.set_mesh(mesh), nn.logical_axis_rules(list(DEFAULT_RULES)):
        want = jax.device_get(jax.jit(jax.grad(direct))(state.params, _batch()))
    _assert_close(cached, want)
