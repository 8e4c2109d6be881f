"""MineConfig and ModelSpec: checked when built, errors naming the field and the fix; every numeric
field has a Bound (as tests/test_config_bounds.py requires of the gin configs)."""

from __future__ import annotations

import dataclasses
import math
import typing

import pytest

from cpt_jax.data.sources import PairedJsonlSource
from cpt_jax.mining import MineConfig, ModelSpec
from cpt_jax.typecheck import declared_bounds

SPEC = ModelSpec(checkpoint="run")
PAIRS = PairedJsonlSource(paths=("p.jsonl",))
REQUIRED = {MineConfig: {"model": SPEC, "pairs": PAIRS, "output": "out/m.jsonl"}, ModelSpec: {"checkpoint": "run"}}


def _numeric(cls):
    hints = typing.get_type_hints(cls)
    return [f.name for f in dataclasses.fields(cls) if {int, float} & set(typing.get_args(hints[f.name]) or (hints[f.name],))]


@pytest.mark.parametrize("cls", [MineConfig, ModelSpec])
def test_every_numeric_field_has_a_bound_that_refuses_the_value_just_outside(cls):
    bounds = declared_bounds(cls)
    for name in _numeric(cls):
        assert name in bounds, f"{cls.__name__}.{name} has no Bound"
        bound = bounds[name]
        is_int = float not in typing.get_args(typing.get_type_hints(cls)[name])
        outside = []
        if bound.lo is not None:
            outside.append(bound.lo if bound.lo_open else (bound.lo - 1 if is_int else math.nextafter(bound.lo, -1e9)))
        if bound.hi is not None:
            outside.append(bound.hi if bound.hi_open else (bound.hi + 1 if is_int else math.nextafter(bound.hi, 1e9)))
        for value in outside:
            with pytest.raises(ValueError, match=rf"{cls.__name__}\.{name}={value!r} is out of range"):
                cls(**{**REQUIRED[cls], name: value})


def test_defaults_and_the_cache_beside_the_output():
    config = MineConfig(**REQUIRED[MineConfig])
    assert config.cache_dir == "out/m.cache" and config.margin == 0.05 and config.max_score is None
    assert config.rules() == {"num_negatives": 8, "min_rank": 1, "max_rank": 100, "margin": 0.05, "max_score": None}
    MineConfig(**REQUIRED[MineConfig], num_negatives=1, min_rank=5, max_rank=5, margin=0.0, max_score=1.0)  # edges


@pytest.mark.parametrize("overrides,message", [
    (dict(min_rank=11, max_rank=10), r"min_rank=11 > max_rank=10: the rank window is empty"),
    (dict(num_negatives=8, min_rank=10, max_rank=12), r"the rank window 10..12 holds only 3 ranks"),
    (dict(output=" "), r"MineConfig.output is empty"),
    (dict(corpus=""), r"MineConfig.corpus is empty"),
    (dict(cache_dir="out/m.jsonl"), r"cache_dir and output are both"),
    (dict(pairs="p.jsonl"), r"MineConfig.pairs='p.jsonl' has type str; expected"),
    (dict(margin="0.1"), r"MineConfig.margin='0.1' has type str"),
])
def test_bad_settings_name_the_field(overrides, message):
    with pytest.raises((TypeError, ValueError), match=message):
        MineConfig(**{**REQUIRED[MineConfig], **overrides})


@pytest.mark.parametrize("fields,message", [
    ({}, "needs exactly one of checkpoint"),
    ({"checkpoint": "r", "sentence_transformer": "s"}, "needs exactly one of checkpoint"),
    ({"sentence_transformer": "s", "step": 3, "instruction": "code"},
     r"ModelSpec.step=3, instruction='code' applies to a cpt-jax run \(--checkpoint\) only"),
    ({"checkpoint": "r", "dtype": "float16"}, r"ModelSpec.dtype='float16'; use one of"),
])
def test_a_model_spec_names_one_model(fields, message):
    with pytest.raises(ValueError, match=message):
        ModelSpec(**fields)
