"""False-negative masking in the train step: GradCache (with packing and hard negatives) gives the
plain step's loss, counts and gradients; build_run passes TrainConfig.loss and the batch's ids
through to_global; a batch without ids is refused; the loss settings may change on resume."""

from __future__ import annotations

import dataclasses
import functools
import io
import math

import flax.linen as nn
import jax
import numpy as np
import pytest

from cpt_jax.batch import ContentIds, Negatives, PaddedSide, PairBatch
from cpt_jax.data.config import DataConfig
from cpt_jax.data.packing import BatchPacker
from cpt_jax.data.pipeline import content_ids
from cpt_jax.loss import LossConfig
from cpt_jax.model import embed
from cpt_jax.parallel.mesh import MeshConfig
from cpt_jax.parallel.rules import DEFAULT_RULES
from cpt_jax.train import restore
from cpt_jax.train.config import TrainConfig
from cpt_jax.train.metrics import MetricsWriter
from cpt_jax.train.run import build_run
from cpt_jax.train.step import StepContext, _value_and_grad
from tests.helpers import OPT, TEMPERATURE, TINY, TOTAL_STEPS, created_state, host, mesh, random_batch, random_side, tx

B, K, SEQ = 32, 2, 12
MARGIN = 0.03
# Copies: x of rows 8..11 repeats rows 0..3; y of rows 20..23 repeats rows 16..19; row 30 is row 5.
X_COPIES = [(8 + i, i) for i in range(4)] + [(30, 5)]
Y_COPIES = [(20 + i, 16 + i) for i in range(4)] + [(30, 5)]
# In-batch duplicates, ordered (row, column): 4 x-groups of 2, 4 y-groups of 2, one full copy.
IN_BATCH = 2 * 4 + 2 * 4 + 2
# Hard negatives that are some row's y: (owner row, slot) -> the row whose y it is.
FALSE_NEGATIVES = {(2, 0): 2, (3, 1): 16, (9, 0): 25}  # y_16 = y_20: masked for rows 16 and 20


def _ids(tokens: np.ndarray) -> np.ndarray:
    """Content ids of token rows (the text stands in as its token ids)."""
    return content_ids([" ".join(map(str, row)) for row in tokens.reshape(-1, tokens.shape[-1])]).reshape(
        *tokens.shape[:-1], 2
    )


@functools.lru_cache(maxsize=None)
def duplicated_batch() -> PairBatch:
    """32 pairs with copied x and y texts and hard negatives (valid where random < 0.7; the false
    ones valid), with the content ids of their tokens."""
    b = random_batch(7, batch=B, seq=SEQ)
    (xt, xm), (yt, ym) = (np.array(b.x.tokens), np.array(b.x.mask)), (np.array(b.y.tokens), np.array(b.y.mask))
    for dst, src in X_COPIES:
        xt[dst], xm[dst] = xt[src], xm[src]
    for dst, src in Y_COPIES:
        yt[dst], ym[dst] = yt[src], ym[src]
    rng = np.random.default_rng(11)
    nt, nm = (a.reshape(B, K, SEQ) for a in random_side(rng, B * K, SEQ))
    valid = (rng.random((B, K)) < 0.7).astype(np.int32)
    for (row, slot), j in FALSE_NEGATIVES.items():
        nt[row, slot], nm[row, slot], valid[row, slot] = yt[j], ym[j], 1
    return PairBatch(PaddedSide(xt, xm), PaddedSide(yt, ym), Negatives(PaddedSide(nt, nm), valid),
                     ContentIds(_ids(xt * xm), _ids(yt * ym), _ids(nt * nm)))


def expected_duplicates() -> int:
    """In-batch duplicates in both directions, and each false hard negative once per row it copies."""
    return 2 * IN_BATCH + 4


@functools.lru_cache(maxsize=None)
def value_and_grad(layout: tuple[int, int, int], chunks: int, packed: bool, config: LossConfig):
    m = mesh(*layout)
    ctx = StepContext(TINY, TEMPERATURE, tx(), m, DEFAULT_RULES, seed=0, grad_cache_chunks=chunks, loss=config)
    params = host(created_state(TINY, (1, 1, 1))[0].params)
    batch = duplicated_batch()
    if packed:
        batch = BatchPacker(groups=layout[0] * layout[1] * chunks)(batch)
    with jax.set_mesh(m), nn.logical_axis_rules(list(DEFAULT_RULES)):
        return host(jax.jit(lambda p, b: _value_and_grad(p, b, None, ctx))(params, batch))


def _embeddings():
    p, b = host(created_state(TINY, (1, 1, 1))[0].params)["encoder"], duplicated_batch()
    n = embed(p, TINY, b.negatives.side.tokens.reshape(-1, SEQ), b.negatives.side.mask.reshape(-1, SEQ))
    return np.asarray(embed(p, TINY, b.x.tokens, b.x.mask)), np.asarray(embed(p, TINY, b.y.tokens, b.y.mask)), np.asarray(n)


def test_the_margin_is_clear_of_every_cosine():
    """No cosine lies within 1e-4 of a row's positive + MARGIN, so float32 rounding differences
    between layouts cannot flip a similarity mask (choose another MARGIN if this fails)."""
    x, y, n = _embeddings()
    pos = np.sum(x * y, axis=1)[:, None]
    for cos in (x @ y.T, y @ x.T, x @ n.T):
        assert np.min(np.abs(cos - pos - MARGIN)) > 1e-4


@pytest.mark.parametrize("config", [LossConfig(mask_duplicates=True), LossConfig(True, MARGIN)], ids=["duplicates", "both"])
@pytest.mark.parametrize("layout, chunks, packed", [((2, 4, 1), 2, False), ((4, 2, 1), 2, True)], ids=["gradcache", "packed-gradcache"])
def test_masked_gradcache_on_8_devices_equals_the_plain_step_on_one(config, layout, chunks, packed):
    (ref_loss, ref_metrics), ref_grads = value_and_grad((1, 1, 1), 1, False, config)
    (loss, metrics), grads = value_and_grad(layout, chunks, packed, config)
    assert int(ref_metrics["masked_duplicates"]) == expected_duplicates()
    assert config.similarity_margin is None or int(ref_metrics["masked_similar"]) > 0
    for key in ("masked_duplicates", "masked_similar", "accuracy_xy", "accuracy_yx"):
        assert metrics[key] == ref_metrics[key], key
    np.testing.assert_allclose(loss, ref_loss, rtol=1e-5)
    scale = np.sqrt(sum(np.sum(np.square(g)) for g in jax.tree.leaves(ref_grads)))
    for g, ref in zip(jax.tree.leaves(grads), jax.tree.leaves(ref_grads)):
        assert np.linalg.norm(g - ref) / scale < 1e-5
    (unmasked, plain_metrics), _ = value_and_grad((1, 1, 1), 1, False, LossConfig())
    assert loss < unmasked and "masked_duplicates" not in plain_metrics  # masking off: today's metrics


def test_build_run_masks_with_the_configured_loss_through_to_global():
    """TrainConfig.loss reaches the step; to_global shards the ids with the (packed) rows."""
    config = TrainConfig(
        output_dir="", model=TINY, data=DataConfig(max_len_x=SEQ, max_len_y=SEQ, stream_readers=1),
        mesh=MeshConfig(4, 2, 1), optimizer=OPT, num_steps=TOTAL_STEPS, global_batch_size=B,
        pack_sequences=True, loss=LossConfig(mask_duplicates=True),
    )
    run = build_run(config, devices=jax.devices()[:8], init_params=host(created_state(TINY, (1, 1, 1))[0].params["encoder"]))
    assert run.context.loss == config.loss
    batch = run.to_global(duplicated_batch())
    shard = batch.ids.x.addressable_shards[1]
    np.testing.assert_array_equal(np.asarray(shard.data), duplicated_batch().ids.x[shard.index])
    assert shard.data.shape == (B // 8, 2)
    _, metrics = run.step(run.state, batch)
    assert int(metrics["masked_duplicates"]) == expected_duplicates()


def test_masking_a_batch_without_ids_names_the_fix():
    m = mesh()
    ctx = StepContext(TINY, TEMPERATURE, tx(), m, DEFAULT_RULES, seed=0, loss=LossConfig(mask_duplicates=True))
    params = host(created_state(TINY, (1, 1, 1))[0].params)
    with jax.set_mesh(m), nn.logical_axis_rules(list(DEFAULT_RULES)):
        with pytest.raises(ValueError, match=r"LossConfig\.mask_duplicates=True needs .*PairBatch\.ids"):
            jax.jit(lambda p, b: _value_and_grad(p, b, None, ctx))(params, random_batch(0))


def test_the_loss_settings_may_change_on_resume():
    base = TrainConfig(output_dir="", model=TINY, data=DataConfig(max_len_x=SEQ, max_len_y=SEQ), num_steps=10,
                       global_batch_size=8)
    masked = dataclasses.replace(base, loss=LossConfig(True, 0.1))
    assert restore.differences(restore.run_meta(base, tx(), "t"), restore.run_meta(masked, tx(), "t")) == {}


def test_the_console_shows_masked_counts_as_counts(tmp_path):
    out = io.StringIO()
    writer = MetricsWriter(str(tmp_path), 10, stream=out)
    writer.write(1, {"loss": 1.5, "masked_duplicates": 24576.0, "masked_similar": 0.0})
    writer.close()
    assert "masked_duplicates 24576 masked_similar 0" in out.getvalue()
    assert math.isclose(float(out.getvalue().split("loss ")[1].split()[0]), 1.5)
