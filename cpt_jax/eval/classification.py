"""Linear-probe classification of {"text", "label"} JSONL files on frozen embeddings.

A task is a folder with ``train.jsonl`` and ``test.jsonl`` (and optionally ``dev.jsonl``),
or explicit paths. Texts are encoded with side="document"; labels are JSON strings or
integers, one type per task. The probe itself (C chosen on dev, else by 5-fold CV on
train, over SentEval's grid) is :func:`cpt_jax.eval.linear_probe.linear_probe`.
"""

from __future__ import annotations

import os
import warnings
from collections.abc import Mapping, Sequence

import numpy as np

from cpt_jax.eval.common import Encoder, encode_checked, field, iter_jsonl, require_file
from cpt_jax.eval.linear_probe import DEFAULT_C_GRID, linear_probe

SPLITS = ("train", "dev", "test")


def read_labelled(path: str) -> tuple[list[str], list[str | int]]:
    """``(texts [n], labels [n])`` from a {"text", "label"} JSONL file; a bad line raises with its number."""
    require_file(path, 'labelled examples, one {"text", "label"} per line')
    texts: list[str] = []
    labels: list[str | int] = []
    for line_no, obj in iter_jsonl(path):
        texts.append(field(obj, "text", path, line_no))
        labels.append(field(obj, "label", path, line_no, (str, int)))
    if not texts:
        raise ValueError(f"{path} has no examples.")
    return texts, labels


def classification_files(data: str | Mapping[str, str]) -> dict[str, str]:
    """``{"train": path, "test": path[, "dev": path]}`` from a folder or an explicit mapping."""
    if isinstance(data, str):
        if not os.path.isdir(data):
            raise FileNotFoundError(f"{data} is not a folder; expected one with train.jsonl and test.jsonl.")
        files = {s: os.path.join(data, f"{s}.jsonl") for s in SPLITS}
        if not os.path.isfile(files["dev"]):
            del files["dev"]
    else:
        unknown = set(data) - set(SPLITS)
        if unknown:
            raise ValueError(f"Unknown split(s) {sorted(unknown)}; use {SPLITS}.")
        files = dict(data)
    for split in ("train", "test"):
        if split not in files:
            raise ValueError(f"No {split} file given; pass a path for {split!r}.")
        require_file(files[split], f"the {split} examples, one {{\"text\", \"label\"}} per line")
    return files


def evaluate_classification(
    encoder: Encoder,
    data: str | Mapping[str, str],
    batch_size: int = 128,
    folds: int = 5,
    c_grid: Sequence[float] = DEFAULT_C_GRID,
    seed: int = 0,
) -> dict[str, float]:
    """Test accuracy and macro-F1 of a logistic-regression probe on ``encoder``'s embeddings.

    Args:
      encoder: has ``encode(texts, side, batch_size) -> float32 [n, d]``.
      data: a folder with train.jsonl, test.jsonl and optional dev.jsonl, or
        ``{"train": path, "test": path[, "dev": path]}``.
      batch_size: passed to ``encoder.encode``.
      folds: cross-validation folds for choosing C when there is no dev set.
      c_grid: candidate C values.
      seed: fold shuffling seed.

    Returns:
      :func:`linear_probe`'s metrics plus ``num_train`` and ``num_test``.
    """
    examples = {split: read_labelled(path) for split, path in classification_files(data).items()}
    types = {type(label).__name__ for _, labels in examples.values() for label in labels}
    if len(types) > 1:
        raise ValueError(f"Labels mix types {sorted(types)}; use one type (all strings or all integers).")
    unseen = set(examples["test"][1]) - set(examples["train"][1])
    if unseen:
        count = sum(label in unseen for label in examples["test"][1])
        warnings.warn(
            f"{count} test examples have labels never seen in training ({sorted(unseen)[:5]}); "
            "they can only be misclassified.",
            stacklevel=2,
        )
    x = {split: encode_checked(encoder, texts, "document", batch_size) for split, (texts, _) in examples.items()}
    y = {split: np.asarray(labels) for split, (_, labels) in examples.items()}
    result = linear_probe(
        x["train"], y["train"], x["test"], y["test"], folds=folds, seed=seed, c_grid=c_grid,
        dev_x=x.get("dev"), dev_y=y.get("dev"),
    )
    return {**result, "num_train": len(y["train"]), "num_test": len(y["test"])}
