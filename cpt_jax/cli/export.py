"""python -m cpt_jax.export --checkpoint RUN_DIR --out DIR — a run as a PyTorch model.

DIR loads with `transformers.AutoModel.from_pretrained(DIR)` and with
`sentence_transformers.SentenceTransformer(DIR)`; see cpt_jax/interop/export.py.
"""

from __future__ import annotations

import argparse
from collections.abc import Sequence

from cpt_jax.interop.export import export


def parse_args(argv: Sequence[str]) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="python -m cpt_jax.export", description=__doc__.splitlines()[0])
    p.add_argument("--checkpoint", required=True, help="a training run's output_dir")
    p.add_argument("--step", type=int, default=None, help="checkpoint step (default: latest)")
    p.add_argument("--out", required=True, help="new directory for the PyTorch model")
    p.add_argument("--max_len", type=int, default=None,
                   help="tokens per text on both sides (default: the lengths the run trained with)")
    p.add_argument("--instruction", default=None,
                   help="the run's source whose instruction becomes the query / document prompts (default: the one "
                   "all sources share; required when they differ)")
    p.add_argument("--dim", type=int, default=None,
                   help="embed in the first DIM values, normalised again (a Matryoshka-trained run's nested "
                   "embedding; default: all d_model values)")
    p.add_argument("--peft", action="store_true",
                   help="a LoRA run's adapters unmerged, as a PEFT adapter directory at --out with the base model in "
                   "OUT/base (default: the adapters merged into full weights)")
    return p.parse_args(list(argv))


def main(argv: Sequence[str]) -> int | None:
    args = parse_args(argv)
    out = export(args.checkpoint, args.out, args.step, args.max_len, args.instruction, args.dim, args.peft)
    if args.peft:
        print(f"wrote {out}: load it with peft.PeftModel.from_pretrained(transformers.AutoModel.from_pretrained("
              f"{out + '/base'!r}), {out!r})", flush=True)
        return None
    print(f"wrote {out}: load it with transformers.AutoModel.from_pretrained({out!r}) or "
          f"sentence_transformers.SentenceTransformer({out!r})", flush=True)
    return None
