"""Matryoshka terms in the train step: GradCache over 8 devices (with packing, hard negatives and
masking) gives the plain step's loss, per-dimension losses and gradients on one device; the
dimensions are checked against the model before anything is built."""

from __future__ import annotations

import jax
import numpy as np
import pytest

from cpt_jax.data.config import DataConfig
from cpt_jax.loss import LossConfig
from cpt_jax.train.config import TrainConfig, validate
from tests.helpers import TINY
from tests.train.test_step_masking import SEQ, value_and_grad

NESTED = LossConfig(matryoshka_dims=(32, 16, 8), matryoshka_weights=(1.0, 0.5, 0.5))
MASKED_NESTED = LossConfig(mask_duplicates=True, matryoshka_dims=(32, 8))


@pytest.mark.parametrize("config", [NESTED, MASKED_NESTED], ids=["nested", "masked-nested"])
@pytest.mark.parametrize("layout, chunks, packed", [((2, 4, 1), 2, False), ((4, 2, 1), 2, True)],
                         ids=["gradcache", "packed-gradcache"])
def test_nested_gradcache_on_8_devices_equals_the_plain_step_on_one(config, layout, chunks, packed):
    (ref_loss, ref_metrics), ref_grads = value_and_grad((1, 1, 1), 1, False, config)
    (loss, metrics), grads = value_and_grad(layout, chunks, packed, config)
    np.testing.assert_allclose(loss, ref_loss, rtol=1e-5)
    for d in config.matryoshka_dims:
        np.testing.assert_allclose(metrics[f"loss_dim{d}"], ref_metrics[f"loss_dim{d}"], rtol=1e-5)
    weighted = sum(w * ref_metrics[f"loss_dim{d}"] for d, w in config.matryoshka)
    np.testing.assert_allclose(ref_loss, weighted, rtol=1e-6)
    scale = np.sqrt(sum(np.sum(np.square(g)) for g in jax.tree.leaves(ref_grads)))
    for g, ref in zip(jax.tree.leaves(grads), jax.tree.leaves(ref_grads)):
        assert np.linalg.norm(g - ref) / scale < 1e-5
    (plain, _), plain_grads = value_and_grad((1, 1, 1), 1, False, LossConfig(mask_duplicates=config.mask_duplicates))
    assert not np.isclose(loss, plain)  # the smaller prefixes change the objective and its gradient
    diff = sum(np.sum(np.square(g - p)) for g, p in zip(jax.tree.leaves(grads), jax.tree.leaves(plain_grads)))
    assert np.sqrt(diff) / scale > 1e-2


def test_dimensions_above_the_model_are_refused_before_anything_is_built():
    config = TrainConfig(output_dir="", model=TINY, data=DataConfig(max_len_x=SEQ, max_len_y=SEQ), num_steps=2,
                         global_batch_size=8, loss=LossConfig(matryoshka_dims=(64, 32)))
    with pytest.raises(ValueError, match=r"matryoshka_dims=\(64, 32\) starts above .*d_model=32"):
        validate(config, 1, reads_data=False)
