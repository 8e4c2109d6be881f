"""The train state and its sharded creation.

The state is built already sharded: `jax.eval_shape` gives the abstract tree, the
logical-axis rules give each leaf a NamedSharding, and `jax.jit(..., out_shardings=...)`
materialises every shard on its own device. No host ever holds the whole model.
"""

from __future__ import annotations

import dataclasses
import math
from typing import Any, ClassVar

import flax.linen as nn
import flax.struct
import jax
import jax.numpy as jnp
import numpy as np
import optax
from jax.sharding import Mesh

from cpt_jax.model import ModelConfig, init_boxed
from cpt_jax.parallel.rules import Rules, logical_shardings, replicated
from cpt_jax.typecheck import Bound, between, check_field_types

Array = jax.Array


# exp(tau) multiplies cosines in float32: beyond +-20 the softmax is one-hot or flat.
_LOG_SCALE = between(-20.0, 20.0, "a log-temperature: logits = cos * exp(tau), e.g. log(100) = 4.6")


@dataclasses.dataclass(frozen=True)
class TemperatureConfig:
    """Learned log-temperature tau: logits = cos * exp(tau), tau kept in [min, max] after every update.

    Defaults follow CLIP / the paper: init log(1/0.07), upper bound log(100).
    """

    init: float = math.log(1 / 0.07)
    minimum: float = 0.0
    maximum: float = math.log(100.0)

    BOUNDS: ClassVar[dict[str, Bound]] = {"init": _LOG_SCALE, "minimum": _LOG_SCALE, "maximum": _LOG_SCALE}

    def __post_init__(self) -> None:
        check_field_types(self)  # types, then the BOUNDS above
        if not self.minimum <= self.init <= self.maximum:
            raise ValueError(
                f"TemperatureConfig.init={self.init:.4f} must lie in [minimum={self.minimum:.4f}, "
                f"maximum={self.maximum:.4f}]."
            )


@flax.struct.dataclass
class TrainState:
    """step: []; params: {"encoder": tree, "log_temperature": []}; opt_state: optax state."""

    step: Array
    params: Any
    opt_state: Any


def _init_state(model: ModelConfig, temperature: TemperatureConfig, tx: optax.GradientTransformation, rng: Array) -> TrainState:
    params = {
        "encoder": nn.meta.unbox(init_boxed(model, rng)),
        "log_temperature": jnp.asarray(temperature.init, jnp.float32),
    }
    return TrainState(step=jnp.zeros((), jnp.int32), params=params, opt_state=tx.init(params))


def state_shardings(
    model: ModelConfig, temperature: TemperatureConfig, tx: optax.GradientTransformation, mesh: Mesh, rules: Rules
) -> TrainState:
    """NamedShardings for every leaf of the TrainState (optimizer moments follow their params)."""
    rng = jax.random.key(0)
    boxed = jax.eval_shape(lambda: init_boxed(model, rng))
    params = {"encoder": logical_shardings(boxed, mesh, rules), "log_temperature": replicated(mesh)}
    abstract = abstract_train_state(model, temperature, tx)
    opt_state = optax.tree_map_params(
        tx, lambda _, sharding: sharding, abstract.opt_state, params, transform_non_params=lambda _: replicated(mesh)
    )
    return TrainState(step=replicated(mesh), params=params, opt_state=opt_state)


def abstract_train_state(model: ModelConfig, temperature: TemperatureConfig, tx: optax.GradientTransformation) -> TrainState:
    """The TrainState's shapes and dtypes (jax.ShapeDtypeStruct leaves); nothing is allocated."""
    return jax.eval_shape(lambda: _init_state(model, temperature, tx, jax.random.key(0)))


def train_state_from_params(
    encoder: Any,
    model: ModelConfig,
    temperature: TemperatureConfig,
    tx: optax.GradientTransformation,
    mesh: Mesh,
    rules: Rules,
) -> tuple[TrainState, TrainState]:
    """(state, shardings) at step 0 around given encoder parameters (a host NumPy tree, the same on
    every process, e.g. an imported pretrained model); each device receives only its shards."""
    shardings = state_shardings(model, temperature, tx, mesh, rules)
    abstract = abstract_train_state(model, temperature, tx).params["encoder"]
    got = jax.tree.map(lambda x: tuple(np.shape(x)), encoder)
    want = jax.tree.map(lambda x: tuple(x.shape), abstract)
    if got != want:
        raise ValueError(f"Encoder parameters do not match {model}:\n  given {got}\n  expected {want}")

    def place(x: Any, sharding: Any, dtype: Any = np.float32) -> Array:
        x = np.asarray(x, dtype)
        return jax.make_array_from_callback(x.shape, sharding, lambda index: x[index])

    params = {
        "encoder": jax.tree.map(place, encoder, shardings.params["encoder"]),
        "log_temperature": place(temperature.init, shardings.params["log_temperature"]),
    }
    opt_state = jax.jit(tx.init, out_shardings=shardings.opt_state)(params)
    return TrainState(step=place(0, shardings.step, np.int32), params=params, opt_state=opt_state), shardings


def create_train_state(
    model: ModelConfig,
    temperature: TemperatureConfig,
    tx: optax.GradientTransformation,
    mesh: Mesh,
    rules: Rules,
    seed: int,
) -> tuple[TrainState, TrainState]:
    """(state, shardings): a freshly initialised state, each leaf created on its own shards."""
    shardings = state_shardings(model, temperature, tx, mesh, rules)
    init = jax.jit(lambda r: _init_state(model, temperature, tx, r), out_shardings=shardings)
    return init(jax.random.key(seed)), shardings
