"""The `Source` interface, drop counters and the shared shard reader.

A source is a list of shards (files, or TFDS shard slices) whose pair records can be read
independently and deterministically:

    source.shards() -> list[str]                # stable ids, cheap to list (nothing is read)
    source.read_shard(index, start=0)           # iterator of records, skipping `start` pairs
    source.stats                                # DropStats, updated while shards are read

A finite source may also offer RANDOM ACCESS (`RandomAccess`): `len(source)` records,
`source.fetch(indices)` returns them by index. The batcher then reads it as one global stream
permuted anew every epoch (a true global shuffle) instead of through shuffled readers, and its
position is a function of the step alone (prepared_pairs.py).

A record is ``{"x": str, "y": str}``; pre-paired sources configured with a negatives field add
``"negatives": list[str]`` (hard negatives for x, possibly empty).

Counting and resumption: `read_shard(i, start=k)` re-reads shard i from its beginning and
discards its first k pairs. The drops met before the k-th pair are not counted again (the
read that produced those pairs counted them), so a resumed run's stats cover only what it
read after `start`. `stats.kept` counts the records handed out.
"""

from __future__ import annotations

import collections
import collections.abc
import itertools
import operator
import threading
from collections.abc import Callable, Iterator, Sequence
from typing import Protocol

Record = dict[str, object]  # {"x": str, "y": str[, "negatives": list[str]]}

# THE drop-rule vocabulary: every input left out (or altered) by a source or a builder is counted
# under one of these names (DropStats refuses others); each module says which rules it applies
# and with which limits.
DROP_RULES: dict[str, str] = {
    # files (files.py, code_pairs.py, stdlib_corpus.py)
    "unreadable_file": "a file that cannot be read (OSError): skipped",
    "file_too_large": "a source file over the byte limit (generated or minified code): skipped",
    "invalid_utf8": "bytes that are not valid text (UTF-8; Python: the PEP 263 encoding). Source "
    "files are skipped; text (lines, documents, JSON fields) is repaired with U+FFFD and kept",
    "corrupt_gzip": "a truncated or non-gzip .gz file: the shard ends at the damage",
    "line_too_long": "a JSONL line over the line limit: skipped",
    "malformed_json": "a JSONL line that is not a JSON object: skipped",
    "missing_field": "a JSONL object without a required field: skipped",
    "malformed_record": "a field of the wrong type (not a string, or not a list of strings): skipped",
    # file discovery (files.expand_globs)
    "symlink_loop": "a directory reached again on its own path while expanding a glob (a symlink loop): "
    "not followed",
    "duplicate_path": "a matched path whose real file (or, under **, real directory) was already matched "
    "through another link or glob: kept once",
    # code (code_pairs.py)
    "unparsable_source": "a source file that does not parse (too many tree-sitter errors; for Python, "
    "any SyntaxError, null byte or nesting too deep): skipped",
    "function_parse_error": "a function containing a parse error (the rest of the file is used)",
    "no_docstring": "a function without documentation",
    "short_docstring": "documentation of fewer than the minimum words",
    "inline_docstring": "a Python docstring sharing a line with code (not removable): skipped",
    "empty_body": "a function with nothing but a placeholder (pass, ..., raise NotImplementedError, "
    "comments, or no body): skipped",
    # text (spans.py)
    "empty": "a document, docstring or pair side empty or whitespace only: skipped",
    "too_short": "a span pair that cannot be completed at the end of a document: dropped",
    "near_duplicate": "a pair whose sides' word sets are near-identical (Jaccard at the limit): dropped",
    "too_long_document_truncated": "a document over the character limit: cut, the rest ignored",
    # pairs (paired.py, stdlib_corpus.checked_pairs)
    "empty_negative": "a whitespace-only hard negative: removed, the record kept",
    "negative_equals_positive": "a hard negative equal to y: removed (a false negative), the record kept",
    "duplicate_pair": "an (x, y) identical to an earlier one in the same file (sources) or split "
    "(builders): dropped",
    "unencodable_text": "text not encodable as UTF-8 (a lone surrogate): pair dropped (builders)",
    "text_too_long": "x or y over the character limit: pair dropped (builders)",
    "duplicate_key": "an example key already used in the split: pair dropped (builders)",
    # the site builders (site_corpus.py, site_dedup.py)
    "package_file_cap": "a file of a top-level package beyond the per-package file cap (the first files in "
    "sorted path order are kept): skipped",
    "cross_split_duplicate": "a train pair with a side equal (whitespace-normalised) to a side of a validation "
    "or test pair: dropped from train",
    "cross_split_near_duplicate": "a train pair with a side near-identical (word 5-gram Jaccard at the limit) to "
    "a side of a validation or test pair: dropped from train",
}


class RuleCounter(Protocol):
    """Anything that counts drops by rule name: `DropStats` or a shard reader's sink."""

    def count(self, rule: str, n: int = 1) -> None: ...


def check_rule(rule: str) -> None:
    """ValueError unless `rule` is a name of DROP_RULES."""
    if rule not in DROP_RULES:
        raise ValueError(f"drop rule {rule!r} is not in DROP_RULES (sources/base.py); use one of its names or add it there.")


class CounterSink:
    """A RuleCounter over a plain collections.Counter (the builders' per-split counts), checked
    against DROP_RULES like DropStats."""

    def __init__(self, counter: collections.Counter[str]) -> None:
        self.counter = counter

    def count(self, rule: str, n: int = 1) -> None:
        check_rule(rule)
        self.counter[rule] += n


class DropStats:
    """Thread-safe counters of dropped (or altered) inputs by rule name, plus kept records.

    Rule names are those of DROP_RULES (anything else is a ValueError, so one name means one
    thing everywhere). Several shards may be read concurrently into one DropStats.
    """

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._counts: collections.Counter[str] = collections.Counter()
        self._kept = 0

    def count(self, rule: str, n: int = 1) -> None:
        """Adds `n` (>= 0) to rule `rule`."""
        if n < 0:
            raise ValueError(f"DropStats.count({rule!r}, n={n}): n must be non-negative.")
        check_rule(rule)
        with self._lock:
            self._counts[rule] += n

    def keep(self, n: int = 1) -> None:
        """Adds `n` (>= 0) records handed out to the consumer."""
        if n < 0:
            raise ValueError(f"DropStats.keep(n={n}): n must be non-negative.")
        with self._lock:
            self._kept += n

    @property
    def kept(self) -> int:
        with self._lock:
            return self._kept

    def as_dict(self) -> dict[str, int]:
        """Drop counts by rule name, sorted by name (`kept` is not included)."""
        with self._lock:
            return dict(sorted(self._counts.items()))

    def merge(self, other: DropStats) -> None:
        """Adds `other`'s counts and kept records into this one."""
        counts, kept = other.as_dict(), other.kept  # read under other's lock, then write under ours
        with self._lock:
            self._counts.update(counts)
            self._kept += kept

    def __repr__(self) -> str:
        return f"DropStats(kept={self.kept}, dropped={self.as_dict()})"


class Source(Protocol):
    """A sharded stream of pair records; see the module docstring."""

    name: str
    stats: DropStats

    def shards(self) -> list[str]: ...

    def read_shard(self, index: int, start: int = 0) -> Iterator[Record]: ...


class RandomAccess(Source, Protocol):
    """A finite Source whose records can also be fetched by index, in [0, len(source))."""

    def __len__(self) -> int: ...

    def fetch(self, indices: Sequence[int]) -> list[Record]: ...


def is_random_access(source: Source) -> bool:
    """True when `source` offers `len()` and `fetch` (see RandomAccess)."""
    return callable(getattr(source, "fetch", None)) and callable(getattr(source, "__len__", None))


class _Sink:
    """Counts into a scratch DropStats while skipping to `start`, then into the source's."""

    def __init__(self) -> None:
        self.target: DropStats = DropStats()

    def count(self, rule: str, n: int = 1) -> None:
        self.target.count(rule, n)


ShardReader = Callable[[str, RuleCounter], Iterator[Record]]
"""(shard id, counter) -> the shard's records in their fixed order."""


class ShardedSource:
    """A `Source` from fixed shard ids and a function that reads one shard.

    The reader is called afresh for every `read_shard`, so two reads of a shard are
    independent and (for a deterministic reader) identical.
    """

    def __init__(self, name: str, shard_ids: list[str], reader: ShardReader):
        if not shard_ids:
            raise ValueError(f"Source {name!r} has no shards.")
        self.name = name
        self.stats = DropStats()
        self._shard_ids = list(shard_ids)
        self._reader = reader

    def shards(self) -> list[str]:
        return list(self._shard_ids)

    def read_shard(self, index: int, start: int = 0) -> Iterator[Record]:
        """Records of shard `index` after the first `start`; arguments are checked now, not
        when iteration begins."""
        if not _is_int(index) or not 0 <= index < len(self._shard_ids):
            raise IndexError(
                f"Source {self.name!r}: shard index {index!r} is outside [0, {len(self._shard_ids)})."
            )
        if not _is_int(start) or start < 0:
            raise ValueError(f"Source {self.name!r}: start={start!r} must be a non-negative int.")
        return self._read(self._shard_ids[operator.index(index)], operator.index(start))

    def _read(self, shard_id: str, start: int) -> Iterator[Record]:
        sink = _Sink()
        records = self._reader(shard_id, sink)
        collections.deque(itertools.islice(records, start), maxlen=0)  # consume without keeping
        sink.target = self.stats
        for record in records:
            self.stats.keep()
            yield record

    def __repr__(self) -> str:
        return f"{type(self).__name__}(name={self.name!r}, shards={len(self._shard_ids)})"


def _is_int(value: object) -> bool:
    """True for Python and NumPy integers, False for bools (a likely mistake) and floats."""
    if isinstance(value, bool):
        return False
    try:
        operator.index(value)
    except TypeError:
        return False
    return True


def as_str_tuple(owner: object, field: str, value: object) -> tuple[str, ...]:
    """`value` as a tuple of strings: one string becomes a 1-tuple; a list (as gin gives
    for `[...]`) or tuple must hold only strings. TypeError names the config field."""
    if isinstance(value, str):
        return (value,)
    if isinstance(value, collections.abc.Sequence) and all(isinstance(v, str) for v in value):
        return tuple(value)
    raise TypeError(
        f"{type(owner).__name__}.{field}={value!r} must be a string or a tuple of strings, "
        f"e.g. ('a', 'b')."
    )
