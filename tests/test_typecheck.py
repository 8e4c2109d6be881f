"""Config field type checks: the first thing every config dataclass does."""

from __future__ import annotations

import dataclasses
from typing import ClassVar

import pytest

from cpt_jax.data.config import DataConfig
from cpt_jax.model import ModelConfig
from cpt_jax.parallel.mesh import MeshConfig
from cpt_jax.train.optimizer import OptimizerConfig
from cpt_jax.train.state import TemperatureConfig
from cpt_jax.typecheck import SEED, Bound, above, at_least, between, check_field_types, declared_bounds


@pytest.mark.parametrize(
    "make,message",
    [
        (lambda: ModelConfig(d_model="abc"), "ModelConfig.d_model='abc' has type str; expected int."),
        (lambda: ModelConfig(num_layers=True), "ModelConfig.num_layers=True has type bool; expected int."),
        (lambda: ModelConfig(dropout="0.1"), "ModelConfig.dropout='0.1' has type str; expected float."),
        (lambda: MeshConfig(data=2.0), "MeshConfig.data=2.0 has type float; expected int."),
        (lambda: OptimizerConfig(decay=3), "OptimizerConfig.decay=3 has type int; expected str."),
        (lambda: DataConfig(seed="1", max_len_x=8, max_len_y=8), "DataConfig.seed='1' has type str; expected int."),
    ],
)
def test_wrong_types_are_named(make, message):
    with pytest.raises(TypeError, match=message.replace("(", r"\(").replace(")", r"\)").replace(".", r"\.")):
        make()


def test_ints_are_accepted_as_floats_and_none_where_optional():
    assert OptimizerConfig(learning_rate=1).learning_rate == 1
    assert TemperatureConfig(init=1, minimum=0, maximum=2).init == 1


def test_bound_descriptions_and_membership():
    assert at_least(1).describe() == ">= 1" and not at_least(1).contains(0) and at_least(1).contains(1)
    assert above(0.0).describe() == "> 0.0" and not above(0.0).contains(0.0)
    half_open = between(0.0, 1.0, hi_open=True)
    assert half_open.describe() == "in [0.0, 1.0)" and not half_open.contains(1.0) and half_open.contains(0.0)
    assert between(0.0, 1.0, lo_open=True).describe() == "in (0.0, 1.0]"
    assert SEED.describe() == "in [0, 2**32 - 1]" and SEED.contains(2**32 - 1) and not SEED.contains(2**32)
    assert Bound(hi=3).describe() == "<= 3" and not Bound(hi=3).contains(4)


@dataclasses.dataclass(frozen=True)
class Base:
    a: int = 1
    BOUNDS: ClassVar[dict[str, Bound]] = {"a": at_least(1, "why a")}

    def __post_init__(self):
        check_field_types(self)


@dataclasses.dataclass(frozen=True)
class Child(Base):
    b: float | None = None
    BOUNDS: ClassVar[dict[str, Bound]] = {"b": at_least(0.5)}


def test_bounds_merge_over_base_classes_and_run_after_the_types():
    assert set(declared_bounds(Child)) == {"a", "b"}
    assert Child(b=None).b is None  # None where optional is not range-checked
    with pytest.raises(ValueError, match=r"^Child\.a=0 is out of range: must be >= 1 \(why a\)\.$"):
        Child(a=0)
    with pytest.raises(ValueError, match=r"^Child\.b=0\.25 is out of range: must be >= 0\.5\.$"):
        Child(b=0.25)
    with pytest.raises(TypeError, match=r"Child\.a='0' has type str"):  # the type first, not a comparison error
        Child(a="0")
