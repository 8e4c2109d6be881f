"""Linear-probe classification of {"text", "label"} JSONL folders with a fake encoder."""

from __future__ import annotations

import os

import numpy as np
import pytest

from cpt_jax.eval.classification import evaluate_classification
from cpt_jax.eval.linear_probe import DEFAULT_C_GRID
from tests.eval.fakes import HashEncoder, write_jsonl

# Two topics with disjoint vocabularies: hashed bag-of-words vectors separate them linearly.
TOPICS = {
    "sports": ["goal", "match", "team", "score", "coach", "league"],
    "cooking": ["oven", "flour", "sauce", "bake", "spice", "recipe"],
}


def _examples(rng: np.random.Generator, n: int) -> list[dict]:
    labels = rng.choice(sorted(TOPICS), n)
    return [{"text": " ".join(rng.choice(TOPICS[y], 3)), "label": str(y)} for y in labels]


def _folder(tmp_path, seed: int = 0, n_train: int = 60, n_test: int = 40, dev: bool = False, shuffle: bool = False):
    rng = np.random.default_rng(seed)
    splits = {"train": _examples(rng, n_train), "test": _examples(rng, n_test)}
    if dev:
        splits["dev"] = _examples(rng, 20)
    for name, rows in splits.items():
        if shuffle:  # labels independent of the texts
            for row, label in zip(rows, rng.permutation([r["label"] for r in rows])):
                row["label"] = str(label)
        write_jsonl(os.path.join(tmp_path, f"{name}.jsonl"), rows)
    return str(tmp_path)


def test_separable_topics_reach_full_accuracy(tmp_path):
    result = evaluate_classification(HashEncoder(), _folder(tmp_path))
    assert result["accuracy"] == 1.0 and result["macro_f1"] == 1.0
    assert result["best_c"] in DEFAULT_C_GRID and result["cv_accuracy"] == 1.0
    assert (result["num_train"], result["num_test"]) == (60, 40)


def test_shuffled_labels_do_not(tmp_path):
    result = evaluate_classification(HashEncoder(), _folder(tmp_path, n_train=100, n_test=100, shuffle=True))
    assert result["accuracy"] < 0.75
    assert result["best_c"] in DEFAULT_C_GRID


def test_dev_file_selects_c(tmp_path):
    result = evaluate_classification(HashEncoder(), _folder(tmp_path, dev=True))
    assert "dev_accuracy" in result and "cv_accuracy" not in result
    assert result["accuracy"] == 1.0


def test_explicit_paths_integer_labels_and_side(tmp_path):
    train = [{"text": f"{TOPICS['sports'][i % 6]} {TOPICS['sports'][(i + 1) % 6]}", "label": 0} for i in range(6)]
    train += [{"text": f"{TOPICS['cooking'][i % 6]} {TOPICS['cooking'][(i + 2) % 6]}", "label": 1} for i in range(6)]
    write_jsonl(str(tmp_path / "a.jsonl"), train)
    write_jsonl(str(tmp_path / "b.jsonl"), train[::2])
    enc = HashEncoder()
    files = {"train": str(tmp_path / "a.jsonl"), "test": str(tmp_path / "b.jsonl")}
    result = evaluate_classification(enc, files, folds=3)
    assert result["accuracy"] == 1.0
    assert {side for side, _ in enc.calls} == {"document"}


def test_unseen_test_label_warns(tmp_path):
    folder = _folder(tmp_path)
    rows = [{"text": "goal match", "label": "sports"}, {"text": "x", "label": "news"}]
    write_jsonl(os.path.join(folder, "test.jsonl"), rows)
    with pytest.warns(UserWarning, match="1 test examples have labels never seen"):
        result = evaluate_classification(HashEncoder(), folder)
    assert result["accuracy"] == 0.5


@pytest.mark.parametrize(
    "rows, match",
    [
        ('{"text": "a", "label": "x"}\n{"text": "b" "label": "y"}\n', r"train.jsonl:2: not valid JSON"),
        ('{"text": "a"}\n', r"train.jsonl:1: missing field 'label'"),
        ('{"text": "a", "label": 1.5}\n', r"field 'label' must be str or int"),
        ('{"text": "a", "label": true}\n', r"field 'label' must be str or int"),
        ('{"text": "a", "label": 1}\n' * 10, "Labels mix types"),
        ("", "has no examples"),
    ],
)
def test_malformed_files(tmp_path, rows, match):
    folder = _folder(tmp_path)
    with open(os.path.join(folder, "train.jsonl"), "w") as f:
        f.write(rows)
    with pytest.raises(ValueError, match=match):
        evaluate_classification(HashEncoder(), folder)


def test_missing_inputs(tmp_path):
    with pytest.raises(FileNotFoundError, match="not a folder"):
        evaluate_classification(HashEncoder(), str(tmp_path / "nope"))
    folder = _folder(tmp_path)
    os.remove(os.path.join(folder, "test.jsonl"))
    with pytest.raises(FileNotFoundError, match="test.jsonl: the test examples"):
        evaluate_classification(HashEncoder(), folder)
    with pytest.raises(ValueError, match="No test file"):
        evaluate_classification(HashEncoder(), {"train": os.path.join(folder, "train.jsonl")})
