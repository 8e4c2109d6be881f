"""Pre-paired examples from JSONL files (each maybe .gz): one JSON object per line.

An object gives x and y in `x_field` and `y_field` and, when `negatives_field` is set,
hard negatives for x there: a string (one negative), a list of strings, null or absent (no
negatives). One shard per file; records keep the file's line order. Records are
{"x", "y"} or, with `negatives_field`, {"x", "y", "negatives": list[str]} (maybe empty).
Texts are passed through as written (no stripping, no span cutting).

Drop rules: those of `files.py` (line_too_long, malformed_json, missing_field for x or y,
invalid_utf8 replaced and kept, corrupt_gzip), plus
  malformed_record          x or y not a string, or negatives not a string/list of strings/null.
  empty                     x or y empty or whitespace only.
  empty_negative            a whitespace-only negative (removed; the record is kept).
  negative_equals_positive  a negative equal to y after stripping (removed; it would be
                            a false negative).
No deduplication: pre-paired data is taken as curated.
"""

from __future__ import annotations

import dataclasses
import functools
from collections.abc import Iterator
from typing import ClassVar

from cpt_jax.data.sources import files
from cpt_jax.data.sources.base import Record, RuleCounter, ShardedSource, as_str_tuple
from cpt_jax.typecheck import Bound, at_least, check_field_types


@dataclasses.dataclass(frozen=True, kw_only=True)
class PairedJsonlSource:
    """(x, y[, negatives]) records from JSONL files matched by `paths` (globs; `**` recurses)."""

    paths: tuple[str, ...]
    x_field: str = "x"
    y_field: str = "y"
    negatives_field: str | None = None
    max_line_chars: int = 4_000_000  # longer lines are skipped
    name: str = "paired_jsonl"

    BOUNDS: ClassVar[dict[str, Bound]] = {"max_line_chars": at_least(1, "longer lines are skipped")}

    def __post_init__(self) -> None:
        check_field_types(self)  # types, then the BOUNDS above
        object.__setattr__(self, "paths", as_str_tuple(self, "paths", self.paths))
        if not self.paths:
            raise ValueError("PairedJsonlSource.paths is empty; give at least one glob.")
        if self.x_field == self.y_field:
            raise ValueError(f"PairedJsonlSource: x_field and y_field are both {self.x_field!r}; name two fields.")

    def build(self) -> ShardedSource:
        """The source over the files matched now (ValueError if a glob matches nothing)."""
        shard_ids = files.expand_globs(self.paths, "PairedJsonlSource.paths")
        return ShardedSource(self.name, shard_ids, functools.partial(_read_file, self))


def _read_file(config: PairedJsonlSource, path: str, stats: RuleCounter) -> Iterator[Record]:
    required = (config.x_field, config.y_field)
    for obj in files.iter_jsonl(path, required, config.max_line_chars, stats):
        x, y = obj[config.x_field], obj[config.y_field]
        negatives = obj.get(config.negatives_field) if config.negatives_field is not None else None
        if isinstance(negatives, str):
            negatives = [negatives]
        elif negatives is None:
            negatives = []
        if not (isinstance(x, str) and isinstance(y, str) and isinstance(negatives, list)) or not all(
            isinstance(n, str) for n in negatives
        ):
            stats.count("malformed_record")
            continue
        if not x.strip() or not y.strip():
            stats.count("empty")
            continue
        record: Record = {"x": _repaired(x, stats), "y": _repaired(y, stats)}
        if config.negatives_field is not None:
            record["negatives"] = _clean_negatives(negatives, y, stats)
        yield record


def _clean_negatives(negatives: list[str], y: str, stats: RuleCounter) -> list[str]:
    kept = []
    for negative in negatives:
        if not negative.strip():
            stats.count("empty_negative")
        elif negative.strip() == y.strip():
            stats.count("negative_equals_positive")
        else:
            kept.append(_repaired(negative, stats))
    return kept


def _repaired(text: str, stats: RuleCounter) -> str:
    """`text` with lone surrogates (JSON "\\udXXX" escapes) replaced, counted as invalid_utf8."""
    text, repaired = files.repair_surrogates(text)
    if repaired:
        stats.count("invalid_utf8")
    return text
