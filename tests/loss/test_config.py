"""LossConfig: checked fields, and bound through gin as a field of TrainConfig."""

from __future__ import annotations

import gin
import pytest

from cpt_jax.cli import flags
from cpt_jax.loss import LossConfig


@pytest.fixture(autouse=True)
def _clean_gin():
    gin.clear_config()
    yield
    gin.clear_config()


def test_defaults_mask_nothing():
    assert not LossConfig().masks
    assert LossConfig(mask_duplicates=True).masks and LossConfig(similarity_margin=0.0).masks


def test_bad_values_name_the_field():
    with pytest.raises(TypeError, match=r"LossConfig\.mask_duplicates='yes'"):
        LossConfig(mask_duplicates="yes")
    with pytest.raises(ValueError, match=r"LossConfig\.similarity_margin=3\.0 is out of range: must be in \[-2\.0, 2\.0\]"):
        LossConfig(similarity_margin=3.0)
    with pytest.raises(ValueError, match=r"LossConfig\.similarity_margin=nan is not a finite number"):
        LossConfig(similarity_margin=float("nan"))


def test_gin_binds_the_loss_of_a_train_config():
    flags.parse_flags([
        "--gin_file=configs/experiments/tiny_text.gin",
        "--gin.TrainConfig.loss=@LossConfig()",
        "--gin.LossConfig.mask_duplicates=True",
        "--gin.LossConfig.similarity_margin=0.1",
    ])
    assert flags.build("TrainConfig").loss == LossConfig(mask_duplicates=True, similarity_margin=0.1)


def test_loss_config_bindings_alone_take_effect():
    """Without TrainConfig.loss = @LossConfig() gin would apply them to no LossConfig at all."""
    flags.parse_flags(["--gin_file=configs/experiments/tiny_text.gin", "--gin.LossConfig.mask_duplicates=True"])
    assert flags.build("TrainConfig").loss == LossConfig(mask_duplicates=True)
    assert "LossConfig.mask_duplicates = True" in flags.operative_config()


def test_an_unbound_loss_is_the_default():
    flags.parse_flags(["--gin_file=configs/experiments/tiny_text.gin"])
    assert flags.build("TrainConfig").loss == LossConfig()


def test_a_misspelt_field_gets_a_suggestion():
    with pytest.raises(ValueError, match=r"Did you mean LossConfig\.mask_duplicates\?"):
        flags.parse_flags(["--gin.LossConfig.mask_duplicate=True"])
