"""The `Source` interface, drop counters and the shared shard reader.

A source is a list of shards (files, or TFDS shard slices) whose pair records can be read
independently and deterministically:

    source.shards() -> list[str]                # stable ids, cheap to list (nothing is read)
    source.read_shard(index, start=0)           # iterator of records, skipping `start` pairs
    source.stats                                # DropStats, updated while shards are read

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
from collections.abc import Callable, Iterator
from typing import Protocol

Record = dict[str, object]  # {"x": str, "y": str[, "negatives": list[str]]}


class RuleCounter(Protocol):
    """Anything that counts drops by rule name: `DropStats` or a shard reader's sink."""

    def count(self, rule: str, n: int = 1) -> None: ...


class DropStats:
    """Thread-safe counters of dropped (or altered) inputs by rule name, plus kept records.

    Rule names are stable strings documented by each source module ("empty", "too_short",
    "near_duplicate", ...). Several shards may be read concurrently into one DropStats.
    """

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._counts: collections.Counter[str] = collections.Counter()
        self._kept = 0

    def count(self, rule: str, n: int = 1) -> None:
        """Adds `n` (>= 0) to rule `rule`."""
        if n < 0:
            raise ValueError(f"DropStats.count({rule!r}, n={n}): n must be non-negative.")
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
