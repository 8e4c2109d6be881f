"""The train state and its sharded creation.

The state is built already sharded: `jax.eval_shape` gives the abstract tree, the
logical-axis rules give each leaf a NamedSharding, and `jax.jit(..., out_shardings=...)`
materialises every shard on its own device. No host ever holds the whole model.

With LoRA (TrainConfig.lora, model/lora.py) the state splits what trains from what does not:
`params` holds the adapters and the temperature (all the optimizer sees, all a checkpoint
saves), `frozen` the base encoder, sharded by the same rules and rebuilt on every start from the
base the checkpoints name (train/restore.py).
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

from cpt_jax.model import Adapted, LoraConfig, ModelConfig, init_boxed, init_boxed_adapters
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
    """step: []; params: what trains and is checkpointed, {"encoder": tree, "log_temperature": []}
    or with LoRA {"lora": adapters, "log_temperature": []}; opt_state: optax state of params;
    frozen: None, or with LoRA {"encoder": the frozen base tree}."""

    step: Array
    params: Any
    opt_state: Any
    frozen: Any = None


def encoder_of(params: Any, frozen: Any, lora: LoraConfig) -> Any:
    """What model.embed reads: the trained encoder tree, or the frozen base with its adapters."""
    if not lora.enabled:
        return params["encoder"]
    return Adapted(frozen["encoder"], params["lora"], lora)


def _init_state(model: ModelConfig, temperature: TemperatureConfig, tx: optax.GradientTransformation, rng: Array,
                lora: LoraConfig = LoraConfig()) -> TrainState:
    boxed = init_boxed(model, rng)
    encoder = nn.meta.unbox(boxed)
    tau = jnp.asarray(temperature.init, jnp.float32)
    if not lora.enabled:
        params, frozen = {"encoder": encoder, "log_temperature": tau}, None
    else:
        adapters = nn.meta.unbox(init_boxed_adapters(model, lora, rng))
        params, frozen = {"lora": adapters, "log_temperature": tau}, {"encoder": encoder}
    return TrainState(step=jnp.zeros((), jnp.int32), params=params, opt_state=tx.init(params), frozen=frozen)


def state_shardings(
    model: ModelConfig, temperature: TemperatureConfig, tx: optax.GradientTransformation, mesh: Mesh, rules: Rules,
    lora: LoraConfig = LoraConfig(),
) -> TrainState:
    """NamedShardings for every leaf of the TrainState (optimizer moments follow their params;
    adapters follow their kernels' logical axes, the rank replicated)."""
    rng = jax.random.key(0)
    boxed = jax.eval_shape(lambda: init_boxed(model, rng))
    encoder = logical_shardings(boxed, mesh, rules)
    if not lora.enabled:
        params, frozen = {"encoder": encoder, "log_temperature": replicated(mesh)}, None
    else:
        adapters = logical_shardings(jax.eval_shape(lambda: init_boxed_adapters(model, lora, rng)), mesh, rules)
        params, frozen = {"lora": adapters, "log_temperature": replicated(mesh)}, {"encoder": encoder}
    abstract = abstract_train_state(model, temperature, tx, lora)
    opt_state = optax.tree_map_params(
        tx, lambda _, sharding: sharding, abstract.opt_state, params, transform_non_params=lambda _: replicated(mesh)
    )
    return TrainState(step=replicated(mesh), params=params, opt_state=opt_state, frozen=frozen)


def abstract_train_state(
    model: ModelConfig, temperature: TemperatureConfig, tx: optax.GradientTransformation,
    lora: LoraConfig = LoraConfig(),
) -> TrainState:
    """The TrainState's shapes and dtypes (jax.ShapeDtypeStruct leaves); nothing is allocated."""
    return jax.eval_shape(lambda: _init_state(model, temperature, tx, jax.random.key(0), lora))


def _place(x: Any, sharding: Any, dtype: Any = np.float32) -> Array:
    """A host array (the same on every process) -> a global array; each device receives its shards."""
    x = np.asarray(x, dtype)
    return jax.make_array_from_callback(x.shape, sharding, lambda index: x[index])


def _check_encoder(encoder: Any, model: ModelConfig) -> None:
    abstract = jax.eval_shape(lambda: nn.meta.unbox(init_boxed(model, jax.random.key(0))))
    want = jax.tree.map(lambda x: tuple(x.shape), abstract)
    got = jax.tree.map(lambda x: tuple(np.shape(x)), encoder)
    if got != want:
        raise ValueError(f"Encoder parameters do not match {model}:\n  given {got}\n  expected {want}")


def train_state_from_params(
    encoder: Any,
    model: ModelConfig,
    temperature: TemperatureConfig,
    tx: optax.GradientTransformation,
    mesh: Mesh,
    rules: Rules,
    lora: LoraConfig = LoraConfig(),
    seed: int = 0,
) -> tuple[TrainState, TrainState]:
    """(state, shardings) at step 0 around given encoder parameters (a host NumPy tree, the same on
    every process, e.g. an imported pretrained model); each device receives only its shards. With
    LoRA they are the frozen base, and the adapters start from `seed` (B = 0)."""
    shardings = state_shardings(model, temperature, tx, mesh, rules, lora)
    frozen = frozen_base(model, lora, shardings, encoder=encoder)
    tau = _place(temperature.init, shardings.params["log_temperature"])
    if lora.enabled:
        make = jax.jit(lambda: nn.meta.unbox(init_boxed_adapters(model, lora, jax.random.key(seed))),
                       out_shardings=shardings.params["lora"])
        params = {"lora": make(), "log_temperature": tau}
    else:
        params = {"encoder": frozen.pop("encoder"), "log_temperature": tau}
        frozen = None
    opt_state = jax.jit(tx.init, out_shardings=shardings.opt_state)(params)
    step = _place(0, shardings.step, np.int32)
    return TrainState(step=step, params=params, opt_state=opt_state, frozen=frozen), shardings


def frozen_base(model: ModelConfig, lora: LoraConfig, shardings: TrainState, *, encoder: Any = None,
                seed: int = 0) -> dict[str, Any]:
    """{"encoder": tree} placed on the shardings of a LoRA state's frozen base (or, without LoRA,
    of its trained encoder): the given host tree, or the encoder initialised from `seed`."""
    target = shardings.frozen["encoder"] if lora.enabled else shardings.params["encoder"]
    if encoder is None:
        init = jax.jit(lambda: nn.meta.unbox(init_boxed(model, jax.random.key(seed))), out_shardings=target)
        return {"encoder": init()}
    _check_encoder(encoder, model)
    return {"encoder": jax.tree.map(_place, encoder, target)}


def create_train_state(
    model: ModelConfig,
    temperature: TemperatureConfig,
    tx: optax.GradientTransformation,
    mesh: Mesh,
    rules: Rules,
    seed: int,
    lora: LoraConfig = LoraConfig(),
) -> tuple[TrainState, TrainState]:
    """(state, shardings): a freshly initialised state, each leaf created on its own shards (with
    LoRA, the base initialised from `seed` too: a random base, for tests and benchmarks)."""
    shardings = state_shardings(model, temperature, tx, mesh, rules, lora)
    init = jax.jit(lambda r: _init_state(model, temperature, tx, r, lora), out_shardings=shardings)
    return init(jax.random.key(seed)), shardings
