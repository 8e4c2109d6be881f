"""LoRA (Hu et al., 2021): low-rank adapters on the encoder's projections, the base weights frozen.

A targeted kernel W of shape [*lead, *in, *out] (lead = [layers] for scanned layers; in / out the
dimensions token_matmul contracts and produces) gains A [*lead, *in, rank] and B [*lead, rank, *out].
The projection then computes

    x W + (alpha / rank) * dropout(x) A B

B starts at zero, so at initialisation the adapted encoder is the base encoder exactly. Only A and
B (and the temperature) train: the step differentiates them alone, so no gradient, optimizer
moment or weight-gradient product exists for the base.

The adapters mirror the parameter tree: for the kernel at params[...][module][name] they sit at
adapters[...][module][name] = {"lora_a": A, "lora_b": B}, and the encoder reads them from the
variable collection "lora" (model/encoder.py). Logical axis names follow the kernel's, with
"lora_rank" for the rank (replicated by parallel/rules.py), so fsdp / tensor shard A and B as they
shard W. `merge` folds them into W for inference and export.
"""

from __future__ import annotations

import dataclasses
import math
import re
from typing import Any, ClassVar

import flax.linen as nn
import flax.struct
import jax
import jax.numpy as jnp
import numpy as np

from cpt_jax.model.matmul import token_matmul
from cpt_jax.typecheck import Bound, above, at_least, between, check_field_types

Params = Any

RANK_AXIS = "lora_rank"
# Projection kernels an adapter may wrap: leaf name -> how many leading (after "layers") dims are
# the input. The MLP's Dense kernels are all "kernel" under mlp/{wi, wi_gate, wo}.
PROJECTIONS = {"query_kernel": 1, "key_kernel": 1, "value_kernel": 1, "out_kernel": 2, "kernel": 1}
ALL_PROJECTIONS = r"attention/(query|key|value|out)_kernel$|mlp/(wi|wi_gate|wo)/kernel$"


@dataclasses.dataclass(frozen=True)
class LoraConfig:
    """Low-rank adapters instead of training every weight (TrainConfig.lora; rank 0 = off).

    rank: the adapters' rank r (e.g. 8 to 64); 0 trains every weight as before.
    alpha: the adapters' output is scaled by alpha / rank (PEFT's lora_alpha).
    dropout: dropout on each adapter's input during training (PEFT's lora_dropout).
    targets: a regular expression searched in each projection kernel's path ("/"-joined, e.g.
      "blocks/attention/query_kernel", "blocks/mlp/wi/kernel"); default: every attention and MLP
      projection. Embeddings, norms and biases stay frozen whatever it says.
    """

    rank: int = 0
    alpha: float = 16.0
    dropout: float = 0.0
    targets: str = ALL_PROJECTIONS

    BOUNDS: ClassVar[dict[str, Bound]] = {
        "rank": at_least(0, "the adapters' rank, e.g. 8; 0 trains every weight"),
        "alpha": above(0.0, "the adapters' scale numerator (scale = alpha / rank), e.g. 16"),
        "dropout": between(0.0, 1.0, "dropout on the adapters' input, e.g. 0.05", hi_open=True),
    }

    def __post_init__(self) -> None:
        check_field_types(self)  # types, then the BOUNDS above
        try:
            re.compile(self.targets)
        except re.error as e:
            raise ValueError(
                f"LoraConfig.targets={self.targets!r} is not a regular expression ({e}); e.g. "
                r"'attention/(query|value)_kernel$' for the query and value projections."
            ) from None

    @property
    def enabled(self) -> bool:
        return self.rank > 0

    @property
    def scale(self) -> float:
        return self.alpha / self.rank


@flax.struct.dataclass
class Adapted:
    """An encoder's parameters as LoRA trains them: the frozen base tree and the adapters
    (model.embed accepts it wherever it accepts a parameter tree)."""

    base: Params
    adapters: Params
    config: LoraConfig = flax.struct.field(pytree_node=False)


def project(module: nn.Module, name: str, x: Array, kernel: Array, deterministic: bool,
            bias: Array | None = None) -> Array:
    """token_matmul(x, kernel) [+ bias], plus the LoRA term (alpha / rank) * dropout(x) A B when the
    module has a LoraConfig and its "lora" collection holds adapters for the kernel `name`
    (model/lora.py).

    x: [batch, seq, d_in]; kernel: [d_in, *out] and bias [*out] in the compute dtype; A, B are read
    as [d_in, rank] and [rank, *out]. The base kernel is an input, never differentiated when only the
    adapters train, so its weight-gradient product is not computed.
    """
    y = token_matmul(x, kernel)
    if bias is not None:
        y = y + bias
    lora: LoraConfig | None = getattr(module, "lora", None)
    if lora is None or not module.has_variable("lora", name):
        return y
    pair = module.get_variable("lora", name)
    a = pair["lora_a"].astype(x.dtype).reshape(x.shape[-1], -1)
    h = nn.Dropout(lora.dropout)(x, deterministic=deterministic)
    low = token_matmul(token_matmul(h, a), pair["lora_b"].astype(x.dtype))
    return y + low * jnp.asarray(lora.scale, y.dtype)


def _key(path: tuple) -> tuple[str, ...]:
    return tuple(str(getattr(k, "key", k)) for k in path)


def projection_paths(params: Params) -> list[tuple[str, ...]]:
    """Every projection kernel of an encoder tree (plain, boxed or abstract), as key tuples."""
    leaves = jax.tree_util.tree_flatten_with_path(params, is_leaf=lambda x: isinstance(x, nn.Partitioned))[0]
    out = []
    for path, _ in leaves:
        keys = _key(path)
        parent = keys[-2] if len(keys) > 1 else ""
        if keys[-1] in PROJECTIONS and (keys[-1] != "kernel" or parent in ("wi", "wi_gate", "wo")):
            out.append(keys)
    return out


def target_paths(params: Params, config: LoraConfig) -> list[tuple[str, ...]]:
    """The projection kernels config.targets selects; ValueError naming the choices when none is."""
    every = projection_paths(params)
    chosen = [p for p in every if re.search(config.targets, "/".join(p))]
    if not chosen:
        raise ValueError(
            f"LoraConfig.targets={config.targets!r} matches none of this encoder's projections "
            f"{['/'.join(p) for p in every[:8]]}{' ...' if len(every) > 8 else ''}; give a pattern that "
            f"matches some, e.g. the default {ALL_PROJECTIONS!r}."
        )
    return chosen


def _get(tree: Params, path: tuple[str, ...]) -> Any:
    for k in path:
        tree = tree[k]
    return tree


def _set(tree: dict, path: tuple[str, ...], value: Any) -> None:
    for k in path[:-1]:
        tree = tree.setdefault(k, {})
    tree[path[-1]] = value


def _split(names: tuple, leaf: str) -> tuple[int, int]:
    """(lead, n_in): how many leading dims are the stacked layers, and how many the input."""
    return (1 if names and names[0] == "layers" else 0), PROJECTIONS[leaf]


def init_adapters(boxed: Params, config: LoraConfig, rng: jax.Array) -> Params:
    """Adapters (nn.Partitioned leaves, logical names attached) for a boxed encoder tree (from
    model.init_boxed, real or under jax.eval_shape). A ~ U(-1/sqrt(fan_in), 1/sqrt(fan_in)), as
    PEFT's Kaiming init of lora_A; B = 0."""
    out: dict = {}
    for i, path in enumerate(target_paths(boxed, config)):
        kernel = _get(boxed, path)
        names, shape = tuple(kernel.names), tuple(kernel.value.shape)
        lead, n_in = _split(names, path[-1])
        fan_in = math.prod(shape[lead : lead + n_in])
        bound = 1.0 / math.sqrt(fan_in)
        a_shape = (*shape[: lead + n_in], config.rank)
        b_shape = (*shape[:lead], config.rank, *shape[lead + n_in :])
        a = jax.random.uniform(jax.random.fold_in(rng, i), a_shape, jnp.float32, -bound, bound)
        _set(out, path, {
            "lora_a": nn.Partitioned(a, names=(*names[: lead + n_in], RANK_AXIS)),
            "lora_b": nn.Partitioned(jnp.zeros(b_shape, jnp.float32),
                                     names=(*names[:lead], RANK_AXIS, *names[lead + n_in :])),
        })
    return out


def adapter_paths(adapters: Params) -> list[tuple[str, ...]]:
    """The kernel paths an adapter tree adapts (the parents of its lora_a leaves)."""
    leaves = jax.tree_util.tree_flatten_with_path(adapters, is_leaf=lambda x: isinstance(x, nn.Partitioned))[0]
    return [_key(path)[:-1] for path, _ in leaves if _key(path)[-1] == "lora_a"]


def delta(a: Any, b: Any, scale: float, lead: int) -> Any:
    """scale * A B as the kernel's shape: a [*lead, *in, r], b [*lead, r, *out] -> [*lead, *in, *out]."""
    xp = np if isinstance(a, np.ndarray) and isinstance(b, np.ndarray) else jnp
    r = a.shape[-1]
    lead_shape, in_shape, out_shape = a.shape[:lead], a.shape[lead:-1], b.shape[lead + 1 :]
    a2 = a.reshape(*lead_shape, -1, r)
    b2 = b.reshape(*lead_shape, r, -1)
    return (xp.matmul(a2, b2) * scale).reshape(*lead_shape, *in_shape, *out_shape)


def merge(base: Params, adapters: Params, config: LoraConfig) -> Params:
    """W + (alpha / rank) A B for every adapted kernel: the plain encoder tree that computes what the
    adapted one does (within float32 rounding). NumPy in, NumPy out; jax arrays stay jax."""
    merged = jax.tree.map(lambda x: x, base)  # a new tree; untouched leaves shared
    for path in adapter_paths(adapters):
        pair = _get(adapters, path)
        kernel = _get(base, path)
        lead = pair["lora_a"].ndim + pair["lora_b"].ndim - 2 - kernel.ndim
        _set(merged, path, kernel + delta(pair["lora_a"], pair["lora_b"], config.scale, lead).astype(kernel.dtype))
    return merged
