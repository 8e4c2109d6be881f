"""Linear-probe classification on frozen embeddings, SentEval style.

A logistic-regression classifier (scikit-learn, L2 penalty, L-BFGS) is trained on the
frozen features. Its inverse regularisation strength C is chosen on the training data
only, as SentEval does with its scikit-learn classifier: from ``2**-2 .. 2**3``, by the
accuracy on the dev set when one is given (SentEval's SplitClassifier) and otherwise by
stratified 5-fold cross-validation on the training set (its KFold classifiers); ties go
to the smallest C. The model is then refit on all training data and scored once on the
test set: accuracy and macro-F1.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
from sklearn.linear_model import LogisticRegression
from sklearn.metrics import f1_score
from sklearn.model_selection import StratifiedKFold

# SentEval's grid for its scikit-learn LogisticRegression: [2**t for t in range(-2, 4)].
DEFAULT_C_GRID: tuple[float, ...] = tuple(2.0**t for t in range(-2, 4))


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
    dev_x: np.ndarray | None = None,
    dev_y: np.ndarray | None = None,
) -> dict[str, float]:
    """Choose C on dev (or by CV on train), refit on all of train, score on test.

    Args:
      train_x: ``[N, d]`` training embeddings.
      train_y: ``[N]`` training labels (any hashable class values, e.g. strings).
      test_x: ``[M, d]`` test embeddings.
      test_y: ``[M]`` test labels.
      folds: number of stratified cross-validation folds (>= 2); unused with a dev set.
      seed: shuffling seed for the folds.
      c_grid: candidate inverse L2 strengths; ties go to the smallest C
        (strongest regularisation).
      max_iter: L-BFGS iteration cap per fit.
      dev_x: optional ``[V, d]`` dev embeddings; C is then chosen by dev accuracy.
      dev_y: ``[V]`` dev labels, with ``dev_x``.

    Returns:
      ``{"accuracy": test accuracy, "macro_f1": test macro-F1 (unweighted mean of per-class
      F1 over the classes in test labels or predictions; 0 for a class never predicted),
      "best_c": chosen C, and "dev_accuracy" or "cv_accuracy": selection accuracy of that C}``.
    """
    train_x, train_y = np.asarray(train_x), np.asarray(train_y)
    test_x, test_y = np.asarray(test_x), np.asarray(test_y)
    _check(train_x, train_y, "train")
    _check(test_x, test_y, "test")
    if train_x.shape[1] != test_x.shape[1]:
        raise ValueError(f"train_x has d={train_x.shape[1]} but test_x has d={test_x.shape[1]}; use one encoder.")
    if (dev_x is None) != (dev_y is None):
        raise ValueError("Pass both dev_x and dev_y, or neither.")
    if not c_grid:
        raise ValueError("c_grid is empty; pass at least one C value.")
    classes, counts = np.unique(train_y, return_counts=True)
    if classes.size < 2:
        raise ValueError(f"train_y has {classes.size} class(es); a classifier needs at least 2.")
    grid = sorted(c_grid)
    if dev_x is not None:
        dev_x, dev_y = np.asarray(dev_x), np.asarray(dev_y)
        _check(dev_x, dev_y, "dev")
        if dev_x.shape[1] != train_x.shape[1]:
            raise ValueError(f"dev_x has d={dev_x.shape[1]} but train_x has d={train_x.shape[1]}; use one encoder.")
        cv = [float(_fit(train_x, train_y, c, max_iter).score(dev_x, dev_y)) for c in grid]
        selection = "dev_accuracy"
    else:
        if folds < 2:
            raise ValueError(f"folds must be >= 2 for cross-validation, got {folds}.")
        if counts.min() < folds:
            raise ValueError(
                f"Class {classes[counts.argmin()]!r} has only {counts.min()} training examples, fewer than "
                f"folds={folds}; lower folds or add examples."
            )
        splits = list(StratifiedKFold(n_splits=folds, shuffle=True, random_state=seed).split(train_x, train_y))
        cv = [
            float(np.mean([_fit(train_x[t], train_y[t], c, max_iter).score(train_x[v], train_y[v]) for t, v in splits]))
            for c in grid
        ]
        selection = "cv_accuracy"
    best = int(np.argmax(cv))  # first maximum, i.e. the smallest C among ties
    model = _fit(train_x, train_y, grid[best], max_iter)
    pred = model.predict(test_x)
    return {
        "accuracy": float(np.mean(pred == test_y)),
        "macro_f1": float(f1_score(test_y, pred, average="macro", zero_division=0.0)),
        "best_c": float(grid[best]),
        selection: cv[best],
    }
