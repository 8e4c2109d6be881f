"""Shared fixtures of the mining tests: a tiny cpt-jax run on disk (seconds to build), and pair /
corpus files whose duplicates and casing exercise the exclusion rules."""

from __future__ import annotations

import json
import os

import pytest
from pydoc_data.topics import topics

from cpt_jax.data.tokenizer import Tokenizer
from cpt_jax.model import ModelConfig
from tests.helpers import random_params, write_run_dir

TINY = ModelConfig(vocab_size=500, d_model=32, num_layers=2, num_heads=4, d_mlp=64, max_len=64)


@pytest.fixture(scope="session")
def tiny_tokenizer(tmp_path_factory) -> Tokenizer:
    return Tokenizer.train(list(topics.values()), 500, str(tmp_path_factory.mktemp("tok") / "tok"))


def make_run(run_dir: str, tokenizer: Tokenizer, seed: int) -> str:
    """A run directory with checkpoint 0 of the tiny model, random parameters drawn from `seed`
    (in numpy: nothing to compile)."""
    return write_run_dir(run_dir, TINY, random_params(TINY, seed, scale=0.2), tokenizer, max_len_x=32, max_len_y=64)


@pytest.fixture(scope="session")
def tiny_run(tmp_path_factory, tiny_tokenizer) -> str:
    return make_run(str(tmp_path_factory.mktemp("run") / "run"), tiny_tokenizer, seed=1)


def write_jsonl(path, rows) -> str:
    os.makedirs(os.path.dirname(str(path)), exist_ok=True)
    with open(path, "w", encoding="utf-8") as f:
        f.writelines(json.dumps(r) + "\n" for r in rows)
    return str(path)


WORDS = ("open read write close file path list dict sort merge split join parse format encode decode "
         "socket thread queue lock event timer number string bytes value key item").split()


def pair_rows(n: int, seed: int = 0) -> list[dict]:
    """n (x, y) pairs of made-up docstrings and functions sharing a vocabulary (so they rank each
    other), with distinct texts."""
    import random

    rng = random.Random(seed)
    rows = []
    for i in range(n):
        words = rng.sample(WORDS, 4)
        x = f"{' '.join(words)} number {i}"
        y = f"def f{i}({words[0]}, {words[1]}):\n    return {words[2]}.{words[3]}({i})"
        rows.append({"x": x, "y": y})
    return rows
