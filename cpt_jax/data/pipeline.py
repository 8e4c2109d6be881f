"""Streaming, multi-host-deterministic input pipeline over the prepared pair datasets.

The global example stream is ``range(num_examples)`` shuffled by grain's
index shuffle (a fresh permutation per epoch) and repeated forever; global
batch ``s`` is stream rows ``[s*G, (s+1)*G)`` and process ``p`` of ``P`` owns
rows ``[s*G + p*G/P, s*G + (p+1)*G/P)``. Everything is index arithmetic, so

* the global batch depends only on (dataset, split, seed, G, s), never on P;
* resuming at ``start_step`` seeks directly (no replay of earlier steps);
* records are read from array_record files on demand (never all in memory)
  and only the process's own rows are read and tokenised.
"""

from __future__ import annotations

import dataclasses
import itertools
from collections.abc import Iterator, Sequence

import grain
import numpy as np
import tensorflow_datasets as tfds

from cpt_jax.data import builders
from cpt_jax.data.tokenizer import Tokenizer
from cpt_jax.typecheck import check_field_types

Batch = dict[str, np.ndarray]


@dataclasses.dataclass(frozen=True, kw_only=True)
class DataConfig:
    """Which prepared dataset to stream and how to tokenise it."""

    data_dir: str
    max_len_x: int
    max_len_y: int
    dataset: str = "stdlib_code"
    split: str = "train"
    seed: int = 0  # shuffle seed, in [0, 2**32)
    num_threads: int = 2  # grain reader threads (read + tokenise local batches)
    prefetch_batches: int = 4  # local batches buffered ahead of the consumer

    def __post_init__(self) -> None:
        check_field_types(self)


def open_source(dataset: str, split: str, data_dir: str) -> Sequence[dict]:
    """Random-access source over one prepared split; records are dicts of bytes.

    ``split`` may use TFDS slicing, e.g. ``"train[:1000]"``. Raises ValueError
    if the dataset is not prepared under ``data_dir`` or the split is unknown
    or empty.
    """
    builder = tfds.builder(dataset, data_dir=data_dir)
    if not builder.is_prepared():
        raise ValueError(
            f"Dataset {dataset!r} is not prepared under {data_dir!r}; build it with "
            f"cpt_jax.data.builders.prepare({dataset!r}, {data_dir!r})."
        )
    try:
        num_examples = builder.info.splits[split].num_examples  # also parses "train[:10%]"
    except (KeyError, ValueError) as e:
        raise ValueError(f"Dataset {dataset!r} has no split {split!r}: {e}") from e
    if num_examples == 0:
        raise ValueError(
            f"Split {split!r} of dataset {dataset!r} under {data_dir!r} is empty; "
            "choose a split (or slice) with examples."
        )
    return tfds.data_source(dataset, split=split, data_dir=data_dir, download=False)


def _decode(record: dict) -> dict[str, str]:
    return {key: record[key].decode("utf-8") for key in ("x", "y", "module")}


class PairBatches:
    """Process-local tokenised batches of the global shuffled pair stream.

    Each batch is ``{"x_tokens", "x_mask", "y_tokens", "y_mask"}``, int32
    arrays of shape [global_batch_size // process_count, max_len_{x,y}].
    """

    def __init__(
        self,
        config: DataConfig,
        tokenizer: Tokenizer,
        global_batch_size: int,
        process_index: int = 0,
        process_count: int = 1,
    ):
        if global_batch_size <= 0 or process_count <= 0:
            raise ValueError(
                f"global_batch_size={global_batch_size} and process_count={process_count} "
                "must be positive."
            )
        if global_batch_size % process_count:
            raise ValueError(
                f"global_batch_size={global_batch_size} is not divisible by "
                f"process_count={process_count}; pick a multiple of the process count."
            )
        if not 0 <= process_index < process_count:
            raise ValueError(f"process_index={process_index} is outside [0, {process_count}).")
        if not 0 <= config.seed < 2**32:
            raise ValueError(f"seed={config.seed} must be in [0, 2**32) for grain's index shuffle.")
        self.config = config
        self.tokenizer = tokenizer
        self.global_batch_size = global_batch_size
        self.local_batch_size = global_batch_size // process_count
        self._source = open_source(config.dataset, config.split, config.data_dir)
        self.num_examples = len(self._source)

        stream = grain.MapDataset.range(self.num_examples).shuffle(seed=config.seed).repeat()
        # Chunk k of the stream holds rows [k*L, (k+1)*L); global batch s is the
        # chunks s*P .. s*P+P-1, of which this process takes chunk s*P + p.
        chunks = stream.batch(self.local_batch_size, batch_fn=np.asarray)
        self._local_indices = chunks.slice(slice(process_index, None, process_count))
        self._batches = self._local_indices.map(self._load_and_tokenize)

    @property
    def steps_per_epoch(self) -> float:
        """Global batches per pass over the split (batches may straddle epochs)."""
        return self.num_examples / self.global_batch_size

    def indices(self, step: int) -> np.ndarray:
        """Split record indices of this process's rows at ``step``: int64 [local_batch]."""
        return self._local_indices[step]

    def batch(self, step: int) -> Batch:
        """This process's batch at ``step``, computed directly (random access)."""
        return self._batches[step]

    def iterate(self, start_step: int = 0) -> Iterator[Batch]:
        """Yields batches ``start_step, start_step + 1, ...`` forever, prefetched in threads."""
        if start_step < 0:
            raise ValueError(f"start_step={start_step} must be non-negative.")
        options = grain.ReadOptions(
            num_threads=self.config.num_threads,
            prefetch_buffer_size=self.config.prefetch_batches,
        )
        return iter(self._batches[start_step:].to_iter_dataset(options))

    def _load_and_tokenize(self, indices: np.ndarray) -> Batch:
        records = [_decode(r) for r in self._source.__getitems__([int(i) for i in indices])]
        x_tokens, x_mask = self.tokenizer.encode(
            [r["x"] for r in records], "x", self.config.max_len_x
        )
        y_tokens, y_mask = self.tokenizer.encode(
            [r["y"] for r in records], "y", self.config.max_len_y
        )
        return {"x_tokens": x_tokens, "x_mask": x_mask, "y_tokens": y_tokens, "y_mask": y_mask}


def iter_split_texts(dataset: str, split: str, data_dir: str) -> Iterator[dict[str, str]]:
    """Yields every ``{"x", "y", "module"}`` record of a split in its fixed on-disk order.

    The order is a deterministic function of the prepared files, so held-out
    retrieval sets built from it are reproducible.
    """
    source = open_source(dataset, split, data_dir)
    for index in range(len(source)):
        yield _decode(source[index])


def iter_training_texts(
    data_dir: str,
    datasets: Sequence[str] = builders.DATASETS,
    max_texts: int = 100_000,
) -> Iterator[str]:
    """Yields up to ``max_texts`` x and y texts of the train splits, for tokenizer training.

    Datasets are interleaved record by record so each contributes even when
    the bound cuts the stream short.
    """
    per_dataset = [
        itertools.chain.from_iterable(
            (record["x"], record["y"]) for record in iter_split_texts(name, "train", data_dir)
        )
        for name in datasets
    ]
    interleaved = itertools.chain.from_iterable(itertools.zip_longest(*per_dataset))
    yield from itertools.islice((t for t in interleaved if t is not None), max_texts)
