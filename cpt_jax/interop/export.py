"""A training run as a PyTorch model directory (the CLI is cpt_jax/cli/export.py).

The directory loads with `transformers.AutoModel.from_pretrained(DIR)` (GPT2Model, LlamaModel,
Qwen2Model or BertModel, whichever family the run's ModelConfig is) and with
`sentence_transformers.SentenceTransformer(DIR)`: a Transformer module whose tokenizer's chat
template wraps each text in the side's delimiters by task (`encode_query` -> [SOS]_x .. [EOS]_x,
`encode_document` and plain `encode` -> [SOS]_y .. [EOS]_y), pooling at the last token (EOS) or
the mean as trained, and L2 normalisation. Everything is safetensors and JSON: no pickle.

The directory is written as a temporary sibling and renamed to out_dir only once complete
(atomic.staged_dir), so a full disk or a killed export never leaves half a model at out_dir.
"""

from __future__ import annotations

import os

import jax
import numpy as np

from cpt_jax import atomic
from cpt_jax.embedder import Embedder, load_lora_adapters
from cpt_jax.interop.hf_weights import lora_to_peft, save_hf_checkpoint

POOLING_MODES = {"eos": "lasttoken", "mean": "mean"}


def export(
    run_dir: str, out_dir: str, step: int | None = None, max_len: int | None = None, instruction: str | None = None,
    dim: int | None = None, peft: bool = False,
) -> str:
    """Writes the exported model to out_dir and returns out_dir. max_len: the tokens per text the
    exported model reads on both sides (default: each side's training length; see
    Embedder.with_max_len). instruction: the run's source whose instruction (DataConfig.instructions)
    becomes the model's prompts "query" / "document", which encode_query / encode_document (and a
    plain encode, the document side) put before every text; default: the one all sources share.
    A run whose sources have different instructions must name one. dim: the embedding's first dim
    values, normalised again (Embedder.with_dim; a run trained with LossConfig.matryoshka_dims):
    an identity Dense module cuts the pooled embedding before Normalize, so plain
    SentenceTransformer(DIR) gives the nested embedding (AutoModel gives the full hidden states).

    A LoRA run (TrainConfig.lora) exports merged: the adapters folded into full weights. peft=True
    writes them unmerged instead, as a PEFT adapter directory: out_dir holds adapter_config.json and
    adapter_model.safetensors, and out_dir/base the base model (exported as above), which the
    adapter config names; `peft.PeftModel.from_pretrained(AutoModel.from_pretrained(out_dir/base),
    out_dir)` computes the run's embeddings."""
    # --peft writes the base and the adapters apart: the merged model is never needed (a run without
    # adapters loads as usual, and _export_peft refuses it).
    loaded = (Embedder.lora_base(run_dir) if peft else None) or Embedder.load(run_dir, step)
    embedder = _as_exported(loaded, run_dir, max_len, instruction, dim)
    if os.path.exists(out_dir) and os.listdir(out_dir):
        raise FileExistsError(f"{out_dir} is not empty; export into a new directory (nothing was overwritten).")
    if peft:
        return _export_peft(run_dir, out_dir, step, embedder)
    # replace=False: an out_dir that filled up meanwhile raises FileExistsError instead of being replaced.
    with atomic.staged_dir(out_dir, replace=False) as tmp:
        _write_model(embedder, tmp)
    return out_dir


def _as_exported(embedder: Embedder, run_dir: str, max_len: int | None, instruction: str | None,
                 dim: int | None) -> Embedder:
    """The embedder with the export's length, instruction and dimension."""
    if max_len is not None:
        embedder = embedder.with_max_len(max_len)
    embedder = _with_export_instruction(embedder, run_dir, instruction)
    return embedder if dim is None else embedder.with_dim(dim)  # with_dim checks the range


def _export_peft(run_dir: str, out_dir: str, step: int | None, base: Embedder) -> str:
    """The base as out_dir/base and the run's adapters as a PEFT adapter directory at out_dir."""
    from peft import LoraConfig as PeftLoraConfig
    from safetensors.numpy import save_file

    lora, adapters = load_lora_adapters(run_dir, step)  # a run without adapters is refused here
    state, modules = lora_to_peft(base.model, adapters)  # refused before anything is written
    with atomic.staged_dir(out_dir, replace=False) as tmp:
        _write_model(base, os.path.join(tmp, "base"))
        PeftLoraConfig(
            r=lora.rank, lora_alpha=lora.alpha, lora_dropout=lora.dropout, target_modules=modules,
            base_model_name_or_path=os.path.abspath(os.path.join(out_dir, "base")), inference_mode=True,
        ).save_pretrained(tmp)
        save_file(state, os.path.join(tmp, "adapter_model.safetensors"), metadata={"format": "pt"})
    return out_dir


def _write_model(embedder: Embedder, tmp: str) -> None:
    """embedder's model as a transformers + sentence-transformers directory at tmp."""
    from sentence_transformers import SentenceTransformer
    from sentence_transformers.base.modules import Normalize, Transformer
    from sentence_transformers.sentence_transformer.modules import Pooling

    model = embedder.model
    params = jax.tree.map(lambda x: np.asarray(jax.device_get(x), np.float32), embedder.params)
    os.makedirs(tmp, exist_ok=True)
    save_hf_checkpoint(model, params, tmp)
    embedder.tokenizer.save_for_transformers(tmp, model_max_length=model.max_len)
    # Each side truncates at its training length; a task-less encode() is the document side.
    transformer = Transformer(
        tmp,
        query_length=embedder.max_len["x"],
        document_length=embedder.max_len["y"],
        max_seq_length=embedder.max_len["y"],
    )
    pooling = Pooling(model.d_model, pooling_mode=POOLING_MODES[model.pooling])
    prompts = {"query": embedder.prefix["x"], "document": embedder.prefix["y"]}
    SentenceTransformer(
        modules=[transformer, pooling, *_nested_cut(model.d_model, embedder.dim), Normalize()],
        similarity_fn_name="cosine",
        **({"prompts": prompts, "default_prompt_name": "document"} if any(prompts.values()) else {}),
    ).save(tmp)


def _nested_cut(d_model: int, dim: int) -> list:
    """[] at the full dimension, else a Dense module keeping the first dim values (identity rows, no
    bias or activation): the Matryoshka prefix, which the following Normalize normalises again."""
    if dim == d_model:
        return []
    import torch
    from sentence_transformers.sentence_transformer.modules import Dense

    return [Dense(d_model, dim, bias=False, activation_function=torch.nn.Identity(),
                  init_weight=torch.eye(d_model, dtype=torch.float32)[:dim].clone())]


def _with_export_instruction(embedder: Embedder, run_dir: str, instruction: str | None) -> Embedder:
    """The embedder whose prefixes the export writes as prompts (see export)."""
    if instruction is not None:
        return embedder.with_instruction(instruction)
    if len(set(embedder.instructions.values())) > 1:
        raise ValueError(
            f"{run_dir} trained its sources with different instructions {embedder.instructions}; a "
            "sentence-transformers model has one query and one document prompt, so name the source whose "
            f"instruction it should use: export --instruction {sorted(embedder.instructions)[0]} (one of "
            f"{sorted(embedder.instructions)})."
        )
    return embedder
