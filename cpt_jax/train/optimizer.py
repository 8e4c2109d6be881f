"""AdamW with warmup, decay and gradient clipping; the schedule is a pure function of the step."""

from __future__ import annotations

import dataclasses
import math
from typing import Any, ClassVar

import jax
import jax.numpy as jnp
import optax

from cpt_jax.typecheck import Bound, above, at_least, between, check_field_types

DECAYS = ("cosine", "linear", "constant")


@dataclasses.dataclass(frozen=True)
class OptimizerConfig:
    """AdamW hyper-parameters.

    learning_rate: peak rate, reached after warmup_steps of linear warmup from 0.
    decay: "cosine", "linear" or "constant" from the peak to end_learning_rate_fraction * peak.
    weight_decay: decoupled decay on weight matrices and embedding tables only (not biases,
      norms or the temperature).
    clip_norm: global gradient-norm clip; 0 disables it.
    """

    learning_rate: float = 1e-3
    warmup_steps: int = 100
    decay: str = "cosine"
    end_learning_rate_fraction: float = 0.1
    weight_decay: float = 0.1
    b1: float = 0.9
    b2: float = 0.98
    eps: float = 1e-6
    clip_norm: float = 1.0

    BOUNDS: ClassVar[dict[str, Bound]] = {
        "learning_rate": above(0.0, "the peak rate, e.g. 1e-3"),
        "warmup_steps": at_least(0, "steps of linear warmup; 0 starts at the peak"),
        "end_learning_rate_fraction": between(0.0, 1.0, "the final rate as a fraction of the peak"),
        "weight_decay": at_least(0.0, "decoupled decay; 0 disables it"),
        "b1": between(0.0, 1.0, "Adam's first-moment decay, e.g. 0.9", hi_open=True),
        "b2": between(0.0, 1.0, "Adam's second-moment decay, e.g. 0.98", hi_open=True),
        "eps": above(0.0, "Adam's denominator epsilon, e.g. 1e-6"),
        "clip_norm": at_least(0.0, "the global gradient-norm clip; 0 disables it"),
    }

    def __post_init__(self) -> None:
        check_field_types(self)  # types, then the BOUNDS above
        if self.decay not in DECAYS:
            raise ValueError(f"OptimizerConfig.decay={self.decay!r}; choose one of {DECAYS}.")


def learning_rate(config: OptimizerConfig, total_steps: int, step: jax.Array | int) -> jax.Array:
    """Learning rate at `step` (0-based) of a run of `total_steps` steps."""
    step = jnp.asarray(step, jnp.float32)
    peak = config.learning_rate
    end = peak * config.end_learning_rate_fraction
    warm = max(config.warmup_steps, 1)
    warmup = peak * jnp.minimum(step + 1, warm) / warm
    progress = jnp.clip((step - config.warmup_steps) / max(total_steps - config.warmup_steps, 1), 0.0, 1.0)
    if config.decay == "cosine":
        decayed = end + (peak - end) * 0.5 * (1 + jnp.cos(math.pi * progress))
    elif config.decay == "linear":
        decayed = peak + (end - peak) * progress
    else:
        decayed = jnp.asarray(peak, jnp.float32)
    return jnp.where(step < config.warmup_steps, warmup, decayed)


def _decay_mask(params: Any) -> Any:
    """True for weight matrices and embedding tables, by name: shape alone misleads, since
    scanned layers give biases and norm scales a leading [layers] axis."""

    def decayed(path: tuple, _: Any) -> bool:
        name = str(getattr(path[-1], "key", path[-1]))
        return name.endswith(("kernel", "embedding"))

    return jax.tree_util.tree_map_with_path(decayed, params)


def make_optimizer(config: OptimizerConfig, total_steps: int) -> optax.GradientTransformation:
    """The optax chain: optional global-norm clip, then AdamW on the schedule."""
    adamw = optax.adamw(
        lambda step: learning_rate(config, total_steps, step),
        b1=config.b1,
        b2=config.b2,
        eps=config.eps,
        weight_decay=config.weight_decay,
        mask=_decay_mask,
    )
    if config.clip_norm == 0:
        return adamw
    return optax.chain(optax.clip_by_global_norm(config.clip_norm), adamw)
