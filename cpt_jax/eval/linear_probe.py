"""Linear-probe classification on frozen embeddings, SentEval style.

A logistic-regression classifier (scikit-learn, L2 penalty) is trained on the
frozen features. Its inverse regularisation strength C is chosen by stratified
k-fold cross-validation on the training set only; the model is then refit on
all training data and scored once on the test set.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
from sklearn.linear_model import LogisticRegression
from sklearn.model_selection import StratifiedKFold

DEFAULT_C_GRID: tuple[float, ...] = tuple(2.0**t for t in range(-4, 5))


def _check(x: np.ndarray, y: np.ndarray, name: str) -> None:
    if x.ndim != 2 or y.ndim != 1 or x.shape[0] != y.shape[0]:
        raise ValueError(
            f"{name}_x must be [N, d] and {name}_y [N] with the same N; got {x.shape} and {y.shape}."
        )
    if not np.isfinite(x).all():
        raise ValueError(f"{name}_x contains NaN/inf; check the embeddings.")


def _fit(x: np.ndarray, y: np.ndarray, c: float, max_iter: int) -> LogisticRegression:
    return LogisticRegression(C=c, max_iter=max_iter).fit(x, y)


def linear_probe(
    train_x: np.ndarray,
    train_y: np.ndarray,
    test_x: np.ndarray,
    test_y: np.ndarray,
    folds: int = 5,
    seed: int = 0,
    c_grid: Sequence[float] = DEFAULT_C_GRID,
    max_iter: int = 1000,
) -> dict[str, float]:
    """Cross-validate C on train, refit on all of train, report test accuracy.

    Args:
      train_x: ``[N, d]`` training embeddings.
      train_y: ``[N]`` training labels (any hashable class values).
      test_x: ``[M, d]`` test embeddings.
      test_y: ``[M]`` test labels.
      folds: number of stratified cross-validation folds (>= 2).
      seed: shuffling seed for the folds.
      c_grid: candidate inverse L2 strengths; ties go to the smallest C
        (strongest regularisation).
      max_iter: L-BFGS iteration cap per fit.

    Returns:
      ``{"accuracy": test accuracy, "best_c": chosen C,
      "cv_accuracy": mean validation accuracy of the chosen C}``.
    """
    train_x, train_y = np.asarray(train_x), np.asarray(train_y)
    test_x, test_y = np.asarray(test_x), np.asarray(test_y)
    _check(train_x, train_y, "train")
    _check(test_x, test_y, "test")
    if train_x.shape[1] != test_x.shape[1]:
        raise ValueError(f"train_x has d={train_x.shape[1]} but test_x has d={test_x.shape[1]}; use one encoder.")
    if folds < 2:
        raise ValueError(f"folds must be >= 2 for cross-validation, got {folds}.")
    if not c_grid:
        raise ValueError("c_grid is empty; pass at least one C value.")
    classes, counts = np.unique(train_y, return_counts=True)
    if classes.size < 2:
        raise ValueError(f"train_y has {classes.size} class(es); a classifier needs at least 2.")
    if counts.min() < folds:
        raise ValueError(
            f"Class {classes[counts.argmin()]!r} has only {counts.min()} training examples, fewer than "
            f"folds={folds}; lower folds or add examples."
        )

    splits = list(StratifiedKFold(n_splits=folds, shuffle=True, random_state=seed).split(train_x, train_y))
    cv = []
    for c in sorted(c_grid):
        accs = [
            _fit(train_x[tr], train_y[tr], c, max_iter).score(train_x[va], train_y[va]) for tr, va in splits
        ]
        cv.append(float(np.mean(accs)))
    best = int(np.argmax(cv))  # first maximum, i.e. the smallest C among ties
    best_c = sorted(c_grid)[best]
    model = _fit(train_x, train_y, best_c, max_iter)
    return {"accuracy": float(model.score(test_x, test_y)), "best_c": float(best_c), "cv_accuracy": cv[best]}
