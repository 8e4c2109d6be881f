"""Every numeric field of every config dataclass has a declared range, and a value just outside it
is refused when the config is built, naming Class.field (cpt_jax/typecheck.py: Bound, BOUNDS).

A new int or float field without a Bound in its class's BOUNDS fails
test_every_numeric_field_has_bounds; a new config class without an entry in REQUIRED fails
test_every_config_class_is_covered.
"""

from __future__ import annotations

import dataclasses
import math
import os
import sys
import typing

import pytest

from cpt_jax.cli.flags import CONFIGURABLES
from cpt_jax.data.config import DataConfig
from cpt_jax.data.sources import PreparedPairsSource
from cpt_jax.data.probe_tasks import StdlibPackages
from cpt_jax.data.sources.spans import SpanConfig
from cpt_jax.eval.spec import EvalSpec
from cpt_jax.mining import MineConfig, ModelSpec
from cpt_jax.plan.spec import PlanSpec
from cpt_jax.model import ModelConfig
from cpt_jax.typecheck import Bound, check_bounds, declared_bounds

HERE = os.path.dirname(os.path.abspath(__file__))



def _unwrapped(configurable: type) -> type:
    """The class gin registered (gin.external_configurable returns a wrapping subclass, which adds
    gin's call location to errors)."""
    return getattr(sys.modules[configurable.__module__], configurable.__qualname__)


CLASSES = {
    **{name: _unwrapped(c) for name, c in CONFIGURABLES.items()},
    "EvalSpec": EvalSpec, "SpanConfig": SpanConfig, "StdlibPackages": StdlibPackages,
    "MineConfig": MineConfig, "ModelSpec": ModelSpec, "PlanSpec": PlanSpec,
}

# The smallest valid arguments of each class (those without defaults, and any default that would
# read more than the config: EvalSpec's default tasks import TFDS to list the datasets).
REQUIRED: dict[str, dict] = {
    "ModelConfig": {},
    "DataConfig": {"max_len_x": 8, "max_len_y": 8},
    "MeshConfig": {},
    "OptimizerConfig": {},
    "TemperatureConfig": {},
    "LossConfig": {},
    "EvalConfig": {"every": 1, "tasks": ("site_code",)},
    "LoraConfig": {},
    "TrainConfig": {
        "output_dir": "/tmp/unused", "model": ModelConfig(), "data": DataConfig(max_len_x=8, max_len_y=8),
        "num_steps": 1, "global_batch_size": 16,
    },
    "TextFilesSource": {"paths": ("*.txt",)},
    "CodeFilesSource": {"paths": ("*.py",)},
    "TfdsTextSource": {"dataset": "c4/en"},
    "PairedJsonlSource": {"paths": ("*.jsonl",)},
    "PreparedPairsSource": {"dataset": "stdlib_code", "data_dir": "/tmp/unused"},
    "EvalSpec": {"tasks": (), "beir": (HERE,)},
    "SpanConfig": {},
    "StdlibPackages": {},
    "ModelSpec": {"sentence_transformer": "/tmp/unused"},
    "MineConfig": {
        "model": ModelSpec(sentence_transformer="/tmp/unused"),
        "pairs": PreparedPairsSource(dataset="stdlib_code", data_dir="/tmp/unused"), "output": "/tmp/unused.jsonl",
    },
    "PlanSpec": {"model": ModelConfig(), "global_batch": 16, "len_x": 8, "len_y": 8, "devices": 8},
}

# Numeric fields deliberately left without a range, each with the reason. Empty: every int and
# float field of every config has one. Add here only a field for which every finite value is valid.
EXEMPT: dict[str, str] = {}


def _numeric_types(cls: type, name: str) -> set[type]:
    hint = typing.get_type_hints(cls)[name]
    args = typing.get_args(hint) or (hint,)
    return {t for t in args if t in (int, float)}


def _numeric_fields() -> list[tuple[str, str]]:
    return [
        (cls_name, f.name)
        for cls_name, cls in CLASSES.items()
        for f in dataclasses.fields(cls)
        if _numeric_types(cls, f.name)
    ]


def _just_outside(bound: Bound, is_int: bool) -> list[float]:
    """The nearest refused values below lo and above hi."""
    out = []
    if bound.lo is not None:
        out.append(bound.lo if bound.lo_open else (bound.lo - 1 if is_int else math.nextafter(bound.lo, -math.inf)))
    if bound.hi is not None:
        out.append(bound.hi if bound.hi_open else (bound.hi + 1 if is_int else math.nextafter(bound.hi, math.inf)))
    return out


def _cases() -> list[tuple[str, str, float]]:
    cases = []
    for cls_name, field in _numeric_fields():
        bound = declared_bounds(CLASSES[cls_name]).get(field)
        if bound is None:
            continue
        is_int = float not in _numeric_types(CLASSES[cls_name], field)
        cases += [(cls_name, field, value) for value in _just_outside(bound, is_int)]
    return cases


def _float_fields() -> list[tuple[str, str]]:
    return [(c, f) for c, f in _numeric_fields() if float in _numeric_types(CLASSES[c], f)]


def test_the_walk_finds_the_config_classes_and_their_numeric_fields():
    fields = _numeric_fields()
    assert {"TrainConfig", "ModelConfig", "MeshConfig", "EvalSpec", "SpanConfig"} <= {c for c, _ in fields}
    assert ("TrainConfig", "keep_checkpoints") in fields and ("TextFilesSource", "min_span_words") in fields
    assert len(fields) > 50


def test_every_config_class_is_covered():
    assert set(REQUIRED) == set(CLASSES), "give the minimal arguments of each config class in REQUIRED"
    assert all(dataclasses.is_dataclass(cls) and cls is not CONFIGURABLES.get(n) for n, cls in CLASSES.items())


@pytest.mark.parametrize("cls_name", sorted(CLASSES))
def test_the_minimal_instances_are_valid(cls_name):
    check_bounds(CLASSES[cls_name](**REQUIRED[cls_name]))


@pytest.mark.parametrize("cls_name,field", _numeric_fields())
def test_every_numeric_field_has_bounds(cls_name, field):
    bounds = declared_bounds(CLASSES[cls_name])
    assert field in bounds or f"{cls_name}.{field}" in EXEMPT, (
        f"{cls_name}.{field} is numeric but has no Bound: add it to {cls_name}.BOUNDS (cpt_jax/typecheck.py)."
    )


@pytest.mark.parametrize("cls_name", sorted(CLASSES))
def test_bounds_name_only_fields(cls_name):
    fields = {f.name for f in dataclasses.fields(CLASSES[cls_name])}
    assert set(declared_bounds(CLASSES[cls_name])) <= fields


@pytest.mark.parametrize("cls_name,field,value", _cases())
def test_a_value_just_outside_a_bound_is_refused_naming_the_field(cls_name, field, value):
    with pytest.raises(ValueError) as err:
        CLASSES[cls_name](**{**REQUIRED[cls_name], field: value})
    assert f"{cls_name}.{field}={value!r} is out of range: must be " in str(err.value)


@pytest.mark.parametrize("cls_name,field", _float_fields())
@pytest.mark.parametrize("value", [math.nan, math.inf, -math.inf])
def test_a_float_field_refuses_nan_and_infinity(cls_name, field, value):
    with pytest.raises(ValueError, match=rf"{cls_name}\.{field}={value!r} is not a finite number: must be "):
        CLASSES[cls_name](**{**REQUIRED[cls_name], field: value})


@pytest.mark.parametrize(
    "cls_name,overrides",
    [
        ("TrainConfig", {"keep_checkpoints": 1, "log_every": 1, "checkpoint_every": 1, "grad_cache_chunk_size": 0}),
        ("MeshConfig", {"data": -1, "fsdp": 1, "tensor": 1}),
        ("ModelConfig", {"num_kv_heads": 0, "dropout": 0.0, "scan_unroll": 1}),
        ("OptimizerConfig",
         {"warmup_steps": 0, "clip_norm": 0.0, "weight_decay": 0.0, "end_learning_rate_fraction": 1.0}),
        ("DataConfig", {"prefetch_batches": 0, "num_negatives": 0, "seed": 2**32 - 1}),
        ("SpanConfig", {"gap_words": 0, "max_jaccard": 1.0, "min_span_words": 1, "max_span_words": 1}),
        ("CodeFilesSource", {"max_error_fraction": 0.0}),
        ("EvalSpec", {"folds": 2}),
    ],
)
def test_values_at_the_edges_are_accepted(cls_name, overrides):
    CLASSES[cls_name](**{**REQUIRED[cls_name], **overrides})


def test_the_message_says_the_range_and_the_meaning():
    with pytest.raises(ValueError) as err:
        CLASSES["TrainConfig"](**{**REQUIRED["TrainConfig"], "keep_checkpoints": 0})
    assert str(err.value) == (
        "TrainConfig.keep_checkpoints=0 is out of range: must be >= 1 "
        "(checkpoints kept on disk; 0 would keep none, not even the last)."
    )
    with pytest.raises(ValueError, match=r"DataConfig.seed=4294967296 is out of range: must be in \[0, 2\*\*32 - 1\]"):
        DataConfig(max_len_x=8, max_len_y=8, seed=2**32)


def test_a_mesh_axis_of_zero_or_two_free_axes_are_refused():
    with pytest.raises(ValueError, match=r"MeshConfig.tensor=0 is out of range: each axis size must be positive"):
        CLASSES["MeshConfig"](tensor=0)
    with pytest.raises(ValueError, match=r"MeshConfig: data=-1 and fsdp=-1; .* at most one may be -1"):
        CLASSES["MeshConfig"](data=-1, fsdp=-1)


def test_a_nested_config_of_the_wrong_type_is_named():
    with pytest.raises(TypeError, match=r"TrainConfig.model=3 has type int; expected ModelConfig, e.g. "
                                        r"TrainConfig.model = @ModelConfig\(\)"):
        CLASSES["TrainConfig"](**{**REQUIRED["TrainConfig"], "model": 3})
