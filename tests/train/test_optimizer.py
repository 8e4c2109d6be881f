"""The learning-rate schedule, the weight-decay mask and gradient clipping of make_optimizer."""

from __future__ import annotations

import dataclasses
import math

import jax
import numpy as np
import optax
import pytest

from cpt_jax.model import init_params
from cpt_jax.train.optimizer import OptimizerConfig, learning_rate, make_optimizer
from tests.helpers import TINY

PEAK, WARM, TOTAL, END = 1e-3, 10, 50, 0.1


def expected_lr(decay: str, step: int, warm: int = WARM) -> float:
    end = PEAK * END
    if step < warm:
        return PEAK * (step + 1) / warm  # linear from PEAK/warm at step 0 to PEAK
    progress = min(max((step - warm) / (TOTAL - warm), 0.0), 1.0)
    if decay == "cosine":
        return end + (PEAK - end) * 0.5 * (1 + math.cos(math.pi * progress))
    if decay == "linear":
        return PEAK + (end - PEAK) * progress
    return PEAK


@pytest.mark.parametrize("decay", ["cosine", "linear", "constant"])
@pytest.mark.parametrize("warm", [WARM, 0])
def test_learning_rate_schedule(decay, warm):
    cfg = OptimizerConfig(learning_rate=PEAK, warmup_steps=warm, decay=decay, end_learning_rate_fraction=END)
    steps = np.arange(TOTAL + 10)
    got = np.asarray(learning_rate(cfg, TOTAL, steps))
    want = np.array([expected_lr(decay, int(s), warm) for s in steps])
    np.testing.assert_allclose(got, want, rtol=1e-6)
    np.testing.assert_allclose(got[0], PEAK / max(warm, 1), rtol=1e-6)
    np.testing.assert_allclose(got[max(warm - 1, 0)], PEAK, rtol=1e-6)  # warmup reaches the peak
    np.testing.assert_allclose(got[TOTAL:], PEAK if decay == "constant" else PEAK * END, rtol=1e-6)
    if warm:
        assert np.all(np.diff(got[:warm]) > 0)
    if decay != "constant":
        assert np.all(np.diff(got[warm:TOTAL + 1]) < 0)
    # A scalar step gives the same value as the vectorised call.
    np.testing.assert_allclose(float(learning_rate(cfg, TOTAL, 17)), want[17], rtol=1e-6)


def _first_update(cfg, params, grads):
    tx = make_optimizer(cfg, TOTAL)
    updates, state = jax.jit(tx.update)(grads, tx.init(params), params)
    return jax.device_get(updates), state


def test_weight_decay_skips_vectors_and_the_temperature():
    rng = np.random.default_rng(0)
    params = {
        "kernel": rng.standard_normal((3, 4)).astype(np.float32),
        "b": rng.standard_normal((4,)).astype(np.float32),
        "log_temperature": np.float32(2.5),
    }
    grads = jax.tree.map(lambda p: (0.1 * rng.standard_normal(np.shape(p))).astype(np.float32), params)
    cfg = OptimizerConfig(learning_rate=0.1, warmup_steps=0, weight_decay=0.5, clip_norm=0.0)
    updates, _ = _first_update(cfg, params, grads)
    adam = optax.adam(cfg.learning_rate, b1=cfg.b1, b2=cfg.b2, eps=cfg.eps)
    plain, _ = adam.update(grads, adam.init(params), params)
    # First Adam step (bias-corrected): -lr * g / (|g| + eps).
    direction = jax.tree.map(lambda g: -cfg.learning_rate * g / (np.abs(g) + cfg.eps), grads)
    for name in ("b", "log_temperature"):
        np.testing.assert_allclose(updates[name], plain[name], rtol=1e-6)
        np.testing.assert_allclose(updates[name], direction[name], rtol=1e-5)
    decayed = direction["kernel"] - cfg.learning_rate * cfg.weight_decay * params["kernel"]
    np.testing.assert_allclose(updates["kernel"], decayed, rtol=1e-5)
    assert np.abs(updates["kernel"] - plain["kernel"]).min() > 1e-3


def test_weight_decay_mask_on_the_encoder_tree():
    """With zero gradients the AdamW update is -lr * wd * p exactly on the decayed leaves, 0 elsewhere."""
    params = {
        "encoder": jax.tree.map(
            lambda s: np.ones(s.shape, np.float32), jax.eval_shape(lambda: init_params(TINY, jax.random.key(0)))
        ),
        "log_temperature": np.float32(2.5),
    }
    cfg = OptimizerConfig(learning_rate=0.1, warmup_steps=0, weight_decay=0.5, clip_norm=0.0)
    updates, _ = _first_update(cfg, params, jax.tree.map(np.zeros_like, params))
    decayed = {
        jax.tree_util.keystr(p) for p, u in jax.tree_util.tree_flatten_with_path(updates)[0] if np.any(u != 0)
    }
    matrices = {
        jax.tree_util.keystr(p)
        for p, _ in jax.tree_util.tree_flatten_with_path(params)[0]
        if jax.tree_util.keystr(p).endswith(("kernel']", "embedding']"))
    }
    assert "['encoder']['blocks']['mlp']['wi']['kernel']" in matrices
    assert decayed == matrices, sorted(decayed ^ matrices)


def _mu(state):
    return optax.tree_utils.tree_get(state, "mu")


@pytest.mark.parametrize("norm, clip", [(10.0, 1.0), (0.5, 1.0), (10.0, 0.0)])
def test_clip_by_global_norm(norm, clip):
    rng = np.random.default_rng(1)
    params = {"w": np.ones((3, 4), np.float32), "b": np.ones((4,), np.float32)}
    raw = jax.tree.map(lambda p: rng.standard_normal(p.shape).astype(np.float32), params)
    total = np.sqrt(sum(np.sum(g**2) for g in raw.values()))
    grads = jax.tree.map(lambda g: g * norm / total, raw)
    cfg = OptimizerConfig(learning_rate=0.1, warmup_steps=0, clip_norm=clip)
    _, state = _first_update(cfg, params, grads)
    scale = min(1.0, clip / norm) if clip else 1.0
    # Adam's first moment after one step is (1 - b1) * (clipped gradient).
    for name in params:
        np.testing.assert_allclose(np.asarray(_mu(state)[name]), (1 - cfg.b1) * grads[name] * scale, rtol=1e-5)


def test_optimizer_config_validation():
    with pytest.raises(ValueError, match=r"decay='step'; choose one of \('cosine', 'linear', 'constant'\)"):
        OptimizerConfig(decay="step")
    for field, value, rule in (("learning_rate", 0.0, "> 0.0"), ("warmup_steps", -1, ">= 0"), ("clip_norm", -1.0, ">= 0.0")):
        with pytest.raises(ValueError, match=rf"OptimizerConfig.{field}={value} is out of range: must be {rule} \("):
            OptimizerConfig(**{field: value})
    assert dataclasses.replace(OptimizerConfig(), clip_norm=0.0).clip_norm == 0.0
