"""(x, y) pairs of a prepared TFDS pair dataset (features "x", "y", "module"), e.g. the built-in
stdlib corpora `stdlib_code` and `stdlib_text` (data/builders/).

The source offers random access (base.RandomAccess): the batcher reads it as one global stream,
`grain.MapDataset.range(n).shuffle(seed).repeat()` — a fresh permutation of the whole split every
epoch — so its position is a function of the step, and nothing about it is saved to resume. Read
as shards (tokenizer texts, `iter_records`), it is one shard: the split in its on-disk order.

The dataset must be array_record (random access). `prepare()` builds a built-in dataset once
(idempotent); any other dataset must already be prepared under `data_dir`. Records are
{"x", "y", "module"}; the dataset was filtered when it was built (its drop counts are in its
metadata, builders.drop_counts), so reading it drops nothing.

TensorFlow and TFDS are imported by `build()`/`prepare()`, not on import.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterator, Sequence
from typing import ClassVar

from cpt_jax.data.sources.base import DropStats, Record
from cpt_jax.typecheck import check_field_types

_READ_BATCH = 256  # records fetched per call when reading in order


@dataclasses.dataclass(frozen=True, kw_only=True)
class PreparedPairsSource:
    """The `split` of prepared TFDS pair dataset `dataset` under `data_dir`."""

    RANDOM_ACCESS: ClassVar[bool] = True  # build() gives a random-access source (data/config.readers_for)

    dataset: str  # e.g. "stdlib_code"
    data_dir: str  # where the dataset is (or, for a built-in one, will be) prepared
    split: str = "train"  # TFDS slicing allowed, e.g. "train[:1000]"
    name: str = ""  # "" -> the dataset's name

    def __post_init__(self) -> None:
        check_field_types(self)
        if not self.dataset or not self.data_dir:
            raise ValueError(
                f"PreparedPairsSource needs a dataset and a data_dir (got {self.dataset!r}, {self.data_dir!r}); "
                "e.g. PreparedPairsSource(dataset='stdlib_code', data_dir='outputs/tfds')."
            )
        if not self.name:
            object.__setattr__(self, "name", self.dataset)

    def prepare(self) -> None:
        """Builds the dataset under data_dir if it is a built-in one that is not built yet."""
        from cpt_jax.data import builders

        if self.dataset in builders.BUILT_IN:
            builders.prepare(self.dataset, self.data_dir)

    def build(self) -> PreparedPairs:
        """The source; ValueError if the dataset is not prepared or the split is unknown or empty."""
        return PreparedPairs(self.name, open_split(self.dataset, self.split, self.data_dir))


class PreparedPairs:
    """A random-access Source over one prepared split (see the module docstring)."""

    def __init__(self, name: str, data: Sequence[dict]) -> None:
        self.name = name
        self.stats = DropStats()
        self._data = data

    def shards(self) -> list[str]:
        return [self.name]

    def __len__(self) -> int:
        return len(self._data)

    def fetch(self, indices: Sequence[int]) -> list[Record]:
        """The records at `indices`, in that order."""
        records = [decode(r) for r in self._data.__getitems__([int(i) for i in indices])]
        self.stats.keep(len(records))
        return records

    def read_shard(self, index: int, start: int = 0) -> Iterator[Record]:
        """Every record from `start` on, in on-disk order."""
        if index != 0:
            raise IndexError(f"Source {self.name!r} has one shard; index {index!r} is outside [0, 1).")
        if start < 0:
            raise ValueError(f"Source {self.name!r}: start={start!r} must be non-negative.")
        return self._read(start)

    def _read(self, start: int) -> Iterator[Record]:
        for first in range(start, len(self), _READ_BATCH):
            yield from self.fetch(range(first, min(first + _READ_BATCH, len(self))))

    def __repr__(self) -> str:
        return f"PreparedPairs(name={self.name!r}, records={len(self)})"


def decode(record: dict) -> dict[str, str]:
    """A stored example (bytes features) as {"x", "y", "module"} strings."""
    return {key: record[key].decode("utf-8") for key in ("x", "y", "module")}


def open_split(dataset: str, split: str, data_dir: str) -> Sequence[dict]:
    """Random-access view of one prepared split; records are dicts of bytes.

    Raises ValueError if the dataset is not prepared under data_dir, or the split is unknown or
    empty; each message says what to change.
    """
    import tensorflow_datasets as tfds

    from cpt_jax.data import builders  # registers the built-in datasets with TFDS

    builder = tfds.builder(dataset, data_dir=data_dir)
    if not builder.is_prepared():
        fix = (
            f"build it with cpt_jax.data.builders.prepare({dataset!r}, {data_dir!r})"
            if dataset in builders.BUILT_IN
            else "prepare it there first (this source never downloads)"
        )
        raise ValueError(f"Dataset {dataset!r} is not prepared under {data_dir!r}; {fix}.")
    try:
        num_examples = builder.info.splits[split].num_examples  # also parses "train[:10%]"
    except (KeyError, ValueError) as e:
        raise ValueError(f"Dataset {dataset!r} has no split {split!r}: {e}") from e
    if num_examples == 0:
        raise ValueError(
            f"Split {split!r} of dataset {dataset!r} under {data_dir!r} is empty; choose a split (or slice) with examples."
        )
    return tfds.data_source(dataset, split=split, data_dir=data_dir, download=False)


def iter_records(dataset: str, split: str, data_dir: str) -> Iterator[dict[str, str]]:
    """Every {"x", "y", "module"} record of a split in its fixed on-disk order."""
    data = open_split(dataset, split, data_dir)
    for first in range(0, len(data), _READ_BATCH):
        yield from (decode(r) for r in data.__getitems__(list(range(first, min(first + _READ_BATCH, len(data))))))
