"""How the V virtual readers read a source: windowed-shuffle readers over shards (streaming
sources), or contiguous slices of one global permutation (random-access sources, GlobalOrder).

Streaming sources, SourceReader: one source's shards split over V virtual readers.

Reader v of V owns a fixed slice of the source's shards:
* with at least V shards, the shards i with i % V == v, read whole;
* with n < V shards, shard v % n, shared by the g = |{u < V: u % n == v % n}| readers of that
  shard, of which reader v (rank v // n) keeps the records j with j % g == v // n. Each sharing
  reader parses the whole shard and keeps 1/g of it (so the source counts that shard's drops
  and kept records g times).
Each epoch visits the reader's shards in an order permuted by (seed, source, reader, epoch);
epochs repeat forever. The reader's endless stream of pairs is cut into windows of W pairs;
window w is permuted by (seed, source, reader, w) before its pairs are emitted, so a reader
holds at most W pairs and nothing is ever read whole.

A reader's state is five integers (ReaderState): the stream cursor (epoch, position in the
epoch's shard order, record offset within that shard) where the current window STARTS, how many
of the window's pairs were emitted, and the window counter. Restoring re-reads only the current
window (at most W pairs) and skips what was emitted: the continuation is exact.
"""

from __future__ import annotations

import dataclasses
import zlib
from collections.abc import Iterator
from typing import NamedTuple

import grain
import numpy as np

from cpt_jax.data.sources.base import Record, Source


class ReaderState(NamedTuple):
    """Where a reader is; the window starts at (epoch, position, offset) and 0 <= index < W."""

    epoch: int = 0
    position: int = 0  # index into the epoch's permuted shard order
    offset: int = 0  # record index within that shard (before striding) at the window start
    index: int = 0  # pairs of the current window already emitted
    window: int = 0  # windows completed so far: the current window's shuffle seed


@dataclasses.dataclass(frozen=True)
class ShardSlice:
    """The records j of shard `shard` with j % stride == rank."""

    shard: int
    stride: int = 1
    rank: int = 0


def reader_slices(num_shards: int, num_readers: int, reader: int) -> list[ShardSlice]:
    """The shard slices reader `reader` of `num_readers` owns (see the module docstring)."""
    if num_shards <= 0:
        raise ValueError("a source must have at least one shard.")
    if num_shards >= num_readers:
        return [ShardSlice(i) for i in range(reader, num_shards, num_readers)]
    shard = reader % num_shards
    return [ShardSlice(shard, len(range(shard, num_readers, num_shards)), reader // num_shards)]


def source_key(name: str) -> int:
    """A source's seed component: from its name, so a source's stream does not depend on
    which other sources are mixed in, or in which order."""
    return zlib.crc32(name.encode("utf-8"))


class SourceReader:
    """Reader `reader` of `num_readers` over `source`: an endless, resumable stream of pairs.

    `take(n)` returns the next n pairs; `state` is the ReaderState after them.
    """

    def __init__(
        self,
        source: Source,
        seed: int,
        reader: int,
        num_readers: int,
        window: int,
        state: ReaderState = ReaderState(),
    ) -> None:
        if window <= 0:
            raise ValueError(f"shuffle window {window} must be positive.")
        self.source = source
        self.reader = reader
        self.window = window
        self._slices = reader_slices(len(source.shards()), num_readers, reader)
        self._seed = (seed, source_key(source.name), reader)
        state = ReaderState(*state)
        if not 0 <= state.index < window or min(state) < 0:
            raise ValueError(f"reader state {tuple(state)} is invalid for a shuffle window of {window}.")
        self._start = (state.epoch, state.position, state.offset)
        self._index = state.index
        self._window_id = state.window
        self._buffer: list[Record] | None = None  # the current window, permuted
        self._end: tuple[int, int, int] | None = None  # cursor after the current window
        self._pairs: Iterator[tuple[Record, tuple[int, int, int]]] | None = None
        self._orders: dict[int, np.ndarray] = {}

    @property
    def state(self) -> ReaderState:
        return ReaderState(*self._start, self._index, self._window_id)

    @property
    def buffered(self) -> int:
        """Pairs held in memory (never more than the window)."""
        return 0 if self._buffer is None else self.window - self._index

    def take(self, n: int) -> list[Record]:
        """The next n pairs of this reader's stream."""
        out: list[Record] = []
        while len(out) < n:
            if self._buffer is None:
                self._fill()
            k = min(n - len(out), self.window - self._index)
            out.extend(self._buffer[self._index : self._index + k])
            self._index += k
            if self._index == self.window:
                # The next window starts where this one ended; it is read on demand.
                self._start, self._index, self._window_id = self._end, 0, self._window_id + 1
                self._buffer = None
        return out

    def _fill(self) -> None:
        if self._pairs is None:
            self._pairs = self._stream(*self._start)
        pairs, cursor = [], self._start
        for _ in range(self.window):
            record, cursor = next(self._pairs)
            pairs.append(record)
        order = np.random.default_rng([*self._seed, self._window_id, 1]).permutation(self.window)
        self._buffer = [pairs[i] for i in order]
        self._end = cursor

    def _order(self, epoch: int) -> np.ndarray:
        if epoch not in self._orders:
            self._orders = {epoch: np.random.default_rng([*self._seed, epoch, 0]).permutation(len(self._slices))}
        return self._orders[epoch]

    def _stream(self, epoch: int, position: int, offset: int) -> Iterator[tuple[Record, tuple[int, int, int]]]:
        """Every pair from the cursor on, each with the cursor just after it."""
        while True:
            whole_epoch, emitted = position == 0 and offset == 0, False
            order = self._order(epoch)
            while position < len(order):
                piece = self._slices[order[position]]
                for j, record in enumerate(self.source.read_shard(piece.shard, offset), start=offset):
                    if j % piece.stride == piece.rank:
                        emitted = True
                        yield record, (epoch, position, j + 1)
                position, offset = position + 1, 0
            if whole_epoch and not emitted:
                raise ValueError(
                    f"Reader {self.reader} of source {self.source.name!r} found no pairs in its shard slices "
                    f"{self._slices}: the source has too few pairs for DataConfig.stream_readers readers. Lower "
                    "stream_readers, or give the source more (or more evenly filled) shards."
                )
            epoch, position = epoch + 1, 0


class GlobalOrder:
    """A random-access source of n records as one endless stream: a permutation of range(n),
    fresh every epoch (grain's index shuffle of `seed`), repeated.

    The batcher cuts it into contiguous slices: at step s, reader v takes the c rows at
    V * A(s) + v * c, where A(s) is the rows each reader took from this source before step s and
    c = A(s+1) - A(s) (data/mixture.py). So the stream is consumed in order, its position is
    V * A(s) (a function of the step), and with one source the global batch s is stream rows
    [s*G, (s+1)*G) whatever the process count.
    """

    def __init__(self, size: int, seed: int) -> None:
        if size <= 0:
            raise ValueError(f"a random-access source must hold records (it has {size}).")
        self.size = size
        self._stream = grain.MapDataset.range(size).shuffle(seed=seed).repeat()

    def rows(self, start: int, stop: int) -> np.ndarray:
        """Record indices of stream rows [start, stop): int64."""
        return np.array([self._stream[i] for i in range(start, stop)], np.int64)
