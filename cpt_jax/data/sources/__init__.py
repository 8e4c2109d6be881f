"""Pair sources: sharded, resumable streams of {"x", "y"[, "negatives"]} records.

Each kind of source is a frozen config dataclass (registered with gin in cpt_jax/cli/flags.py)
whose `build()` returns a `Source` (base.py):

  TextFilesSource    cpt-text span pairs from text / Markdown / JSONL files (text_files.py)
  TfdsTextSource     cpt-text span pairs from a prepared TFDS dataset by name (tfds_text.py)
  CodeFilesSource    cpt-code (doc, function) pairs from source trees, tree-sitter (code_files.py)
  PairedJsonlSource  pre-paired JSONL, optionally with hard negatives (paired.py)
  PreparedPairsSource  a prepared TFDS pair dataset, e.g. the built-in stdlib corpora; random
                     access, globally shuffled every epoch (prepared_pairs.py)

A new kind of source: a module here with its config dataclass (frozen; `build()` -> a Source,
optionally `prepare()` for what process 0 must build first), added to SOURCE_KINDS below and to
the gin CONFIGURABLES in cpt_jax/cli/flags.py; its drop rules come from base.DROP_RULES.

`make_source("text_files", paths=("corpus/**/*.txt",))` builds one by kind name. Importing
this package does not import TensorFlow (only TfdsTextSource.build does).
"""

from __future__ import annotations

from cpt_jax.data.sources.base import DropStats, Record, ShardedSource, Source
from cpt_jax.data.sources.code_files import CodeFilesSource
from cpt_jax.data.sources.paired import PairedJsonlSource
from cpt_jax.data.sources.prepared_pairs import PreparedPairsSource
from cpt_jax.data.sources.spans import SpanConfig
from cpt_jax.data.sources.text_files import TextFilesSource
from cpt_jax.data.sources.tfds_text import TfdsTextSource

SourceConfig = TextFilesSource | TfdsTextSource | CodeFilesSource | PairedJsonlSource | PreparedPairsSource

SOURCE_KINDS: dict[str, type[SourceConfig]] = {
    "text_files": TextFilesSource,
    "tfds_text": TfdsTextSource,
    "code_files": CodeFilesSource,
    "paired_jsonl": PairedJsonlSource,
    "prepared_pairs": PreparedPairsSource,
}


def make_source(kind: str, **params: object) -> Source:
    """The source of kind `kind` (a key of SOURCE_KINDS) built from its config fields."""
    if kind not in SOURCE_KINDS:
        raise ValueError(f"Unknown source kind {kind!r}; choose one of {sorted(SOURCE_KINDS)}.")
    return SOURCE_KINDS[kind](**params).build()


__all__ = [
    "SOURCE_KINDS",
    "CodeFilesSource",
    "DropStats",
    "PairedJsonlSource",
    "PreparedPairsSource",
    "Record",
    "ShardedSource",
    "Source",
    "SourceConfig",
    "SpanConfig",
    "TextFilesSource",
    "TfdsTextSource",
    "make_source",
]
