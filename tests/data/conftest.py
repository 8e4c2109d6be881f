"""Session fixtures: both stdlib datasets prepared once, and one small tokenizer."""

from __future__ import annotations

import pathlib

import pytest

from cpt_jax.data import builders, pipeline
from cpt_jax.data.tokenizer import Tokenizer


@pytest.fixture(scope="session")
def data_dir(tmp_path_factory: pytest.TempPathFactory) -> str:
    path = tmp_path_factory.mktemp("tfds")
    for name in builders.DATASETS:
        builders.prepare(name, str(path))
    return str(path)


@pytest.fixture(scope="session")
def tokenizer_path(data_dir: str, tmp_path_factory: pytest.TempPathFactory) -> pathlib.Path:
    path = tmp_path_factory.mktemp("tokenizer") / "tok"
    Tokenizer.train(pipeline.iter_training_texts(data_dir, max_texts=600), 500, str(path))
    return path


@pytest.fixture(scope="session")
def tokenizer(tokenizer_path: pathlib.Path) -> Tokenizer:
    return Tokenizer.load(str(tokenizer_path))
