"""The real train step on 8 fake devices: every layout trains like one device."""

from __future__ import annotations

import dataclasses
import functools
import re

import flax.linen as nn
import jax
import numpy as np
import pytest

from cpt_jax.batch import Negatives, PackedSide, PaddedSide, PairBatch
from cpt_jax.data.packing import BatchPacker
from cpt_jax.loss import contrastive_loss
from cpt_jax.model import embed
from cpt_jax.parallel.rules import DEFAULT_RULES
from cpt_jax.train.optimizer import OptimizerConfig, learning_rate, make_optimizer
from cpt_jax.train.state import TemperatureConfig, state_shardings
from cpt_jax.train.step import StepContext, _value_and_grad, loss_fn, make_train_step
from tests.helpers import (
    OPT,
    TEMPERATURE,
    TINY,
    TOTAL_STEPS,
    build_test_run,
    created_state,
    host,
    mesh,
    random_batch,
    random_side,
    rel_err,
    tx,
)

STEPS = 5
MODEL = dataclasses.replace(TINY, dropout=0.1)  # dropout masks must not depend on the layout
METRICS = {"loss", "accuracy_xy", "accuracy_yx", "temperature", "grad_norm", "learning_rate", "tokens", "nonfinite"}


def _lr(step):
    return learning_rate(OPT, TOTAL_STEPS, step)


@functools.lru_cache(maxsize=None)
def train(layout: tuple[int, int, int]):
    """STEPS steps of the run build_run assembles on `layout`, from the same initial values
    (created on 1 device; dropout does not change the parameters)."""
    initial, _ = created_state(TINY, (1, 1, 1))
    # Via the host: the step donates its state, and device_put(x, may_alias=False) onto a bigger
    # mesh still reuses x's device-0 buffer, which would delete the cached state.
    run = build_test_run(MODEL, layout, init_params=host(initial.params["encoder"]))
    state, metrics = run.state, []
    for i in range(STEPS):
        state, out = run.step(state, random_batch(i))
        metrics.append(host(out))
    spec = state.params["encoder"]["blocks"]["mlp"]["wi"]["kernel"].sharding.spec
    return metrics, host(state), spec


@pytest.mark.parametrize(
    "layout, kernel_spec",
    [
        ((8, 1, 1), (None, "fsdp", "tensor")),  # data parallel (size-1 axes still named)
        ((2, 4, 1), (None, "fsdp", "tensor")),  # data x fsdp
        ((2, 2, 2), (None, "fsdp", "tensor")),  # data x fsdp x tensor
    ],
    ids=["data8", "data2-fsdp4", "data2-fsdp2-tensor2"],
)
def test_layouts_train_like_one_device(layout, kernel_spec):
    ref_metrics, ref_state, _ = train((1, 1, 1))
    metrics, state, spec = train(layout)
    assert tuple(spec) == kernel_spec  # the state stayed on its shardings through the steps
    losses = np.array([m["loss"] for m in metrics])
    ref_losses = np.array([m["loss"] for m in ref_metrics])
    assert np.all(np.isfinite(losses)) and ref_losses[-1] < ref_losses[0]  # it is learning
    print(f"{layout}: max loss rel diff vs 1 device {np.max(np.abs(losses / ref_losses - 1)):.1e}")
    np.testing.assert_allclose(losses, ref_losses, rtol=1e-5)
    for key in ("accuracy_xy", "accuracy_yx", "tokens", "learning_rate"):
        np.testing.assert_array_equal([m[key] for m in metrics], [m[key] for m in ref_metrics])
    for key in ("grad_norm", "temperature"):
        np.testing.assert_allclose([m[key] for m in metrics], [m[key] for m in ref_metrics], rtol=1e-5)
    assert rel_err(state.params["log_temperature"], ref_state.params["log_temperature"]) < 1e-5
    assert int(state.step) == STEPS


def test_metrics_and_step_counter():
    metrics, state, _ = train((1, 1, 1))
    assert int(state.step) == STEPS
    for i, m in enumerate(metrics):
        assert set(m) == METRICS
        b = random_batch(i)
        assert m["tokens"] == b.x.mask.sum() + b.y.mask.sum()
        np.testing.assert_allclose(m["learning_rate"], float(_lr(i)), rtol=1e-6)
        assert 0 <= m["accuracy_xy"] <= 1 and 0 <= m["accuracy_yx"] <= 1
        assert np.isfinite(m["grad_norm"]) and m["grad_norm"] > 0
        # Each direction's cross-entropy over 16 columns with logits in [-s, s] is at most log 16 + 2s,
        # s the scale the step used (the previous step's updated temperature).
        scale = np.exp(TEMPERATURE.init) if i == 0 else metrics[i - 1]["temperature"]
        assert 0 < m["loss"] <= np.log(16) + 2 * scale
        assert m["nonfinite"] == 0
    np.testing.assert_allclose(metrics[-1]["temperature"], np.exp(state.params["log_temperature"]), rtol=1e-6)


@functools.lru_cache(maxsize=None)
def huge_learning_rate_run():
    """4 steps on one device, dropout 0, with a learning rate that moves tau by ~10 per step."""
    temperature = TemperatureConfig()
    opt = OptimizerConfig(learning_rate=10.0, warmup_steps=0)
    t = make_optimizer(opt, TOTAL_STEPS)
    m = mesh()
    shardings = state_shardings(TINY, temperature, t, m, DEFAULT_RULES)
    state = jax.device_put(host(created_state(TINY, (1, 1, 1))[0]), shardings)
    step = make_train_step(
        StepContext(TINY, temperature, t, m, DEFAULT_RULES, seed=0), shardings, lambda s: learning_rate(opt, TOTAL_STEPS, s)
    )
    metrics, log_ts, steps = [], [], []
    for i in range(4):
        b = random_batch(i)
        if i == 0:  # identical sides: a sharper softmax lowers the loss, so tau is pushed up
            b = dataclasses.replace(b, y=b.x)
        state, out = step(state, b)
        metrics.append(host(out))
        log_ts.append(float(state.params["log_temperature"]))
        steps.append(int(state.step))
    return temperature, metrics, log_ts, steps


def test_temperature_stays_within_bounds_under_a_huge_learning_rate():
    temperature, metrics, log_ts, steps = huge_learning_rate_run()
    assert steps == [1, 2, 3, 4]
    lo, hi = np.float32(temperature.minimum), np.float32(temperature.maximum)
    assert all(lo <= t <= hi for t in log_ts), log_ts
    for m, t in zip(metrics, log_ts):
        assert np.isfinite(m["loss"])
        np.testing.assert_allclose(m["temperature"], np.exp(t), rtol=1e-6)
    # Unprojected, tau would be ~2.66 +- 10 after one step: identical pairs push it onto the upper
    # bound, the unrelated pairs after them onto the lower one.
    assert log_ts[0] == hi and lo in log_ts[1:], log_ts


def test_dropout_rng_is_fold_in_of_seed_and_step():
    """The first step's loss is computed before any update: it equals loss_fn with the dropout key
    fold_in(key(seed), 0), and differs from the loss without dropout (so masks were applied)."""
    with_dropout, _, _ = train((1, 1, 1))
    m = mesh()
    ctx = StepContext(MODEL, TEMPERATURE, tx(), m, DEFAULT_RULES, seed=0)
    params = host(created_state(TINY, (1, 1, 1))[0].params)
    key = jax.random.fold_in(jax.random.key(0), 0)
    with jax.set_mesh(m), nn.logical_axis_rules(list(DEFAULT_RULES)):
        losses = jax.jit(lambda p, b: (loss_fn(p, b, key, ctx)[0], loss_fn(p, b, None, ctx)[0]))(params, random_batch(0))
    np.testing.assert_allclose(float(losses[0]), with_dropout[0]["loss"], rtol=1e-6)
    assert abs(float(losses[1]) - with_dropout[0]["loss"]) > 1e-4


@pytest.mark.parametrize("layout", [(1, 1, 1), (2, 2, 2)], ids=["1-device", "data2-fsdp2-tensor2"])
def test_a_nonfinite_step_is_skipped_and_counted(layout):
    """A NaN in one weight makes the loss NaN: the update is skipped, state kept, step advanced."""
    m = mesh(*layout)
    shardings = state_shardings(TINY, TEMPERATURE, tx(), m, DEFAULT_RULES)
    initial, _ = created_state(TINY, (1, 1, 1))
    poisoned = jax.tree.map(np.array, host(initial))  # writable copies
    poisoned.params["encoder"]["ln_final"]["scale"][0] = np.nan
    step = make_train_step(StepContext(TINY, TEMPERATURE, tx(), m, DEFAULT_RULES, seed=0), shardings, _lr)
    before = jax.tree.map(np.copy, poisoned)
    state, out = step(jax.device_put(poisoned, shardings), random_batch(0))
    out, state = host(out), host(state)
    assert out["nonfinite"] == 1 and not np.isfinite(out["loss"])
    assert int(state.step) == int(before.step) + 1
    for got, want in zip(jax.tree.leaves((state.params, state.opt_state)), jax.tree.leaves((before.params, before.opt_state))):
        np.testing.assert_array_equal(got, want)


def _entry_copies_of_arguments(hlo: str) -> list[str]:
    """Copy instructions of the entry computation whose operand is an argument, in compiled HLO text."""
    entry = hlo.split("\nENTRY", 1)[1]
    params = set(re.findall(r"%([\w.\-]+) = \S+ parameter\(", entry))
    return [line.strip() for line in entry.splitlines() if (m := re.search(r" copy\(%([\w.\-]+)\)", line)) and m.group(1) in params]


def test_the_donated_state_is_updated_in_place():
    """The skip of non-finite steps must not make XLA copy the state first. Written as
    where(finite, new, old), the old values stay alive past the update, and the compiled step
    copied every optimizer moment before the step (two copies of the parameters' size)."""
    m = mesh()
    shardings = state_shardings(TINY, TEMPERATURE, tx(), m, DEFAULT_RULES)
    state = jax.device_put(host(created_state(TINY, (1, 1, 1))[0]), shardings)
    step = make_train_step(StepContext(TINY, TEMPERATURE, tx(), m, DEFAULT_RULES, seed=0), shardings, _lr)
    copies = _entry_copies_of_arguments(step.lower(state, random_batch(0)).compile().as_text())
    # Scalars (the step counters) may be copied; no array of the state is.
    assert all(re.search(r"= [a-z0-9]+\[\] copy", c) for c in copies), copies

def _batch_with_negatives(seed: int, batch: int = 16, k: int = 2, seq: int = 12) -> PairBatch:
    b = random_batch(seed, batch, seq)
    rng = np.random.default_rng(seed + 50)
    tokens, mask = random_side(rng, batch * k, seq)
    side = PaddedSide(tokens.reshape(batch, k, seq), mask.reshape(batch, k, seq))
    return dataclasses.replace(b, negatives=Negatives(side, (rng.random((batch, k)) < 0.7).astype(np.int32)))


@functools.lru_cache(maxsize=None)
def negatives_value_and_grad(layout: tuple[int, int, int], chunks: int):
    m = mesh(*layout)
    ctx = StepContext(TINY, TEMPERATURE, tx(), m, DEFAULT_RULES, seed=0, grad_cache_chunks=chunks)
    params = host(created_state(TINY, (1, 1, 1))[0].params)
    with jax.set_mesh(m), nn.logical_axis_rules(list(DEFAULT_RULES)):
        return host(jax.jit(lambda p, b: _value_and_grad(p, b, None, ctx))(params, _batch_with_negatives(0)))


def test_hard_negatives_loss_is_the_contrastive_loss_of_the_embeddings():
    (loss, metrics), _ = negatives_value_and_grad((1, 1, 1), 1)

    @jax.jit
    def direct(p, b):
        x = embed(p["encoder"], TINY, b.x.tokens, b.x.mask)
        y = embed(p["encoder"], TINY, b.y.tokens, b.y.mask)
        negatives = b.negatives
        n = embed(p["encoder"], TINY, negatives.side.tokens.reshape(32, 12), negatives.side.mask.reshape(32, 12))
        n = n.reshape(16, 2, -1)
        return contrastive_loss(x, y, p["log_temperature"], n, negatives.valid), contrastive_loss(x, y, p["log_temperature"])[0]

    (want, want_metrics), without = direct(host(created_state(TINY, (1, 1, 1))[0].params), _batch_with_negatives(0))
    np.testing.assert_allclose(loss, float(want), rtol=1e-5)
    assert float(want) > float(without)  # the negatives count
    assert metrics["accuracy_xy"] == float(want_metrics["accuracy_xy"])


def test_hard_negatives_gradcache_on_8_devices_equals_the_plain_step_on_one():
    (ref_loss, _), ref_grads = negatives_value_and_grad((1, 1, 1), 1)
    (loss, _), grads = negatives_value_and_grad((2, 4, 1), 2)
    np.testing.assert_allclose(loss, ref_loss, rtol=1e-5)
    scale = np.sqrt(sum(np.sum(np.square(g)) for g in jax.tree.leaves(ref_grads)))
    for g, ref in zip(jax.tree.leaves(grads), jax.tree.leaves(ref_grads)):
        assert np.linalg.norm(g - ref) / scale < 1e-5


@functools.lru_cache(maxsize=None)
def packed_value_and_grad(layout: tuple[int, int, int], chunks: int, packed: bool):
    """Loss and gradients of one 32-pair batch, its x and y sides packed (one group per batch
    shard and GradCache chunk, as the train loop packs them) or not."""
    m = mesh(*layout)
    ctx = StepContext(TINY, TEMPERATURE, tx(), m, DEFAULT_RULES, seed=0, grad_cache_chunks=chunks)
    params = host(created_state(TINY, (1, 1, 1))[0].params)
    batch = random_batch(3, batch=32)
    if packed:
        batch = BatchPacker(groups=layout[0] * layout[1] * chunks)(batch)
    with jax.set_mesh(m), nn.logical_axis_rules(list(DEFAULT_RULES)):
        return host(jax.jit(lambda p, b: _value_and_grad(p, b, None, ctx))(params, batch)), batch


@pytest.mark.parametrize("layout, chunks", [((1, 1, 1), 1), ((1, 1, 1), 4), ((2, 4, 1), 1), ((4, 2, 1), 2)])
def test_packed_sides_give_the_loss_and_gradients_of_unpacked_ones(layout, chunks):
    ((ref_loss, ref_metrics), ref_grads), _ = packed_value_and_grad((1, 1, 1), 1, False)
    ((loss, metrics), grads), batch = packed_value_and_grad(layout, chunks, True)
    assert isinstance(batch.x, PackedSide) and isinstance(batch.y, PackedSide)
    rows = batch.x.segments.reshape(-1, batch.x.segments.shape[-1])
    assert any(len(set(r[r >= 0])) > 1 for r in rows)  # some row holds two sequences or more
    np.testing.assert_allclose(loss, ref_loss, rtol=1e-5)
    assert metrics["accuracy_xy"] == ref_metrics["accuracy_xy"]
    scale = np.sqrt(sum(np.sum(np.square(g)) for g in jax.tree.leaves(ref_grads)))
    for g, ref in zip(jax.tree.leaves(grads), jax.tree.leaves(ref_grads)):
        assert np.linalg.norm(g - ref) / scale < 1e-5


def test_a_packed_step_counts_real_tokens():
    state, _ = created_state(TINY, (1, 1, 1))
    step = make_train_step(StepContext(TINY, TEMPERATURE, tx(), mesh(), DEFAULT_RULES, seed=0), state_shardings(
        TINY, TEMPERATURE, tx(), mesh(), DEFAULT_RULES), _lr)
    batch = random_batch(4)
    _, metrics = step(jax.device_put(host(state)), BatchPacker(groups=1)(batch))
    assert int(metrics["tokens"]) == int(batch.x.mask.sum() + batch.y.mask.sum())


def test_packed_sides_with_unpacked_hard_negatives_under_gradcache_on_8_devices():
    """Hard negatives stay one to a row beside packed x and y; GradCache chunks both kinds alike."""
    m8 = mesh(2, 4, 1)
    batch = _batch_with_negatives(0, batch=32)
    grads = {}
    for name, m, chunks, b in (
        ("plain", mesh(), 1, batch),
        ("packed", m8, 2, BatchPacker(groups=16)(batch)),
    ):
        ctx = StepContext(TINY, TEMPERATURE, tx(), m, DEFAULT_RULES, seed=0, grad_cache_chunks=chunks)
        params = host(created_state(TINY, (1, 1, 1))[0].params)
        with jax.set_mesh(m), nn.logical_axis_rules(list(DEFAULT_RULES)):
            grads[name] = host(jax.jit(lambda p, b, ctx=ctx: _value_and_grad(p, b, None, ctx))(params, b))
    ((ref_loss, _), ref_grads), ((loss, _), got) = grads["plain"], grads["packed"]
    np.testing.assert_allclose(loss, ref_loss, rtol=1e-5)
    scale = np.sqrt(sum(np.sum(np.square(g)) for g in jax.tree.leaves(ref_grads)))
    for g, ref in zip(jax.tree.leaves(got), jax.tree.leaves(ref_grads)):
        assert np.linalg.norm(g - ref) / scale < 1e-5
