"""python -m cpt_jax.evaluate --checkpoint RUN_DIR — held-out search metrics beside baselines.

Pair tasks (default: code search on stdlib_code, text search on stdlib_text; ``--tasks none``
skips them) score the trained encoder, the model it started from (a run with
TrainConfig.init_from: the pretrained model as imported, i.e. its checkpoint 0), the same
architecture at random initialisation, and BM25 by exact search over the whole held-out corpus
(``--max_pairs N``: over the split's first N pairs, a fixed sample). ``--beir DIR[,DIR...]`` adds BEIR-format
folders (nDCG@10, MRR@10, Recall@100; the same systems and BM25) and ``--classification
TASK[,TASK...]`` linear probes (accuracy and macro-F1; the same systems and a TF-IDF bag of words
fitted on the task's train.jsonl), each a folder of {"text", "label"} JSONL or the name of a
built-in task: ``stdlib_packages`` (a stdlib function's top-level package from its docstring),
built once under <data_dir>/classification/ (cpt_jax/data/probe_tasks.py). Prints a table and
writes <RUN_DIR>/eval_<split>.json (eval_<split>_step<N>.json for an explicit --step, and
eval_<split>_<dtype>.json for an explicit --dtype, e.g. --dtype bfloat16 to score the run as it
encodes in bfloat16). The main job (configs/experiments/minilm_cpt.gin) is scored with

    python -m cpt_jax.evaluate --checkpoint outputs/minilm_cpt --tasks site_code,site_text \
        --max_pairs 1000 --max_len 256 --classification stdlib_packages

``--dims 256,128,64`` adds a row per system and dimension: its embeddings cut to their first d values
and normalised again (the nested embeddings of a run trained with LossConfig.matryoshka_dims; encoded
once per system).

``--sentence_transformer DIR`` (or pkg://PACKAGE/DIR, with --output) evaluates a sentence-transformers model directory instead of a
run (an exported run reproduces the run's numbers; a published model gives a reference row),
with BM25 as the baseline; pair-task data comes from --data_dir (default outputs/tfds).

Here flags become an EvalSpec and the systems (cpt_jax.eval.spec / cpt_jax.eval.suite score them).
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
from collections.abc import Sequence
from typing import Any

from cpt_jax import checkpoint
from cpt_jax.data.probe_tasks import CLASSIFICATION_TASKS
from cpt_jax.embedder import Embedder
from cpt_jax.eval.common import Encoder
from cpt_jax.eval.sentence_transformer import SentenceTransformerEncoder
from cpt_jax.eval.spec import DEFAULT_DATA_DIR, EvalSpec, pair_datasets
from cpt_jax.eval.suite import RANDOM, SENTENCE_TRANSFORMER, START, TRAINED, evaluate, format_table
from cpt_jax.interop import pretrained
from cpt_jax.model.config import DTYPES
from cpt_jax.parallel import runtime


def _list(value: str) -> list[str]:
    """A comma-separated flag value; "" or "none" is the empty list."""
    return [] if value.strip().lower() in ("", "none") else [v.strip() for v in value.split(",") if v.strip()]


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m cpt_jax.evaluate", description=__doc__.splitlines()[0])
    source = p.add_mutually_exclusive_group(required=True)
    source.add_argument("--checkpoint", help="a training run's output_dir")
    source.add_argument(
        "--sentence_transformer", help="a sentence-transformers model directory instead (e.g. an exported run)"
    )
    p.add_argument(
        "--output", default=None, help="results JSON (default: eval_<split>[_step<N>][_<dtype>].json in the model dir)"
    )
    p.add_argument("--step", type=int, default=None, help="checkpoint step (default: latest)")
    p.add_argument(
        "--tasks", default=",".join(pair_datasets()), help="comma-separated pair datasets; '' or 'none' for none"
    )
    p.add_argument("--beir", default="", help="comma-separated BEIR-format folders")
    p.add_argument(
        "--classification",
        default="",
        help="comma-separated linear-probe tasks: folders with train/test(/dev).jsonl of {text, label}, or built-in "
        f"task names ({', '.join(CLASSIFICATION_TASKS)}; built once under <data_dir>/classification/)",
    )
    p.add_argument("--split", default="test", help="held-out split of the pair tasks and BEIR qrels (default: test)")
    p.add_argument(
        "--data_dir",
        default=None,
        help="TFDS data dir, also of the built-in classification tasks (default: the run's, else outputs/tfds)",
    )
    p.add_argument("--no_baselines", action="store_true", help="skip random init, BM25 and the bag of words")
    p.add_argument("--max_pairs", type=int, default=None,
                   help="score each pair task on its split's first N pairs, a fixed sample (default: all)")
    p.add_argument("--max_len", type=int, default=None,
                   help="encode both sides at up to N tokens (default: the lengths the run trained with)")
    p.add_argument("--instruction", default=None,
                   help="encode every task with the instruction of this source of the run (default: a task uses "
                   "the instruction of the run's source of the same name, else the one all sources share, else none)")
    p.add_argument("--dims", default="",
                   help="comma-separated embedding dimensions to score as well (Matryoshka prefixes, L2-normalised "
                   "again): each system but random init gets a row '<system> @<dim>' per dimension below its own")
    p.add_argument("--batch_size", type=int, default=128)
    p.add_argument("--dtype", default=None, choices=DTYPES, help="compute dtype of --checkpoint (default: the run's)")
    p.add_argument("--chunk_size", type=int, default=10_000, help="BEIR documents encoded and searched per step")
    p.add_argument("--folds", type=int, default=5, help="classification CV folds for C when there is no dev.jsonl")
    return p


def _dims(value: str) -> tuple[int, ...]:
    """--dims: positive ints, largest first (duplicates dropped)."""
    try:
        dims = {int(v) for v in _list(value)}
    except ValueError:
        raise ValueError(f"--dims {value!r}: give comma-separated positive integers, e.g. --dims 256,128,64") from None
    if any(d < 1 for d in dims):
        raise ValueError(f"--dims {value!r}: dimensions must be positive, e.g. --dims 256,128,64")
    return tuple(sorted(dims, reverse=True))


def spec_from_args(args: argparse.Namespace) -> EvalSpec:
    """The EvalSpec the flags name (data_dir: --data_dir, else the default; see run_data_dir)."""
    return EvalSpec(
        tasks=tuple(_list(args.tasks)),
        data_dir=args.data_dir or DEFAULT_DATA_DIR,
        split=args.split,
        beir=tuple(_list(args.beir)),
        classification=tuple(_list(args.classification)),
        baselines=not args.no_baselines,
        batch_size=args.batch_size,
        chunk_size=args.chunk_size,
        folds=args.folds,
        max_pairs=args.max_pairs,
    )


def parse_args(argv: Sequence[str]) -> tuple[argparse.Namespace, EvalSpec]:
    """(flags, their EvalSpec); a spec the flags cannot make is a usage error naming the field."""
    p = _parser()
    args = p.parse_args(list(argv))
    if (args.sentence_transformer or "").startswith(pretrained.PACKAGE_SCHEME) and not args.output:
        p.error(f"--sentence_transformer {args.sentence_transformer} is a directory inside an installed package; "
                "pass --output FILE for the results (nothing is written into the package).")
    if args.sentence_transformer and args.instruction is not None:
        p.error("--instruction picks a cpt-jax run's source instruction; a sentence-transformers model applies its own "
                "prompts (an exported run's are in config_sentence_transformers.json). Drop --instruction.")
    try:
        args.dims = _dims(args.dims)
        return args, spec_from_args(args)
    except (TypeError, ValueError) as e:
        p.error(str(e))


def run_data_dir(meta: dict[str, Any], tasks: Sequence[str] = ()) -> str | None:
    """The TFDS data dir a run trained from, per its checkpoint meta; None if it names none.

    Runs record ``data_config = {"sources": [{"dataset", "split", "data_dir", ...}, ...]}`` (a
    source of prepared pairs); the first such source for one of ``tasks`` wins, else the first
    with a data_dir. Older runs have a top-level ``data_config["data_dir"]``.
    """
    config = meta.get("data_config") or {}
    if config.get("data_dir"):
        return config["data_dir"]
    sources = [s for s in config.get("sources") or () if isinstance(s, dict) and s.get("data_dir")]
    preferred = [s for s in sources if s.get("dataset") in tasks]
    return (preferred or sources)[0]["data_dir"] if sources else None


def build_systems(args: argparse.Namespace, spec: EvalSpec) -> tuple[dict[str, Encoder], EvalSpec]:
    """The named encoders the flags ask for, and the spec with the run's data_dir when --data_dir
    is not given (a run's pair tasks are read from where it trained)."""
    if args.sentence_transformer:
        model_dir = pretrained.resolve(args.sentence_transformer)  # pkg://PACKAGE/DIR names a packaged model
        return with_dims({SENTENCE_TRANSFORMER: SentenceTransformerEncoder(model_dir)}, args.dims), spec
    systems: dict[str, Encoder] = {}
    trained = systems[TRAINED] = Embedder.load(args.checkpoint, args.step, args.dtype)
    if spec.baselines and args.step != 0:
        start = Embedder.pretrained_start(args.checkpoint, args.dtype)
        if start is not None:
            systems[START] = start
    if spec.baselines:
        systems[RANDOM] = Embedder.random_init(trained.model, trained.tokenizer, trained.max_len, trained.instructions)
    if args.max_len is not None:
        systems = {name: encoder.with_max_len(args.max_len) for name, encoder in systems.items()}
    if args.instruction is not None:
        systems = {name: encoder.with_instruction(args.instruction) for name, encoder in systems.items()}
    systems = with_dims(systems, args.dims)
    if spec.tasks and not args.data_dir:
        _, meta = checkpoint.read_meta(args.checkpoint, args.step)
        data_dir = run_data_dir(meta, spec.tasks)
        if data_dir:
            spec = dataclasses.replace(spec, data_dir=data_dir)
    return systems, spec


def with_dims(systems: dict[str, Encoder], dims: Sequence[int]) -> dict[str, Encoder]:
    """Each system followed by its Matryoshka prefixes '<name> @<d>' (d below its own dimension;
    random init has none). A dimension above every system's is a ValueError naming the sizes."""
    if not dims:
        return systems
    sizes = sorted({encoder.dim for encoder in systems.values()})
    if max(dims) > sizes[-1]:
        raise ValueError(f"--dims {','.join(map(str, dims))}: every system embeds in {sizes} values; "
                         "give dimensions below that, e.g. --dims 256,128,64 for a 384-d model.")
    out: dict[str, Encoder] = {}
    for name, encoder in systems.items():
        out[name] = encoder
        if name != RANDOM:
            out.update({f"{name} @{d}": encoder.with_dim(d) for d in dims if d < encoder.dim})
    return out


def output_path(args: argparse.Namespace) -> str:
    """eval_<split>.json beside the model; eval_<split>_step<N>.json for an explicit --step, _<dtype> for
    --dtype, _len<N> for --max_len."""
    suffix = f"_step{args.step}" if args.step is not None else ""
    suffix += f"_{args.dtype}" if args.dtype else ""
    suffix += f"_len{args.max_len}" if args.max_len is not None else ""
    suffix += f"_instruction-{args.instruction}" if args.instruction is not None else ""
    suffix += f"_dims{'-'.join(map(str, args.dims))}" if args.dims else ""
    return os.path.join(args.checkpoint or args.sentence_transformer, f"eval_{args.split}{suffix}.json")


def main(argv: Sequence[str]) -> int | None:
    args, spec = parse_args(argv)
    runtime.enable_compilation_cache(runtime.default_compilation_cache_dir())
    runtime.print_malloc_advice()
    systems, spec = build_systems(args, spec)
    results = evaluate(systems, spec)
    print(format_table(results), flush=True)
    path = args.output or output_path(args)
    with open(path, "w") as f:
        json.dump(results, f, indent=2)
    print(f"wrote {path}")
    return None
