"""LoRA runs: the optimizer state holds the adapters alone, the base is frozen and sharded as a
trained encoder would be, GradCache + packing on 8 devices equal the plain step on one, and
checkpoints hold the adapters, name their base, reshard, and refuse another base or LoRA setting."""

from __future__ import annotations

import dataclasses
import json
import math
import os

import flax.linen as nn
import jax
import numpy as np
import pytest

from cpt_jax.checkpoint import Checkpointer, read_meta
from cpt_jax.data.config import DataConfig
from cpt_jax.data.packing import BatchPacker
from cpt_jax.model import LoraConfig
from cpt_jax.parallel.mesh import MeshConfig
from cpt_jax.parallel.rules import DEFAULT_RULES
from cpt_jax.train import restore
from cpt_jax.train.config import TrainConfig
from cpt_jax.train.run import build_run
from cpt_jax.train.step import StepContext, _value_and_grad
from cpt_jax.train.state import state_shardings
from tests.helpers import OPT, TEMPERATURE, TINY, TOTAL_STEPS, host, mesh, random_batch, tx

LORA = LoraConfig(rank=4, alpha=8.0)


def _config(layout=(1, 1, 1), lora=LORA, output_dir="", seed=0, **overrides) -> TrainConfig:
    return TrainConfig(
        output_dir=output_dir, model=TINY, data=DataConfig(max_len_x=12, max_len_y=12, stream_readers=1),
        mesh=MeshConfig(*layout), optimizer=OPT, num_steps=TOTAL_STEPS, global_batch_size=16, lora=lora, seed=seed,
        **overrides,
    )


def _run(layout=(1, 1, 1), **kw):
    return build_run(_config(layout, **kw), devices=jax.devices()[: math.prod(layout)])


def test_the_optimizer_state_holds_the_adapters_alone_and_the_base_is_frozen():
    full = _run(lora=LoraConfig())
    lora = _run()
    assert set(lora.state.params) == {"lora", "log_temperature"} and set(lora.state.frozen) == {"encoder"}
    assert full.state.frozen is None
    size = lambda tree: sum(int(np.prod(x.shape)) for x in jax.tree.leaves(tree))  # noqa: E731
    encoder, adapters = size(lora.state.frozen), size(lora.state.params["lora"])
    assert size(full.state.params["encoder"]) == encoder
    # AdamW: two moments per trained value (plus counters), nothing for the base.
    assert 2 * adapters <= size(lora.state.opt_state) <= 2 * adapters + 8
    assert size(full.state.opt_state) >= 2 * encoder


def test_adapters_and_base_are_sharded_by_the_same_rules():
    layout = (1, 2, 4)  # fsdp x tensor
    shardings = state_shardings(TINY, TEMPERATURE, tx(), mesh(*layout), DEFAULT_RULES, LORA)
    full = state_shardings(TINY, TEMPERATURE, tx(), mesh(*layout), DEFAULT_RULES)
    specs = lambda tree: jax.tree.map(lambda s: s.spec, tree)  # noqa: E731
    assert specs(shardings.frozen["encoder"]) == specs(full.params["encoder"])
    query = shardings.params["lora"]["blocks"]["attention"]["query_kernel"]
    assert tuple(query["lora_a"].spec) == (None, "fsdp", None)  # [layers, embed, rank]
    assert tuple(query["lora_b"].spec) == (None, None, "tensor", None)  # [layers, rank, heads, kv]
    # The moments follow their adapters.
    moments = [s for s in jax.tree.leaves(shardings.opt_state, is_leaf=lambda x: isinstance(x, dict) and "lora" in x)
               if isinstance(s, dict)]
    assert len(moments) == 2 and all(specs(m["lora"]) == specs(shardings.params["lora"]) for m in moments)


def test_a_step_moves_the_adapters_and_leaves_the_base_bit_for_bit():
    run = _run((2, 4, 1))
    base = host(run.state.frozen)
    state = run.state
    for i in range(3):
        state, metrics = run.step(state, run.to_global(random_batch(i)))
        assert np.isfinite(float(metrics["loss"]))
    for a, b in zip(jax.tree.leaves(host(state.frozen)), jax.tree.leaves(base)):
        np.testing.assert_array_equal(a, b)
    assert any(np.any(np.asarray(b)) for b in jax.tree.leaves(host(state.params["lora"])))


def _perturbed(run):
    """The run's state with B != 0 (at init no gradient reaches A)."""
    params = host(run.state.params)
    rng = np.random.default_rng(0)
    params["lora"] = jax.tree.map(lambda x: (x + 0.1 * rng.normal(size=x.shape)).astype(np.float32), params["lora"])
    return params, host(run.state.frozen)


@pytest.mark.parametrize("layout, chunks, packed", [((2, 4, 1), 2, True), ((1, 2, 4), 4, False), ((4, 2, 1), 1, True)])
def test_gradcache_and_packing_on_8_devices_equal_the_plain_step_on_one(layout, chunks, packed):
    run = _run()
    params, frozen = _perturbed(run)
    batch = random_batch(5, batch=32)
    sharded = BatchPacker(groups=layout[0] * layout[1] * chunks)(batch) if packed else batch
    results = {}
    for name, lay, k, b in (("plain", (1, 1, 1), 1, batch), ("sharded", layout, chunks, sharded)):
        m = mesh(*lay)
        ctx = StepContext(TINY, TEMPERATURE, tx(), m, DEFAULT_RULES, seed=0, grad_cache_chunks=k, lora=LORA)
        with jax.set_mesh(m), nn.logical_axis_rules(list(DEFAULT_RULES)):
            value_and_grad = jax.jit(lambda p, f, b, ctx=ctx: _value_and_grad(p, b, None, ctx, f))
            results[name] = host(value_and_grad(params, frozen, b))
    ((ref_loss, _), ref_grads), ((loss, _), grads) = results["plain"], results["sharded"]
    assert set(ref_grads) == {"lora", "log_temperature"}  # nothing for the base
    np.testing.assert_allclose(loss, ref_loss, rtol=1e-5)
    scale = np.sqrt(sum(np.sum(np.square(g)) for g in jax.tree.leaves(ref_grads)))
    for g, ref in zip(jax.tree.leaves(grads), jax.tree.leaves(ref_grads)):
        assert np.linalg.norm(g - ref) / scale < 1e-5


def _train_and_save(tmp_path, layout=(2, 4, 1), steps=2, **kw):
    ckpt = Checkpointer(str(tmp_path), save_every=1, async_save=False)
    try:
        run = build_run(_config(layout, output_dir=str(tmp_path), **kw), devices=jax.devices()[: math.prod(layout)],
                        checkpointer=ckpt)
        state = run.state
        for i in range(steps):
            state, _ = run.step(state, run.to_global(random_batch(i)))
            ckpt.save(i + 1, state.params, state.opt_state, {"step": i + 1, **run.meta})
        ckpt.wait()
        return host(state.params)
    finally:
        ckpt.close()


def _resume(tmp_path, layout=(1, 2, 4), **kw):
    ckpt = Checkpointer(str(tmp_path), save_every=1, async_save=False)
    try:
        return build_run(_config(layout, output_dir=str(tmp_path), **kw), devices=jax.devices()[: math.prod(layout)],
                         checkpointer=ckpt)
    finally:
        ckpt.close()


def test_checkpoints_hold_the_adapters_name_the_base_and_reshard(tmp_path):
    saved = _train_and_save(tmp_path)
    step, meta = read_meta(str(tmp_path))
    assert step == 2 and meta["lora"] == {"rank": 4, "alpha": 8.0, "targets": LORA.targets, "dropout": 0.0,
                                          "base": {"seed": 0}}
    with open(os.path.join(tmp_path, "checkpoints", "2", "params", "_METADATA")) as f:
        saved_leaves = json.load(f)["tree_metadata"]
    assert {eval(k)[0] for k in saved_leaves} == {"lora", "log_temperature"}  # no base inside
    run = _resume(tmp_path)  # another mesh: fsdp x tensor
    assert int(run.state.step) == 2
    for a, b in zip(jax.tree.leaves(host(run.state.params)), jax.tree.leaves(saved)):
        np.testing.assert_array_equal(a, b)
    fresh = host(_run().state.frozen)  # the base is the seed's encoder again
    for a, b in zip(jax.tree.leaves(host(run.state.frozen)), jax.tree.leaves(fresh)):
        np.testing.assert_array_equal(a, b)
    # Dropout is how the adapters train, not what they mean: it may change on resume.
    assert int(_resume(tmp_path, lora=dataclasses.replace(LORA, dropout=0.1)).state.step) == 2


@pytest.mark.parametrize("change, says", [
    (dict(lora=dataclasses.replace(LORA, rank=8)), "LoRA rank 4.*this run is LoRA rank 8"),
    (dict(lora=dataclasses.replace(LORA, alpha=16.0)), "alpha 8.0.*alpha 16.0"),
    (dict(lora=dataclasses.replace(LORA, targets="attention/query_kernel$")), "targets"),
    (dict(lora=LoraConfig()), "this run is every weight trained"),
    (dict(seed=1), "random base of seed 0.*random base of seed 1"),
])
def test_resuming_onto_another_base_or_lora_setting_is_refused_and_nothing_moves(tmp_path, change, says):
    _train_and_save(tmp_path, layout=(1, 1, 1), steps=1)
    before = sorted(os.listdir(tmp_path / "checkpoints"))
    with pytest.raises(restore.ResumeMismatchError, match=f"(?s){says}.*nothing was moved"):
        _resume(tmp_path, layout=(1, 1, 1), **change)
    assert sorted(os.listdir(tmp_path / "checkpoints")) == before


def test_a_lora_run_from_init_from_without_its_base_is_refused(tmp_path):
    ckpt = Checkpointer(str(tmp_path), save_every=1, async_save=False)
    try:
        with pytest.raises(ValueError, match="no base weights were given.*init_params"):
            restore.restore_or_init(_config(output_dir=str(tmp_path), init_from="/some/model"), ckpt, tx(),
                                    mesh(), DEFAULT_RULES)
    finally:
        ckpt.close()
