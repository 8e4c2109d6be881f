"""Config field type checks: the first thing every config dataclass does."""

from __future__ import annotations

import pytest

from cpt_jax.data.config import DataConfig
from cpt_jax.model import ModelConfig
from cpt_jax.parallel.mesh import MeshConfig
from cpt_jax.train.optimizer import OptimizerConfig
from cpt_jax.train.state import TemperatureConfig


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
