"""create_train_state: deterministic for a seed, and the same values whatever the mesh."""

from __future__ import annotations

import jax
import numpy as np
import optax
import pytest

from cpt_jax.parallel.rules import DEFAULT_RULES
from cpt_jax.train.state import TemperatureConfig, create_train_state
from tests.helpers import TEMPERATURE, TINY, created_state, host, mesh, tx


def _assert_equal(a, b):
    assert jax.tree.structure(a) == jax.tree.structure(b)
    jax.tree.map(np.testing.assert_array_equal, host(a), host(b))


def test_fresh_state():
    state, _ = created_state(TINY, (1, 1, 1))
    assert int(state.step) == 0
    assert state.params["log_temperature"].dtype == np.float32
    np.testing.assert_allclose(float(state.params["log_temperature"]), TEMPERATURE.init, rtol=1e-7)
    for moment in ("mu", "nu"):
        assert not any(np.any(np.asarray(x)) for x in jax.tree.leaves(optax.tree_utils.tree_get(state.opt_state, moment)))
    kernel = np.asarray(state.params["encoder"]["blocks"]["mlp"]["wi"]["kernel"])
    assert kernel.shape == (2, 32, 64) and 0.015 < kernel.std() < 0.025  # normal(0.02) init
    assert not np.array_equal(kernel[0], kernel[1])  # scanned layers get their own init


def test_deterministic_for_a_seed():
    """A second creation with the same seed (on another mesh) gives the same values."""
    cached, _ = created_state(TINY, (1, 1, 1), 0)
    again, _ = create_train_state(TINY, TEMPERATURE, tx(), mesh(data=8), DEFAULT_RULES, 0)
    _assert_equal(again, cached)


def test_same_values_on_one_and_eight_devices():
    one, _ = created_state(TINY, (1, 1, 1), 0)
    eight, shardings = created_state(TINY, (2, 2, 2), 0)
    assert len(eight.params["encoder"]["token_embedding"]["embedding"].sharding.device_set) == 8
    assert jax.tree.structure(shardings) == jax.tree.structure(eight)
    _assert_equal(eight, one)


def test_temperature_config_validation():
    with pytest.raises(ValueError, match=r"TemperatureConfig.init=5.0000 must lie in \[minimum=0.0000, maximum=4.6052\]"):
        TemperatureConfig(init=5.0)
    assert TemperatureConfig(init=0.0).init == 0.0
