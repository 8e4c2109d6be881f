"""Hugging Face base-model weights <-> the encoder's parameter tree, and checkpoint directories.

The mapping is pure NumPy and exact: a checkpoint of GPT2Model, LlamaModel, Qwen2Model,
MistralModel or BertModel (or of a *ForXxx model around one; heads are ignored) becomes a
parameter tree on which Encoder computes transformers' last_hidden_state, and back.

Two BERT details are not one-to-one, both exact for the encoder's outputs:
  - token_type_embeddings row 0 is added to every position (the encoder has no token types),
    so import folds it into position_embedding; export writes a token-type table of zeros.
  - the pooler (tanh(dense(h[CLS]))) is no part of last_hidden_state; import drops it and export
    writes it zero-filled, so AutoModel loads without newly initialised (random) weights and
    its pooler_output is a deterministic 0 rather than noise that looks trained.
"""

from __future__ import annotations

import dataclasses
import json
import os
import re
from collections.abc import Mapping
from typing import Any, NamedTuple

import jax
import numpy as np

from cpt_jax.interop.hf_families import (
    PREFIXES,
    export_vocab_size,
    hf_config_from_model_config,
    match_family,
    model_config_from_hf,
)
from cpt_jax.model.config import ModelConfig
from cpt_jax.model.embedding import init_params

__all__ = [
    "hf_config_from_model_config",
    "load_hf_checkpoint",
    "model_config_from_hf",
    "params_from_hf",
    "params_to_hf",
    "save_hf_checkpoint",
]

Params = dict[str, Any]
StateDict = dict[str, np.ndarray]

# Base-model entries that hold no learned weights the encoder needs (buffers, BERT's pooler).
_IGNORED = re.compile(r"(^|\.)position_ids$|\.attn\.(masked_)?bias$|rotary_emb\.inv_freq$|^pooler\.")
# Task heads around the base model, in checkpoints saved without the base-model prefix.
_HEADS = re.compile(r"^(lm_head|cls|score|classifier|qa_outputs)\.")


class _Entry(NamedTuple):
    hf: str  # key in the base model's state dict
    path: tuple[str, ...]  # path in the unscanned (block_i) parameter tree
    hf_shape: tuple[int, ...]
    transpose: bool  # torch nn.Linear stores [out, in]; the encoder's kernels are [in, ...]


def _entries(cfg: ModelConfig, family: str) -> list[_Entry]:
    """Every encoder parameter with its Hugging Face key; GPT-2's fused c_attn appears split into query/key/value."""
    d, m, v, hd = cfg.d_model, cfg.d_mlp, cfg.vocab_size, cfg.head_dim
    q_width, kv_width = cfg.num_heads * hd, cfg.kv_heads * hd
    out: list[_Entry] = []

    def add(hf: str, path: tuple[str, ...], shape: tuple[int, ...], transpose: bool = False) -> None:
        out.append(_Entry(hf, path, shape, transpose))

    def norm(hf: str, path: tuple[str, ...]) -> None:
        add(f"{hf}.weight", (*path, "scale"), (d,))
        if cfg.norm == "layernorm":
            add(f"{hf}.bias", (*path, "bias"), (d,))

    def linear(hf: str, path: tuple[str, ...], shape: tuple[int, int], bias: bool, bias_name: str = "bias") -> None:
        add(f"{hf}.weight", path, shape, transpose=True)
        if bias:
            add(f"{hf}.bias", (*path[:-1], bias_name), (shape[0],))

    tok = ("token_embedding", "embedding")
    for i in range(cfg.num_layers):
        b = (f"block_{i}",)
        att, mlp = (*b, "attention"), (*b, "mlp")
        if family == "gpt2":  # Conv1D stores [in, out]: no transpose
            p = f"h.{i}."
            norm(p + "ln_1", (*b, "ln_attention"))
            for name in ("query", "key", "value"):
                add(f"{p}attn.c_attn.{name}.weight", (*att, f"{name}_kernel"), (d, d))
                add(f"{p}attn.c_attn.{name}.bias", (*att, f"{name}_bias"), (d,))
            add(p + "attn.c_proj.weight", (*att, "out_kernel"), (d, d))
            add(p + "attn.c_proj.bias", (*att, "out_bias"), (d,))
            norm(p + "ln_2", (*b, "ln_mlp"))
            add(p + "mlp.c_fc.weight", (*mlp, "wi", "kernel"), (d, m))
            add(p + "mlp.c_fc.bias", (*mlp, "wi", "bias"), (m,))
            add(p + "mlp.c_proj.weight", (*mlp, "wo", "kernel"), (m, d))
            add(p + "mlp.c_proj.bias", (*mlp, "wo", "bias"), (d,))
        elif family == "bert":
            p = f"encoder.layer.{i}."
            for name in ("query", "key", "value"):
                linear(f"{p}attention.self.{name}", (*att, f"{name}_kernel"), (d, d), True, f"{name}_bias")
            linear(p + "attention.output.dense", (*att, "out_kernel"), (d, d), True, "out_bias")
            norm(p + "attention.output.LayerNorm", (*b, "ln_attention"))
            linear(p + "intermediate.dense", (*mlp, "wi", "kernel"), (m, d), True)
            linear(p + "output.dense", (*mlp, "wo", "kernel"), (d, m), True)
            norm(p + "output.LayerNorm", (*b, "ln_mlp"))
        else:  # llama, qwen2
            p = f"layers.{i}."
            norm(p + "input_layernorm", (*b, "ln_attention"))
            for name, proj, width in (("query", "q", q_width), ("key", "k", kv_width), ("value", "v", kv_width)):
                linear(f"{p}self_attn.{proj}_proj", (*att, f"{name}_kernel"), (width, d), cfg.qkv_bias, f"{name}_bias")
            linear(p + "self_attn.o_proj", (*att, "out_kernel"), (d, q_width), cfg.out_bias, "out_bias")
            norm(p + "post_attention_layernorm", (*b, "ln_mlp"))
            for proj, name, shape in (("gate", "wi_gate", (m, d)), ("up", "wi", (m, d)), ("down", "wo", (d, m))):
                linear(f"{p}mlp.{proj}_proj", (*mlp, name, "kernel"), shape, cfg.mlp_bias)
    if family == "gpt2":
        add("wte.weight", tok, (v, d))
        add("wpe.weight", ("position_embedding",), (cfg.max_len, d))
        norm("ln_f", ("ln_final",))
    elif family == "bert":
        add("embeddings.word_embeddings.weight", tok, (v, d))
        add("embeddings.position_embeddings.weight", ("position_embedding",), (cfg.max_len, d))
        norm("embeddings.LayerNorm", ("ln_embedding",))
    else:
        add("embed_tokens.weight", tok, (v, d))
        norm("norm", ("ln_final",))
    return out


def _encoder_shapes(cfg: ModelConfig) -> dict[tuple[str, ...], tuple[int, ...]]:
    """{path: shape} of the unscanned parameter tree, from the module itself (never allocated)."""
    flat_cfg = dataclasses.replace(cfg, scan_layers=False, remat="none")
    tree = jax.eval_shape(lambda: init_params(flat_cfg, jax.random.key(0)))
    return {tuple(k.key for k in path): tuple(x.shape) for path, x in jax.tree_util.tree_flatten_with_path(tree)[0]}


def _base_model(family: str, state_dict: Mapping[str, Any]) -> StateDict:
    """The base model's entries as float32 arrays, family prefix stripped, TF-era gamma/beta renamed."""
    prefix = PREFIXES[family]
    if any(k.startswith(prefix) for k in state_dict):
        items = {k[len(prefix):]: x for k, x in state_dict.items() if k.startswith(prefix)}
    else:
        items = {k: x for k, x in state_dict.items() if not _HEADS.match(k)}
    renamed = {re.sub(r"LayerNorm\.gamma$", "LayerNorm.weight", re.sub(r"LayerNorm\.beta$", "LayerNorm.bias", k)): x
               for k, x in items.items()}
    return {k: np.asarray(x, np.float32) for k, x in renamed.items() if not _IGNORED.search(k)}


def _split_family_tensors(cfg: ModelConfig, family: str, sd: StateDict) -> None:
    """In place: GPT-2's fused c_attn into query/key/value; BERT's token-type row 0 into the positions."""
    if family == "gpt2":
        for i in range(cfg.num_layers):
            for kind in ("weight", "bias"):
                fused = sd.pop(f"h.{i}.attn.c_attn.{kind}", None)
                if fused is not None:
                    for name, part in zip(("query", "key", "value"), np.split(fused, 3, axis=-1)):
                        sd[f"h.{i}.attn.c_attn.{name}.{kind}"] = part
    elif family == "bert":
        token_types = sd.pop("embeddings.token_type_embeddings.weight", None)
        if token_types is not None and "embeddings.position_embeddings.weight" in sd:
            sd["embeddings.position_embeddings.weight"] = sd["embeddings.position_embeddings.weight"] + token_types[0]


def _join_family_tensors(cfg: ModelConfig, family: str, sd: StateDict) -> None:
    """In place: the inverse of _split_family_tensors, plus BERT's zero-filled pooler."""
    if family == "gpt2":
        for i in range(cfg.num_layers):
            for kind in ("weight", "bias"):
                parts = [sd.pop(f"h.{i}.attn.c_attn.{name}.{kind}") for name in ("query", "key", "value")]
                sd[f"h.{i}.attn.c_attn.{kind}"] = np.concatenate(parts, axis=-1)
    elif family == "bert":
        d = cfg.d_model
        sd["embeddings.token_type_embeddings.weight"] = np.zeros((2, d), np.float32)
        sd["pooler.dense.weight"] = np.zeros((d, d), np.float32)
        sd["pooler.dense.bias"] = np.zeros((d,), np.float32)


def _nest(flat: dict[tuple[str, ...], np.ndarray], cfg: ModelConfig) -> Params:
    tree: Params = {}
    for path, x in flat.items():
        node = tree
        for key in path[:-1]:
            node = node.setdefault(key, {})
        node[path[-1]] = x
    if cfg.scan_layers:  # block_i trees stacked on a leading layer axis, as nn.scan lays them out
        blocks = [tree.pop(f"block_{i}") for i in range(cfg.num_layers)]
        tree["blocks"] = jax.tree.map(lambda *xs: np.stack(xs), *blocks)
    return tree


def params_from_hf(cfg: ModelConfig, state_dict: Mapping[str, Any]) -> Params:
    """Encoder parameters (float32 NumPy, the init_params tree of cfg) from a Hugging Face state dict.

    state_dict: key -> array, with or without the family prefix ("transformer.", "model.", "bert.");
    buffers, the BERT pooler and task heads are ignored. ValueError for missing, misshapen or
    unexpected weights (a checkpoint with parts cfg does not represent).
    """
    family = match_family(cfg)
    sd = _base_model(family, state_dict)
    _split_family_tensors(cfg, family, sd)
    shapes, flat, missing = _encoder_shapes(cfg), {}, []
    for e in _entries(cfg, family):
        if e.hf not in sd:
            missing.append(re.sub(r"c_attn\.(query|key|value)\.", "c_attn.", e.hf))  # GPT-2: name the fused key
            continue
        x = sd.pop(e.hf)
        if x.shape != e.hf_shape:
            raise ValueError(f"Weight {e.hf} has shape {x.shape}; this ModelConfig needs {e.hf_shape}.")
        flat[e.path] = np.ascontiguousarray((x.T if e.transpose else x).reshape(shapes[e.path]))
    if missing:
        missing = list(dict.fromkeys(missing))
        raise ValueError(
            f"The {family} state dict lacks {len(missing)} weights this ModelConfig needs, e.g. {missing[:5]}."
        )
    if sd:
        raise ValueError(f"The {family} state dict has weights this ModelConfig does not represent: {sorted(sd)[:8]}.")
    return _nest(flat, cfg)


def params_to_hf(cfg: ModelConfig, params: Params, vocab_size: int | None = None) -> StateDict:
    """The Hugging Face base model's state dict (float32 NumPy, keys without prefix) for cfg's family.

    params: the encoder tree (scanned or not, as cfg says; NumPy or jax arrays). vocab_size drops
    the token-table rows past it (padding); defaults to cfg.vocab_size.
    """
    family, vocab = match_family(cfg), export_vocab_size(cfg, vocab_size)
    tree = dict(params)
    if cfg.scan_layers:
        blocks = tree.pop("blocks", {})  # absent: reported below as a tree mismatch
        for i in range(cfg.num_layers):
            tree[f"block_{i}"] = jax.tree.map(lambda x, i=i: x[i], blocks)
    flat = {tuple(k.key for k in path): x for path, x in jax.tree_util.tree_flatten_with_path(tree)[0]}
    shapes = _encoder_shapes(cfg)
    if flat.keys() != shapes.keys() or any(np.shape(flat[p]) != s for p, s in shapes.items()):
        bad = sorted("/".join(p) for p in flat.keys() ^ shapes.keys()) or [
            "/".join(p) for p, s in shapes.items() if np.shape(flat[p]) != s
        ]
        raise ValueError(f"params do not match this ModelConfig's parameter tree; e.g. {bad[:5]}.")
    sd: StateDict = {}
    for e in _entries(cfg, family):
        x = np.asarray(flat[e.path], np.float32)
        x = x.reshape(e.hf_shape[::-1]).T if e.transpose else x.reshape(e.hf_shape)
        if e.path == ("token_embedding", "embedding"):
            x = x[:vocab]
        sd[e.hf] = np.ascontiguousarray(x)
    _join_family_tensors(cfg, family, sd)
    return sd


def lora_to_peft(cfg: ModelConfig, adapters: Params) -> tuple[StateDict, list[str]]:
    """A LoRA run's adapters (model/lora.py; scanned or not, as cfg says) as PEFT's adapter state dict
    (`base_model.model.<module>.lora_A.weight` [r, in], `.lora_B.weight` [out, r]) and the names of
    the adapted modules (PEFT's target_modules), for cfg's family."""
    family = match_family(cfg)
    if family == "gpt2":
        raise ValueError(
            "GPT-2 holds query, key and value in one fused c_attn module, on which PEFT keeps one adapter where "
            "this run trained three; a PEFT directory cannot express it. Export the merged model instead "
            "(python -m cpt_jax.export without --peft): the same embeddings in a plain transformers model."
        )
    tree = dict(adapters)
    if cfg.scan_layers:
        blocks = tree.pop("blocks", {})
        for i in range(cfg.num_layers):
            tree[f"block_{i}"] = jax.tree.map(lambda x, i=i: x[i], blocks)
    flat = {tuple(k.key for k in path): x for path, x in jax.tree_util.tree_flatten_with_path(tree)[0]}
    hf_names = {e.path: e.hf for e in _entries(cfg, family)}
    sd: StateDict = {}
    modules = []
    for path in sorted(p[:-1] for p in flat if p[-1] == "lora_a"):
        a, b = np.asarray(flat[(*path, "lora_a")], np.float32), np.asarray(flat[(*path, "lora_b")], np.float32)
        rank = a.shape[-1]
        module = hf_names[path].removesuffix(".weight")
        sd[f"base_model.model.{module}.lora_A.weight"] = np.ascontiguousarray(a.reshape(-1, rank).T)
        sd[f"base_model.model.{module}.lora_B.weight"] = np.ascontiguousarray(b.reshape(rank, -1).T)
        modules.append(module)
    return sd, modules


def _read_safetensors(path: str) -> StateDict:
    from safetensors import safe_open
    from safetensors.numpy import load_file

    try:
        return load_file(path)
    except TypeError:  # NumPy has no bfloat16: read through JAX's dtype, on the host
        with jax.default_device(jax.devices("cpu")[0]), safe_open(path, framework="flax") as f:
            return {k: np.asarray(f.get_tensor(k), np.float32) for k in f.keys()}


def _read_torch_bin(path: str) -> StateDict:
    import torch

    # weights_only: tensors and plain containers only, never arbitrary pickled objects.
    state = torch.load(path, map_location="cpu", weights_only=True)
    return {k: t.float().numpy() for k, t in state.items()}


def weight_files(model_dir: str) -> tuple[list[str], Any]:
    """(the weight files a checkpoint directory's model is read from, their reader)."""
    for name, reader in (("model.safetensors", _read_safetensors), ("pytorch_model.bin", _read_torch_bin)):
        if os.path.exists(os.path.join(model_dir, name)):
            return [os.path.join(model_dir, name)], reader
        index = os.path.join(model_dir, f"{name}.index.json")
        if os.path.exists(index):
            with open(index) as f:
                shards = sorted(set(json.load(f)["weight_map"].values()))
            return [os.path.join(model_dir, shard) for shard in shards], reader
    raise FileNotFoundError(
        f"No weights in {model_dir}: expected model.safetensors, model.safetensors.index.json (sharded), "
        "pytorch_model.bin or pytorch_model.bin.index.json."
    )


def _read_weights(model_dir: str) -> StateDict:
    files, reader = weight_files(model_dir)
    return {k: x for path in files for k, x in reader(path).items()}


def load_hf_checkpoint(model_dir: str, **overrides: Any) -> tuple[ModelConfig, Params, dict[str, Any]]:
    """(ModelConfig, params, config.json dict) of a Hugging Face checkpoint directory.

    overrides: ModelConfig fields to set on the imported config before mapping the weights
    (e.g. scan_layers=False, dtype="bfloat16", pooling="mean"); architecture fields must keep
    matching the checkpoint's family.
    """
    config_path = os.path.join(model_dir, "config.json")
    if not os.path.exists(config_path):
        raise FileNotFoundError(f"No config.json in {model_dir}; expected a Hugging Face checkpoint directory.")
    with open(config_path) as f:
        hf_config = json.load(f)
    cfg = dataclasses.replace(model_config_from_hf(hf_config), **overrides)
    return cfg, params_from_hf(cfg, _read_weights(model_dir)), hf_config


def save_hf_checkpoint(cfg: ModelConfig, params: Params, out_dir: str, vocab_size: int | None = None) -> dict[str, Any]:
    """Write config.json and model.safetensors (no pickle) that transformers.AutoModel loads; returns the config."""
    from safetensors.numpy import save_file

    hf_config = hf_config_from_model_config(cfg, vocab_size)
    state = params_to_hf(cfg, params, vocab_size)
    os.makedirs(out_dir, exist_ok=True)
    with open(os.path.join(out_dir, "config.json"), "w") as f:
        json.dump(hf_config, f, indent=2, sort_keys=True)
    # transformers refuses safetensors files without a "format" entry in the metadata.
    save_file(state, os.path.join(out_dir, "model.safetensors"), metadata={"format": "pt"})
    return hf_config
