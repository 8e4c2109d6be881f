"""python -m cpt_jax.embed --checkpoint RUN_DIR --input texts.jsonl --output emb.npy --side query

Embeds every text of a JSONL file (one object per line, the text under --field) or a plain
text file (one text per line, for .txt) with a training run's encoder, and writes a float32
[n, d_model] .npy (no pickle) whose row i is the L2-normalised embedding of input line i.
"""

from __future__ import annotations

import argparse
import json
import time
from collections.abc import Sequence

import numpy as np

from cpt_jax.embedder import SIDES, Embedder
from cpt_jax.model.config import DTYPES
from cpt_jax.parallel import runtime


def read_texts(path: str, field: str) -> list[str]:
    """Texts of a .jsonl (field of each object) or any other file (one text per line)."""
    texts = []
    with open(path, encoding="utf-8") as f:
        if not path.endswith((".jsonl", ".json")):
            return [line.rstrip("\n") for line in f]
        for number, line in enumerate(f, start=1):
            if not line.strip():
                continue
            try:
                record = json.loads(line)
            except json.JSONDecodeError as e:
                raise ValueError(f"{path}:{number}: not valid JSON ({e}).") from e
            if not isinstance(record, dict) or not isinstance(record.get(field), str):
                raise ValueError(f"{path}:{number}: expected an object with a string {field!r}; set --field.")
            texts.append(record[field])
    return texts


def parse_args(argv: Sequence[str]) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="python -m cpt_jax.embed", description=__doc__.splitlines()[0])
    p.add_argument("--checkpoint", required=True, help="a training run's output_dir")
    p.add_argument("--step", type=int, default=None, help="checkpoint step (default: latest)")
    p.add_argument("--input", required=True, help=".jsonl (see --field) or one text per line")
    p.add_argument("--output", required=True, help="where to write the float32 .npy")
    p.add_argument("--side", default="document", choices=sorted(SIDES), help="query (x) or document (y)")
    p.add_argument("--field", default="text", help="JSONL key holding the text (default: text)")
    p.add_argument("--batch_size", type=int, default=128)
    p.add_argument("--dtype", default=None, choices=DTYPES, help="compute dtype (default: the run's; bfloat16 is faster)")
    return p.parse_args(list(argv))


def main(argv: Sequence[str]) -> int | None:
    args = parse_args(argv)
    runtime.enable_compilation_cache(runtime.default_compilation_cache_dir())
    runtime.print_malloc_advice()
    texts = read_texts(args.input, args.field)
    embedder = Embedder.load(args.checkpoint, args.step, args.dtype)
    start = time.perf_counter()
    vectors = embedder.encode(texts, side=args.side, batch_size=args.batch_size)
    seconds = time.perf_counter() - start
    np.save(args.output, vectors, allow_pickle=False)
    print(f"wrote {args.output}: {vectors.shape[0]} x {vectors.shape[1]} float32 "
          f"({len(texts) / max(seconds, 1e-9):.1f} texts/s)", flush=True)
    return None
