"""EvalSpec: frozen, checked when built; each bad field gives an error that names it."""

from __future__ import annotations

import dataclasses

import pytest

from cpt_jax.data import builders
from cpt_jax.eval.spec import DEFAULT_DATA_DIR, EvalSpec


def test_defaults_name_every_pair_dataset():
    spec = EvalSpec()
    assert spec.tasks == tuple(builders.DATASETS) and spec.data_dir == DEFAULT_DATA_DIR and spec.split == "test"
    assert (spec.beir, spec.classification, spec.baselines) == ((), (), True)
    assert (spec.batch_size, spec.chunk_size, spec.folds) == (128, 10_000, 5)


def test_frozen_lists_become_tuples_and_replace_revalidates(tmp_path):
    spec = EvalSpec(tasks=[], beir=[str(tmp_path)])
    assert spec.tasks == () and spec.beir == (str(tmp_path),)
    with pytest.raises(dataclasses.FrozenInstanceError):
        spec.split = "dev"  # type: ignore[misc]
    assert dataclasses.replace(spec, data_dir="elsewhere").data_dir == "elsewhere"
    with pytest.raises(ValueError, match=r"EvalSpec\.chunk_size=0 is out of range: must be >= 1"):
        dataclasses.replace(spec, chunk_size=0)


@pytest.mark.parametrize(
    "fields, error, message",
    [
        ({"tasks": ("nope",)}, ValueError, r"EvalSpec\.tasks: unknown pair dataset\(s\) \['nope'\]; choose from"),
        ({"tasks": "stdlib_code"}, TypeError, r"EvalSpec\.tasks='stdlib_code' must be a tuple of strings"),
        ({"tasks": ("stdlib_code", "stdlib_code")}, ValueError, r"EvalSpec\.tasks=.* names an entry twice"),
        ({"tasks": ("",)}, TypeError, r"EvalSpec\.tasks holds \[''\]; every entry must be a non-empty string"),
        ({"data_dir": ""}, ValueError, r"EvalSpec\.data_dir='' is empty"),
        ({"data_dir": 3}, TypeError, r"EvalSpec\.data_dir=3 has type int; expected str"),
        ({"split": " "}, ValueError, r"EvalSpec\.split=' ' is empty"),
        ({"beir": ("/no/such/folder",)}, ValueError, r"EvalSpec\.beir: /no/such/folder is not a folder"),
        ({"beir": "/tmp"}, TypeError, r"EvalSpec\.beir='/tmp' must be a tuple of strings, e.g\. beir=\('/tmp',\)"),
        ({"classification": ("/no/such",)}, ValueError,
         r"EvalSpec\.classification: /no/such is neither an existing folder nor a built-in task; pass a folder .*"
         r"or one of the built-in tasks \('stdlib_packages',\)\.$"),
        ({"classification": ("stdlib_package",)}, ValueError,
         r"EvalSpec\.classification: stdlib_package is neither .* Did you mean 'stdlib_packages'\?"),
        ({"classification": (1,)}, TypeError, r"EvalSpec\.classification holds \[1\]"),
        ({"baselines": "yes"}, TypeError, r"EvalSpec\.baselines='yes' has type str; expected bool"),
        ({"batch_size": 0}, ValueError, r"EvalSpec\.batch_size=0 is out of range: must be >= 1"),
        ({"batch_size": 8.0}, TypeError, r"EvalSpec\.batch_size=8\.0 has type float; expected int"),
        ({"chunk_size": -1}, ValueError, r"EvalSpec\.chunk_size=-1 is out of range: must be >= 1"),
        ({"folds": 1}, ValueError, r"EvalSpec\.folds=1 is out of range: must be >= 2"),
        ({"folds": True}, TypeError, r"EvalSpec\.folds=True has type bool; expected int"),
    ],
)
def test_each_bad_field_is_named(fields, error, message):
    with pytest.raises(error, match=message):
        EvalSpec(**fields)


def test_nothing_to_evaluate():
    with pytest.raises(ValueError, match=r"nothing to evaluate; tasks, beir and classification are all empty"):
        EvalSpec(tasks=())


def test_classification_takes_folders_and_built_in_names(tmp_path):
    """A built-in name is accepted before anything is built (the suite builds it under data_dir)."""
    spec = EvalSpec(tasks=(), classification=("stdlib_packages", str(tmp_path)), data_dir=str(tmp_path / "tfds"))
    assert spec.classification == ("stdlib_packages", str(tmp_path))
    assert not (tmp_path / "tfds").exists()
