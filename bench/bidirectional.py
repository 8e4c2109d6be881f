"""A random tiny Llama imported with causal vs bidirectional attention, trained on the standard-library
code pairs: held-out code search (stdlib_code/test) side by side.

1. A tiny Llama (2 layers, width 128, grouped-query attention, RoPE) at random initialisation, with a
   byte-level BPE tokenizer trained on standard-library sources, saved as a Hugging Face directory;
2. two runs from it (TrainConfig.init_from), the same steps, batch, seed and data, one importing it as
   it is (causal attention) and one with `ModelConfig.attention = 'bidirectional'` (LLM2Vec / GritLM);
   both pool at EOS, the paper's embedding;
3. `python -m cpt_jax.evaluate --tasks stdlib_code` of each (BM25 beside the first).
A finished run is not trained again.

    python bench/bidirectional.py --steps 300
"""

from __future__ import annotations

import argparse
import glob
import json
import os
import sys
import sysconfig

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from common import header  # noqa: E402
from hard_negatives import last_metrics, run  # noqa: E402


def write_tiny_llama(path: str, vocab: int = 8000, seed: int = 0) -> str:
    """A random tiny LlamaModel and its BPE tokenizer (trained on stdlib sources) under path (once)."""
    if os.path.exists(os.path.join(path, "config.json")):
        return path
    import tokenizers
    import torch
    import transformers

    files = sorted(glob.glob(os.path.join(sysconfig.get_paths()["stdlib"], "*.py")))[:400]
    texts = (open(f, encoding="utf-8", errors="replace").read() for f in files)
    bpe = tokenizers.Tokenizer(tokenizers.models.BPE())
    bpe.pre_tokenizer = tokenizers.pre_tokenizers.ByteLevel(add_prefix_space=False)
    bpe.decoder = tokenizers.decoders.ByteLevel()
    trainer = tokenizers.trainers.BpeTrainer(vocab_size=vocab, special_tokens=["<|endoftext|>"],
                                             initial_alphabet=tokenizers.pre_tokenizers.ByteLevel.alphabet())
    bpe.train_from_iterator(texts, trainer)
    fast = transformers.PreTrainedTokenizerFast(tokenizer_object=bpe, bos_token="<|endoftext|>",
                                                eos_token="<|endoftext|>")
    config = transformers.LlamaConfig(vocab_size=len(fast), hidden_size=128, intermediate_size=512,
                                      num_hidden_layers=2, num_attention_heads=4, num_key_value_heads=2,
                                      max_position_embeddings=128)
    torch.manual_seed(seed)
    os.makedirs(path, exist_ok=True)
    fast.save_pretrained(path)
    transformers.LlamaModel(config).save_pretrained(path, safe_serialization=True)
    return path


def train_flags(model_dir: str, output_dir: str, attention: str, args: argparse.Namespace) -> list[str]:
    """tiny_code.gin's training settings, started from the tiny Llama with the given attention."""
    return [
        "cpt_jax.train", "--gin_file=configs/data/stdlib_code.gin",
        f"--gin.TrainConfig.init_from='{model_dir}'", f"--gin.TrainConfig.output_dir='{output_dir}'",
        "--gin.TrainConfig.model=@ModelConfig()", "--gin.TrainConfig.data=@DataConfig()",
        "--gin.TrainConfig.optimizer=@OptimizerConfig()", f"--gin.ModelConfig.attention='{attention}'",
        f"--gin.TrainConfig.num_steps={args.steps}", f"--gin.TrainConfig.global_batch_size={args.batch}",
        "--gin.TrainConfig.pack_sequences=True", f"--gin.TrainConfig.log_every={max(1, args.steps // 10)}",
        f"--gin.TrainConfig.checkpoint_every={args.steps}",
        "--gin.OptimizerConfig.learning_rate=2e-3", f"--gin.OptimizerConfig.warmup_steps={max(1, args.steps // 10)}",
        "--gin.OptimizerConfig.decay='cosine'", "--gin.OptimizerConfig.weight_decay=0.01",
    ]


def table(results: dict[str, tuple[dict, dict]]) -> str:
    from cpt_jax.eval.suite import TRAINED

    (task, first), = results["causal"][0].items()
    lines = [task, "| system | MRR | nDCG@10 | recall@10 | last train loss |", "| --- | ---: | ---: | ---: | ---: |"]
    for attention, (scores, logged) in results.items():
        (m,) = [s[TRAINED] for s in scores.values()]
        lines.append(f"| tiny Llama, {attention} attention | {m['mrr']:.4f} | {m['ndcg@10']:.4f} | "
                     f"{m['recall@10']:.4f} | {logged['loss']:.4f} |")
    for system in ("pretrained start", "BM25"):
        if system in first:
            m = first[system]
            label = "tiny Llama at random init (the start)" if system == "pretrained start" else system
            lines.append(f"| {label} | {m['mrr']:.4f} | {m['ndcg@10']:.4f} | {m['recall@10']:.4f} | |")
    return "\n".join(lines)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--steps", type=int, default=300)
    p.add_argument("--batch", type=int, default=64)
    p.add_argument("--workdir", default="outputs/bidirectional")
    p.add_argument("--data_dir", default="outputs/tfds")
    args = p.parse_args()
    print(header(f"a random tiny Llama, causal vs bidirectional attention, on stdlib_code: {args.steps} steps at "
                 f"batch {args.batch}, in {args.workdir}"), flush=True)
    model_dir = write_tiny_llama(os.path.abspath(os.path.join(args.workdir, "tiny_llama")))
    results = {}
    for attention in ("causal", "bidirectional"):
        output_dir = os.path.join(args.workdir, f"tiny_llama_{attention}")
        run(train_flags(model_dir, output_dir, attention, args))
        path = os.path.join(output_dir, "eval_bidirectional.json")
        baselines = [] if attention == "causal" else ["--no_baselines"]
        run(["cpt_jax.evaluate", "--checkpoint", output_dir, "--tasks", "stdlib_code", "--data_dir", args.data_dir,
             "--output", path, *baselines])
        with open(path) as f:
            results[attention] = (json.load(f), last_metrics(output_dir))
    print(table(results))


if __name__ == "__main__":
    main()
