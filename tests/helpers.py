"""Shared helpers for the model / loss / parallel / train tests.

Compiles dominate the runtime on CPU, so everything here uses one tiny model and caches
the few expensive objects (created train states) for the whole session.
"""

from __future__ import annotations

import contextlib
import dataclasses
import functools
import math
import os

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from cpt_jax import checkpoint
from cpt_jax.batch import PaddedSide, PairBatch
from cpt_jax.data.config import DataConfig
from cpt_jax.data.tokenizer import RUN_DIR_NAME
from cpt_jax.model import ModelConfig, init_params
from cpt_jax.parallel.mesh import MeshConfig, make_mesh
from cpt_jax.parallel.rules import DEFAULT_RULES
from cpt_jax.train.optimizer import OptimizerConfig, make_optimizer
from cpt_jax.train.config import TrainConfig
from cpt_jax.train.run import build_run
from cpt_jax.train.state import TemperatureConfig, create_train_state

TINY = ModelConfig(vocab_size=64, d_model=32, num_layers=2, num_heads=4, d_mlp=64, max_len=16)
OPT = OptimizerConfig(learning_rate=1e-2, warmup_steps=2)
TOTAL_STEPS = 10
TEMPERATURE = TemperatureConfig()


def mesh(data: int = 1, fsdp: int = 1, tensor: int = 1):
    """A mesh over the first data*fsdp*tensor devices."""
    n = data * fsdp * tensor
    assert len(jax.devices()) >= n, "tests/conftest.py should provide 8 CPU devices"
    return make_mesh(MeshConfig(data=data, fsdp=fsdp, tensor=tensor), jax.devices()[:n])


def random_side(rng: np.random.Generator, batch: int, seq: int, vocab: int = 64, min_len: int = 3):
    """Right-padded token ids (pad id 0) and mask with random real lengths in [min_len, seq]."""
    tokens = rng.integers(1, vocab, (batch, seq)).astype(np.int32)
    lengths = rng.integers(min_len, seq + 1, batch)
    lengths[0] = seq  # at least one full row
    mask = (np.arange(seq)[None, :] < lengths[:, None]).astype(np.int32)
    return tokens * mask, mask


def random_batch(seed: int, batch: int = 16, seq: int = 12) -> PairBatch:
    rng = np.random.default_rng(seed)
    return PairBatch(PaddedSide(*random_side(rng, batch, seq)), PaddedSide(*random_side(rng, batch, seq)))


def random_params(model: ModelConfig, seed: int = 0, scale: float = 0.02):
    """Encoder parameters with init_params' tree and shapes, drawn in numpy (no compile).

    Every leaf, biases and LayerNorm offsets included, is N(0, scale^2); LayerNorm scales
    are 1 + N(0, scale^2)."""
    shapes = jax.eval_shape(lambda: init_params(model, jax.random.key(0)))
    rng = np.random.default_rng(seed)

    def draw(path, s):
        x = scale * rng.standard_normal(s.shape).astype(np.float32)
        return x + 1 if jax.tree_util.keystr(path).endswith("['scale']") else x

    return jax.tree_util.tree_map_with_path(draw, shapes)


@functools.lru_cache(maxsize=None)
def tx(opt: OptimizerConfig = OPT, total_steps: int = TOTAL_STEPS):
    return make_optimizer(opt, total_steps)


def created_state(model: ModelConfig, layout: tuple[int, int, int], seed: int = 0):
    """(state, shardings) from the real create_train_state; cached, so never donate it."""
    return _created_state(model, tuple(layout), seed)


def build_test_run(model: ModelConfig, layout: tuple[int, int, int], batch: int = 16, seq: int = 12,
                   chunk: int = 0, init_params=None, opt: OptimizerConfig = OPT):
    """train.run.build_run, as train() assembles a run, of a run fed by the test (no data sources):
    the mesh of `layout` over the first devices, the test optimizer, GradCache chunks of `chunk`."""
    config = TrainConfig(
        output_dir="", model=model, data=DataConfig(max_len_x=seq, max_len_y=seq, stream_readers=1),
        mesh=MeshConfig(*layout), optimizer=opt, num_steps=TOTAL_STEPS, global_batch_size=batch,
        grad_cache_chunk_size=chunk,
    )
    return build_run(config, devices=jax.devices()[: math.prod(layout)], init_params=init_params)


@functools.lru_cache(maxsize=None)
def _created_state(model, layout, seed):  # one cache key per (model, layout, seed), however called
    return create_train_state(model, TEMPERATURE, tx(), mesh(*layout), DEFAULT_RULES, seed)


def host(tree):
    return jax.tree.map(np.asarray, jax.device_get(tree))


def rel_err(value, ref) -> float:
    """||value - ref|| / max(||ref||, tiny), in float64."""
    value, ref = np.asarray(value, np.float64), np.asarray(ref, np.float64)
    return float(np.linalg.norm(value - ref) / max(np.linalg.norm(ref), 1e-30))


# ---------------------------------------------------------------- float64 references


class Float64Config(ModelConfig):
    """ModelConfig whose compute dtype is float64 (only for building references under x64).

    ModelConfig validates dtype against ("float32", "bfloat16"), so the override is a
    subclass property rather than a field value.
    """

    @property
    def compute_dtype(self) -> jnp.dtype:
        return jnp.dtype(jnp.float64)


def float64_config(cfg: ModelConfig) -> Float64Config:
    return Float64Config(**{f.name: getattr(cfg, f.name) for f in dataclasses.fields(cfg)})


def _exact_attention(query, key, value, mask=None, **_):
    """jax.nn.dot_product_attention without its float32 softmax: [b, s, h, k] in the input dtype."""
    logits = jnp.einsum("bthk,bshk->bhts", query, key) / math.sqrt(query.shape[-1])
    logits = jnp.where(mask, logits, -jnp.inf)
    return jnp.einsum("bhts,bshk->bthk", jax.nn.softmax(logits, axis=-1), value)


@contextlib.contextmanager
def exact_float64():
    """x64 on, and attention softmax in the input dtype (jax's own always runs it in float32).

    Only for references: the library's pool() and loss cast to float32 on purpose, so a
    float64 reference is built from Encoder(float64_config(cfg)) + eos/mean_pool +
    l2_normalize + reference_loss under this context."""
    with pytest.MonkeyPatch.context() as m, jax.enable_x64(True):
        m.setattr(jax.nn, "dot_product_attention", _exact_attention)
        yield


def reference_loss(x, y, log_temperature):
    """Symmetric InfoNCE, written directly: labels on the diagonal, logits = cos * exp(tau)."""
    logits = x @ y.T * jnp.exp(log_temperature)
    diag = jnp.diagonal(logits)
    rows = jnp.mean(jax.nn.logsumexp(logits, axis=1) - diag)
    cols = jnp.mean(jax.nn.logsumexp(logits, axis=0) - diag)
    return (rows + cols) / 2


def write_run_dir(run_dir: str, model, encoder_params, tokenizer, max_len_x: int = 32, max_len_y: int = 64,
                  data_config: dict | None = None, lora: dict | None = None) -> str:
    """A run directory in the layout python -m cpt_jax.train writes (tokenizer, checkpoint 0 with
    meta), for tests that need a checkpoint without paying for a training run. data_config: more
    fields of the meta's data_config (e.g. sources and instructions). lora: a LoRA run instead,
    {"meta": train/restore.lora_meta's dict, "adapters": tree, "init_from": the base's path or None};
    encoder_params is then unused."""
    tokenizer.save(os.path.join(run_dir, RUN_DIR_NAME))
    params = {"encoder": encoder_params, "log_temperature": jnp.float32(3.0)}
    meta = {
        "step": 0,
        "model_config": dataclasses.asdict(model),
        "data_config": {"max_len_x": max_len_x, "max_len_y": max_len_y, **(data_config or {})},
    }
    if lora is not None:
        params = {"lora": lora["adapters"], "log_temperature": jnp.float32(3.0)}
        meta["lora"] = lora["meta"]
        if lora.get("init_from"):
            meta["init_from"] = lora["init_from"]
    ckpt = checkpoint.Checkpointer(run_dir, async_save=False)
    ckpt.save(0, params, {"count": jnp.zeros((), jnp.int32)}, meta, force=True)
    ckpt.wait()
    ckpt.close()
    return run_dir
