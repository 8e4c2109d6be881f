"""Hugging Face config.json <-> ModelConfig for the families the encoder represents exactly.

Import: gpt2, llama, qwen2, mistral, bert. Export: gpt2, llama, qwen2, bert, chosen by the
ModelConfig's structural traits (norm, norm placement, positions, MLP, biases, extra norms,
attention direction, grouped-query attention). Widths, depth, vocabulary, epsilon, rope_theta
and the activation are free in every family (HF's ACT2FN is shared by all of them).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from typing import Any

from cpt_jax.model.config import ModelConfig

IMPORT_FAMILIES = ("gpt2", "llama", "qwen2", "mistral", "bert")
EXPORT_FAMILIES = ("gpt2", "qwen2", "llama", "bert")  # qwen2 before llama: disjoint biases, either order works

# What a *ForXxx checkpoint of the family puts in front of its base model's keys.
PREFIXES = {"gpt2": "transformer.", "llama": "model.", "qwen2": "model.", "mistral": "model.", "bert": "bert."}
ARCHITECTURES = {"gpt2": "GPT2Model", "llama": "LlamaModel", "qwen2": "Qwen2Model", "bert": "BertModel"}

_FROM_HF_ACTIVATION = {
    "gelu_new": "gelu_tanh", "gelu_pytorch_tanh": "gelu_tanh", "gelu": "gelu", "silu": "silu", "swish": "silu",
}
_TO_HF_ACTIVATION = {"gelu_tanh": "gelu_new", "gelu": "gelu", "silu": "silu"}

_BIASES = "(qkv_bias, out_bias, mlp_bias)"
_DECODER = {"norm_position": "pre", "embedding_norm": False, "final_norm": True, "attention": "causal"}
_ROPE_GATED = {**_DECODER, "norm": "rmsnorm", "position": "rope", "gated_mlp": True}
# Trait -> required value, or a frozenset of allowed values; traits left out are free.
SIGNATURES: dict[str, dict[str, Any]] = {
    "gpt2": {
        **_DECODER, "norm": "layernorm", "position": "learned", "gated_mlp": False,
        "grouped_query": False, _BIASES: (True, True, True),
    },
    "qwen2": {**_ROPE_GATED, _BIASES: (True, False, False)},
    # Llama's attention_bias covers q, k, v and o together; mlp_bias is separate.
    "llama": {
        **_ROPE_GATED, _BIASES: frozenset({(q, q, m) for q in (False, True) for m in (False, True)}),
    },
    "bert": {
        "norm_position": "post", "embedding_norm": True, "final_norm": False, "attention": "bidirectional",
        "norm": "layernorm", "position": "learned", "gated_mlp": False,
        "grouped_query": False, _BIASES: (True, True, True),
    },
}


def _traits(cfg: ModelConfig) -> dict[str, Any]:
    names = ("norm", "norm_position", "position", "gated_mlp", "embedding_norm", "final_norm", "attention")
    return {
        **{n: getattr(cfg, n) for n in names},
        "grouped_query": cfg.kv_heads != cfg.num_heads,
        _BIASES: (cfg.qkv_bias, cfg.out_bias, cfg.mlp_bias),
    }


def _differences(cfg: ModelConfig, family: str) -> list[str]:
    traits, out = _traits(cfg), []
    for name, want in SIGNATURES[family].items():
        allowed = want if isinstance(want, frozenset) else frozenset({want})
        if traits[name] not in allowed:
            wanted = repr(want) if not isinstance(want, frozenset) else "one of " + str(sorted(want))
            out.append(f"{name}={traits[name]!r} ({family} wants {wanted})")
    return out


def match_family(cfg: ModelConfig) -> str:
    """The Hugging Face family whose architecture is exactly cfg's; ValueError naming the nearest otherwise."""
    diffs = {family: _differences(cfg, family) for family in EXPORT_FAMILIES}
    for family, diff in diffs.items():
        if not diff:
            return family
    nearest = min(EXPORT_FAMILIES, key=lambda f: len(diffs[f]))
    if cfg.attention == "bidirectional" and not _differences(dataclasses.replace(cfg, attention="causal"), nearest):
        raise ValueError(
            f"This encoder is a {nearest} decoder whose attention was made bidirectional (ModelConfig.attention="
            f"'bidirectional'). transformers' {ARCHITECTURES[nearest]} always attends causally, so an "
            "exported model would silently compute different embeddings; nothing was written. Use the run itself "
            "(cpt_jax.Embedder, python -m cpt_jax.embed / evaluate), or train with causal attention to export."
        )
    raise ValueError(
        f"This ModelConfig matches none of the Hugging Face families {EXPORT_FAMILIES}. The nearest is "
        f"{nearest}; change: {'; '.join(diffs[nearest])}."
    )


def _activation(name: str, family: str) -> str:
    if name not in _FROM_HF_ACTIVATION:
        raise ValueError(f"{family} activation {name!r} is not supported; supported: {sorted(_FROM_HF_ACTIVATION)}.")
    return _FROM_HF_ACTIVATION[name]


def _require(hf: Mapping[str, Any], key: str, want: Any, default: Any) -> None:
    if hf.get(key, default) != want:
        raise ValueError(f"{hf['model_type']} config {key}={hf.get(key)!r} is not supported (only {want!r}).")


def _rope_theta(hf: Mapping[str, Any]) -> float:
    # transformers >= 5 writes rope_parameters; 4.x wrote rope_theta and rope_scaling.
    rope = dict(hf.get("rope_parameters") or hf.get("rope_scaling") or {})
    kind = rope.get("rope_type", rope.get("type", "default"))
    if kind != "default":
        raise ValueError(f"rope_type={kind!r} is not supported; only 'default' rotary embeddings load exactly.")
    if rope.get("partial_rotary_factor", hf.get("partial_rotary_factor", 1.0)) != 1.0:
        raise ValueError("partial_rotary_factor != 1 is not supported; the encoder rotates every head feature.")
    return float(rope.get("rope_theta", hf.get("rope_theta", 10000.0)))


def _rope_family(hf: Mapping[str, Any], family: str) -> dict[str, Any]:
    d, heads = hf["hidden_size"], hf["num_attention_heads"]
    if hf.get("head_dim") not in (None, d // heads) or d % heads:
        raise ValueError(
            f"{family} head_dim={hf.get('head_dim')} differs from hidden_size / num_attention_heads = {d}/{heads}; "
            "the encoder derives head_dim from d_model."
        )
    max_len = hf["max_position_embeddings"]
    # A sliding window W changes nothing on sequences of at most W tokens, so capping max_len keeps it exact.
    layer_types = hf.get("layer_types") or ()
    if family == "mistral" or hf.get("use_sliding_window") or "sliding_attention" in layer_types:
        max_len = min(max_len, hf.get("sliding_window") or max_len)
    if family == "qwen2":
        biases = (True, False, False)
    elif family == "llama":  # attention_bias: q, k, v and o together
        attention_bias = bool(hf.get("attention_bias", False))
        biases = (attention_bias, attention_bias, bool(hf.get("mlp_bias", False)))
    else:
        biases = (False, False, False)
    return dict(
        d_model=d, num_heads=heads, num_kv_heads=hf.get("num_key_value_heads") or heads,
        num_layers=hf["num_hidden_layers"], d_mlp=hf["intermediate_size"], max_len=max_len,
        layer_norm_eps=float(hf.get("rms_norm_eps", 1e-6)),
        activation=_activation(hf.get("hidden_act", "silu"), family),
        norm="rmsnorm", position="rope", rope_theta=_rope_theta(hf), gated_mlp=True,
        qkv_bias=biases[0], out_bias=biases[1], mlp_bias=biases[2], attention="causal", pooling="eos",
    )


def model_config_from_hf(hf_config: Mapping[str, Any]) -> ModelConfig:
    """ModelConfig (float32, dropout 0, scanned layers) equivalent to a Hugging Face config.json dict.

    Decoders (gpt2, llama, qwen2, mistral) get causal attention and EOS pooling; bert gets
    bidirectional attention and mean pooling. ValueError for other families or variants
    that would not load exactly (rope scaling, cross-attention, relative positions, ...).
    """
    hf = dict(hf_config)
    family = hf.get("model_type")
    if family not in IMPORT_FAMILIES:
        raise ValueError(f"model_type={family!r} is not supported; supported families: {IMPORT_FAMILIES}.")
    if family == "gpt2":
        _require(hf, "scale_attn_weights", True, True)
        _require(hf, "scale_attn_by_inverse_layer_idx", False, False)
        _require(hf, "add_cross_attention", False, False)
        d = hf["n_embd"]
        fields = dict(
            d_model=d, num_heads=hf["n_head"], num_layers=hf["n_layer"], d_mlp=hf.get("n_inner") or 4 * d,
            max_len=hf["n_positions"], layer_norm_eps=float(hf.get("layer_norm_epsilon", 1e-5)),
            activation=_activation(hf.get("activation_function", "gelu_new"), family),
            attention="causal", pooling="eos",
        )
    elif family == "bert":
        _require(hf, "position_embedding_type", "absolute", "absolute")
        _require(hf, "is_decoder", False, False)
        _require(hf, "add_cross_attention", False, False)
        fields = dict(
            d_model=hf["hidden_size"], num_heads=hf["num_attention_heads"], num_layers=hf["num_hidden_layers"],
            d_mlp=hf["intermediate_size"], max_len=hf["max_position_embeddings"],
            layer_norm_eps=float(hf.get("layer_norm_eps", 1e-12)),
            activation=_activation(hf.get("hidden_act", "gelu"), family),
            norm_position="post", embedding_norm=True, final_norm=False, attention="bidirectional", pooling="mean",
        )
    else:
        fields = _rope_family(hf, family)
    return ModelConfig(vocab_size=hf["vocab_size"], dtype="float32", dropout=0.0, **fields)


def hf_config_from_model_config(cfg: ModelConfig, vocab_size: int | None = None) -> dict[str, Any]:
    """config.json dict (model_type, architectures: the base *Model) for the family cfg matches.

    vocab_size: rows to export (<= cfg.vocab_size), e.g. the tokenizer's size when cfg's table is
    padded; defaults to cfg.vocab_size. ValueError (naming the fields to change) if no family matches.
    """
    family = match_family(cfg)
    vocab = export_vocab_size(cfg, vocab_size)
    act = _TO_HF_ACTIVATION[cfg.activation]
    common = {"model_type": family, "architectures": [ARCHITECTURES[family]], "vocab_size": vocab, "dtype": "float32"}
    if family == "gpt2":
        return {
            **common, "n_embd": cfg.d_model, "n_layer": cfg.num_layers, "n_head": cfg.num_heads, "n_inner": cfg.d_mlp,
            "n_positions": cfg.max_len, "activation_function": act, "layer_norm_epsilon": cfg.layer_norm_eps,
            "resid_pdrop": cfg.dropout, "embd_pdrop": cfg.dropout, "attn_pdrop": 0.0,
            "bos_token_id": None, "eos_token_id": None, "tie_word_embeddings": True,
        }
    if family == "bert":
        return {
            **common, "hidden_size": cfg.d_model, "num_hidden_layers": cfg.num_layers,
            "num_attention_heads": cfg.num_heads, "intermediate_size": cfg.d_mlp, "hidden_act": act,
            "max_position_embeddings": cfg.max_len, "type_vocab_size": 2, "layer_norm_eps": cfg.layer_norm_eps,
            "position_embedding_type": "absolute", "hidden_dropout_prob": cfg.dropout,
            "attention_probs_dropout_prob": 0.0, "pad_token_id": 0,
        }
    out = {
        **common, "hidden_size": cfg.d_model, "num_hidden_layers": cfg.num_layers,
        "num_attention_heads": cfg.num_heads, "num_key_value_heads": cfg.kv_heads, "head_dim": cfg.head_dim,
        "intermediate_size": cfg.d_mlp, "hidden_act": act, "max_position_embeddings": cfg.max_len,
        "rms_norm_eps": cfg.layer_norm_eps, "rope_theta": cfg.rope_theta,
        "rope_parameters": {"rope_type": "default", "rope_theta": cfg.rope_theta},
        "attention_dropout": 0.0, "tie_word_embeddings": False, "bos_token_id": None, "eos_token_id": None,
    }
    if family == "llama":
        return {**out, "attention_bias": cfg.qkv_bias, "mlp_bias": cfg.mlp_bias}
    return {**out, "use_sliding_window": False, "sliding_window": None, "max_window_layers": cfg.num_layers}


def export_vocab_size(cfg: ModelConfig, vocab_size: int | None) -> int:
    """vocab_size, checked against cfg (exporting drops the padding rows past it)."""
    if vocab_size is None:
        return cfg.vocab_size
    if not 0 < vocab_size <= cfg.vocab_size:
        raise ValueError(f"vocab_size={vocab_size} must be in [1, ModelConfig.vocab_size={cfg.vocab_size}].")
    return vocab_size

