"""Linear probe: separable data is learned, random labels stay at chance, bad inputs fail clearly."""

import numpy as np
import pytest

from cpt_jax.eval.linear_probe import DEFAULT_C_GRID, linear_probe

GRID = (0.1, 1.0, 10.0)  # small grid keeps the test fast


def _blobs(seed: int, n: int) -> tuple[np.ndarray, np.ndarray]:
    """Three well-separated Gaussian clusters in 8-D, labelled by cluster."""
    rng = np.random.default_rng(seed)
    centers = rng.standard_normal((3, 8)) * 5
    y = rng.integers(0, 3, n)
    return centers[y] + rng.standard_normal((n, 8)), y


def _noise(seed: int, n: int) -> tuple[np.ndarray, np.ndarray]:
    """Gaussian features with labels independent of them."""
    rng = np.random.default_rng(seed)
    return rng.standard_normal((n, 8)), rng.integers(0, 3, n)


def test_separable_data_reaches_full_accuracy():
    x, y = _blobs(0, 300)
    result = linear_probe(x[:200], y[:200], x[200:], y[200:], folds=3, c_grid=GRID)
    assert result["accuracy"] == pytest.approx(1.0)
    assert result["cv_accuracy"] == pytest.approx(1.0)
    assert result["best_c"] == 0.1  # ties go to the strongest regularisation


def test_random_labels_stay_near_chance():
    x, y = _noise(1, 600)
    result = linear_probe(x[:300], y[:300], x[300:], y[300:], folds=3, c_grid=GRID)
    assert abs(result["accuracy"] - 1 / 3) < 0.1
    assert result["best_c"] in GRID


def test_deterministic_for_fixed_seed():
    x, y = _noise(2, 120)
    a = linear_probe(x[:80], y[:80], x[80:], y[80:], folds=3, c_grid=GRID, seed=5)
    b = linear_probe(x[:80], y[:80], x[80:], y[80:], folds=3, c_grid=GRID, seed=5)
    assert a == b


def test_dev_set_chooses_c_and_macro_f1():
    x, y = _blobs(4, 300)
    result = linear_probe(x[:150], y[:150], x[200:], y[200:], c_grid=GRID, dev_x=x[150:200], dev_y=y[150:200])
    assert result == {"accuracy": 1.0, "macro_f1": 1.0, "best_c": 0.1, "dev_accuracy": 1.0}
    noise_x, noise_y = _noise(5, 200)
    result = linear_probe(noise_x[:100], noise_y[:100], noise_x[100:], noise_y[100:], folds=3, c_grid=GRID)
    assert 0.0 < result["macro_f1"] < 0.6


def test_default_grid_is_senteval():
    assert DEFAULT_C_GRID == (0.25, 0.5, 1.0, 2.0, 4.0, 8.0)


def test_input_errors():
    x, y = _blobs(3, 40)
    with pytest.raises(ValueError, match="at least 2"):
        linear_probe(x, np.zeros(40, dtype=int), x, y)
    with pytest.raises(ValueError, match="same N"):
        linear_probe(x, y[:-1], x, y)
    with pytest.raises(ValueError, match="use one encoder"):
        linear_probe(x, y, x[:, :4], y)
    with pytest.raises(ValueError, match="lower folds"):
        linear_probe(x, y, x, y, folds=30)
    with pytest.raises(ValueError, match="both dev_x and dev_y"):
        linear_probe(x, y, x, y, dev_x=x)
    with pytest.raises(ValueError, match="dev_x has d=4"):
        linear_probe(x, y, x, y, dev_x=x[:, :4], dev_y=y)
