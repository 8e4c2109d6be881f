"""Input pipelines: deterministic global batches, this process's rows, exact resume.

Two paths, chosen by DataConfig.sources:

* No sources: the prepared TFDS pair dataset (``dataset``/``split``), random access.
  The global example stream is ``range(num_examples)`` shuffled by grain's index shuffle
  (a fresh permutation per epoch) and repeated forever; global batch ``s`` is stream rows
  ``[s*G, (s+1)*G)`` and process ``p`` of ``P`` owns rows ``[s*G + p*G/P, s*G + (p+1)*G/P)``.
  The position is the step alone (``PairBatches``).
* Sources (``StreamBatches``): a weighted mixture of streaming pair sources read by V virtual
  readers (data/stream.py). Reader v gives R = G/V rows per step, c_k(s) of them from source k
  (data/mixture.py); process p of P owns the contiguous readers [p*V/P, (p+1)*V/P) and reads
  only their shards, so its rows are the global rows [p*G/P, (p+1)*G/P) and the global batch,
  row order included, does not depend on P. The position is every reader's state
  (``StreamPosition``), saved in each checkpoint's meta under STREAM_META_KEY.

Either way, the global batch at step s depends on the data, the seed, G and s only (and V for
streams): resuming, or resuming with another process count, replays nothing and changes nothing.
"""

from __future__ import annotations

import dataclasses
import itertools
from collections.abc import Iterator, Sequence

import grain
import numpy as np
import tensorflow_datasets as tfds

from cpt_jax.data import builders, mixture
from cpt_jax.data.prefetch import Prefetch
from cpt_jax.data.sources.base import Source
from cpt_jax.data.stream import ReaderState, SourceReader
from cpt_jax.data.tokenizer import Tokenizer
from cpt_jax.typecheck import check_field_types

Batch = dict[str, np.ndarray]
STREAM_META_KEY = "data_stream"  # checkpoint meta key of StreamBatches.checkpoint_meta


@dataclasses.dataclass(frozen=True, kw_only=True)
class DataConfig:
    """What to read and how to tokenise it.

    data_dir, dataset, split: the prepared TFDS pair dataset, used when `sources` is empty.
    sources: streaming pair sources, each a config with .build() -> Source (data/sources/).
    weights: one positive mixture weight per source (any scale); empty for equal weights.
    stream_readers: V virtual readers; the global batch and every process count must divide it.
    shuffle_window: W pairs each reader of each source holds and permutes (the memory bound).
    num_negatives: hard negatives per pair from the records' "negatives" (fewer are masked out);
      0 leaves the batch and the loss as they are. Needs sources.
    log_fingerprints: the loop appends an order-free fingerprint of every global batch to
      <output_dir>/batch_fingerprints.jsonl (for checking resumes; costs a gather per step).
    """

    max_len_x: int
    max_len_y: int
    data_dir: str = ""
    dataset: str = "stdlib_code"
    split: str = "train"
    seed: int = 0  # shuffle seed, in [0, 2**32)
    num_threads: int = 2  # grain reader threads of the TFDS path (read + tokenise local batches)
    prefetch_batches: int = 4  # local batches buffered ahead of the consumer (0: none, synchronous)
    sources: tuple = ()
    weights: tuple = ()
    stream_readers: int = 16
    shuffle_window: int = 1024
    num_negatives: int = 0
    log_fingerprints: bool = False

    def __post_init__(self) -> None:
        check_field_types(self)
        for name in ("sources", "weights"):
            value = getattr(self, name)
            if not isinstance(value, (tuple, list)):
                raise TypeError(f"DataConfig.{name}={value!r} must be a tuple.")
            object.__setattr__(self, name, tuple(value))  # gin may bind a list
        if not self.sources and not self.data_dir:
            raise ValueError("DataConfig.data_dir is required for the prepared TFDS dataset; or set DataConfig.sources.")
        if self.weights and len(self.weights) != len(self.sources):
            raise ValueError(
                f"DataConfig.weights has {len(self.weights)} entries for {len(self.sources)} sources; "
                "give one weight per source (or none for equal weights)."
            )
        if self.weights:
            mixture.normalise(self.weights)
        if self.stream_readers <= 0 or self.shuffle_window <= 0 or self.num_negatives < 0 or self.prefetch_batches < 0:
            raise ValueError(
                f"DataConfig.stream_readers={self.stream_readers} and shuffle_window={self.shuffle_window} must be "
                f"positive, num_negatives={self.num_negatives} and prefetch_batches={self.prefetch_batches} non-negative."
            )
        if self.num_negatives and not self.sources:
            raise ValueError(
                f"DataConfig.num_negatives={self.num_negatives} needs DataConfig.sources with \"negatives\"; "
                "the prepared TFDS pairs have none."
            )


def check_process_slice(config: DataConfig, global_batch_size: int, process_index: int, process_count: int) -> None:
    """Raises ValueError unless this process's slice of the global batch is well defined: a positive
    batch and process count, a process index in range, a 32-bit seed. Both batch classes check it."""
    if global_batch_size <= 0 or process_count <= 0:
        raise ValueError(f"global_batch_size={global_batch_size} and process_count={process_count} must be positive.")
    if not 0 <= process_index < process_count:
        raise ValueError(f"process_index={process_index} is outside [0, {process_count}).")
    if not 0 <= config.seed < 2**32:
        raise ValueError(f"DataConfig.seed={config.seed} must be in [0, 2**32): the shuffles take a 32-bit seed.")


def check_stream_layout(config: DataConfig, global_batch_size: int, process_count: int) -> None:
    """Raises ValueError unless V divides the global batch and the process count divides V."""
    readers = config.stream_readers
    if global_batch_size % readers:
        raise ValueError(
            f"global batch {global_batch_size} is not divisible by DataConfig.stream_readers={readers}; make the "
            "batch a multiple of the readers (or lower stream_readers)."
        )
    if readers % process_count:
        raise ValueError(
            f"DataConfig.stream_readers={readers} is not divisible by the {process_count} processes; use a "
            "multiple of every process count the run may use (e.g. 16 for 1, 2, 4, 8, 16)."
        )


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
        check_process_slice(config, global_batch_size, process_index, process_count)
        if global_batch_size % process_count:
            raise ValueError(
                f"global_batch_size={global_batch_size} is not divisible by "
                f"process_count={process_count}; pick a multiple of the process count."
            )
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

    def produce(self, start_step: int = 0, resume: dict | None = None) -> Iterator[Produced]:
        """`iterate` as Produced items (position None: the step alone is the position)."""
        if resume is not None:
            raise ValueError("the TFDS path resumes from the step alone; it has no stream state.")
        return (Produced(batch, None) for batch in self.iterate(start_step))

    def _load_and_tokenize(self, indices: np.ndarray) -> Batch:
        records = [_decode(r) for r in self._source.__getitems__([int(i) for i in indices])]
        x_tokens, x_mask = self.tokenizer.encode(
            [r["x"] for r in records], "x", self.config.max_len_x
        )
        y_tokens, y_mask = self.tokenizer.encode(
            [r["y"] for r in records], "y", self.config.max_len_y
        )
        return {"x_tokens": x_tokens, "x_mask": x_mask, "y_tokens": y_tokens, "y_mask": y_mask}


@dataclasses.dataclass(frozen=True)
class StreamPosition:
    """Where this process's readers are after a batch: JSON-ready, gathered into checkpoints.

    step: the next step. readers: source name -> this process's reader states (ReaderState
    fields, in reader order). drop_stats: source name -> drop counts by rule and "kept"
    (DropStats) of this process's sources: records read so far, including any read ahead of
    the consumer.
    """

    step: int
    readers: dict[str, list[list[int]]]
    drop_stats: dict[str, dict]


@dataclasses.dataclass(frozen=True)
class Produced:
    """One local batch and the stream position after it (None on the step-indexed TFDS path)."""

    batch: Batch
    position: StreamPosition | None


class StreamBatches:
    """Process-local tokenised batches of a weighted mixture of streaming pair sources.

    Each batch has "x_tokens", "x_mask" [local, max_len_x] and "y_tokens", "y_mask"
    [local, max_len_y] (int32, local = global_batch_size // process_count); with
    num_negatives = n > 0 also "n_tokens", "n_mask" [local, n, max_len_y] (tokenised as the y
    side) and "n_valid" [local, n] (0 where a record had fewer than n negatives; such slots hold
    an empty text so their embeddings stay finite). Rows are reader-major, and within a reader
    source-major.
    """

    def __init__(
        self,
        config: DataConfig,
        tokenizer: Tokenizer,
        global_batch_size: int,
        process_index: int = 0,
        process_count: int = 1,
        sources: Sequence[Source] | None = None,
    ) -> None:
        if not config.sources and sources is None:
            raise ValueError("StreamBatches needs DataConfig.sources (or sources=...).")
        check_process_slice(config, global_batch_size, process_index, process_count)
        check_stream_layout(config, global_batch_size, process_count)
        self.config = config
        self.tokenizer = tokenizer
        self.sources = list(sources) if sources is not None else [c.build() for c in config.sources]
        names = [s.name for s in self.sources]
        if len(set(names)) != len(names):
            raise ValueError(f"source names {names} repeat; give every source a distinct name.")
        self.weights = mixture.normalise(config.weights or (1.0,) * len(self.sources))
        if len(self.weights) != len(self.sources):
            raise ValueError(f"{len(config.weights)} weights for {len(self.sources)} sources; give one per source.")
        self.rows_per_reader = global_batch_size // config.stream_readers
        per_process = config.stream_readers // process_count
        self.reader_ids = range(process_index * per_process, (process_index + 1) * per_process)
        self.num_shards = {s.name: len(s.shards()) for s in self.sources}

    def step_counts(self, step: int) -> list[int]:
        """Rows each source gives every reader at `step` (sums to global_batch_size / V)."""
        return mixture.step_counts(self.weights, self.rows_per_reader, step)

    def produce(self, start_step: int = 0, resume: dict | None = None) -> Prefetch[Produced]:
        """Produced batches of steps start_step, start_step + 1, ... forever.

        resume: the meta written by `checkpoint_meta` at start_step; None starts the stream at
        step 0. Prefetched in a thread (DataConfig.prefetch_batches); close() the result.
        """
        states = self._restore(start_step, resume)
        cfg = self.config
        readers = [  # [source][local reader]
            [
                SourceReader(src, cfg.seed, v, cfg.stream_readers, cfg.shuffle_window, state)
                for v, state in zip(self.reader_ids, states[src.name])
            ]
            for src in self.sources
        ]
        step = start_step

        def next_batch() -> Produced:
            nonlocal step
            counts = self.step_counts(step)
            records = [
                r for i in range(len(self.reader_ids)) for k, c in enumerate(counts) for r in readers[k][i].take(c)
            ]
            step += 1
            position = StreamPosition(
                step,
                {src.name: [list(r.state) for r in rs] for src, rs in zip(self.sources, readers)},
                {src.name: {**src.stats.as_dict(), "kept": src.stats.kept} for src in self.sources},
            )
            return Produced(tokenize_pairs(records, self.tokenizer, cfg), position)

        return Prefetch(next_batch, cfg.prefetch_batches)

    def checkpoint_meta(self, positions: Sequence[StreamPosition], drop_stats: dict) -> dict:
        """The JSON saved under STREAM_META_KEY: every reader's state, from the positions of all
        processes in process order (their readers are contiguous), and the run's drop counts."""
        steps = {p.step for p in positions}
        if len(steps) != 1:
            raise ValueError(f"processes are at different steps {sorted(steps)}; gather positions of one step.")
        readers = {name: [state for p in positions for state in p.readers[name]] for name in self.num_shards}
        if any(len(r) != self.config.stream_readers for r in readers.values()):
            raise ValueError("the positions do not cover every reader; pass one position per process, in order.")
        return {
            **self._layout(),
            "step": steps.pop(),
            "sources": [{"name": n, "num_shards": k, "readers": readers[n]} for n, k in self.num_shards.items()],
            "drop_stats": drop_stats,
        }

    def _layout(self) -> dict:
        cfg = self.config
        return {"seed": cfg.seed, "stream_readers": cfg.stream_readers, "shuffle_window": cfg.shuffle_window}

    def _restore(self, start_step: int, resume: dict | None) -> dict[str, list[ReaderState]]:
        """This process's reader states, checked against the saved layout."""
        if resume is None:
            if start_step:
                raise ValueError(f"resuming the stream at step {start_step} needs its saved state (resume=...).")
            return {name: [ReaderState()] * len(self.reader_ids) for name in self.num_shards}
        saved_layout = {k: resume[k] for k in self._layout()}
        saved_sources = {s["name"]: s["num_shards"] for s in resume["sources"]}
        if saved_layout != self._layout() or saved_sources != self.num_shards or resume["step"] != start_step:
            raise ValueError(
                f"The saved data stream (step {resume['step']}, {saved_layout}, sources and shard counts "
                f"{saved_sources}) does not match this run (step {start_step}, {self._layout()}, {self.num_shards}). "
                "Resume with the same data settings and sources, or train into a new TrainConfig.output_dir."
            )
        by_name = {s["name"]: s["readers"] for s in resume["sources"]}
        return {name: [ReaderState(*by_name[name][v]) for v in self.reader_ids] for name in self.num_shards}


def tokenize_pairs(records: Sequence[dict], tokenizer: Tokenizer, config: DataConfig) -> Batch:
    """{"x", "y", optional "negatives"} records -> the batch arrays (see StreamBatches)."""
    x_tokens, x_mask = tokenizer.encode([r["x"] for r in records], "x", config.max_len_x)
    y_tokens, y_mask = tokenizer.encode([r["y"] for r in records], "y", config.max_len_y)
    batch = {"x_tokens": x_tokens, "x_mask": x_mask, "y_tokens": y_tokens, "y_mask": y_mask}
    n = config.num_negatives
    if n:
        given = [list(r.get("negatives") or ())[:n] for r in records]
        texts = [negs[j] if j < len(negs) else "" for negs in given for j in range(n)]
        n_tokens, n_mask = tokenizer.encode(texts, "y", config.max_len_y)
        batch["n_tokens"] = n_tokens.reshape(len(records), n, -1)
        batch["n_mask"] = n_mask.reshape(len(records), n, -1)
        batch["n_valid"] = (np.arange(n)[None, :] < np.array([len(g) for g in given])[:, None]).astype(np.int32)
    return batch


def merge_counts(*counts: dict) -> dict:
    """Key-wise sum of nested dicts of counts (e.g. drop statistics of several processes)."""
    out: dict = {}
    for c in counts:
        for key, value in c.items():
            out[key] = merge_counts(out.get(key, {}), value) if isinstance(value, dict) else out.get(key, 0) + value
    return out


def iter_split_texts(dataset: str, split: str, data_dir: str) -> Iterator[dict[str, str]]:
    """Yields every ``{"x", "y", "module"}`` record of a split in its fixed on-disk order.

    The order is a deterministic function of the prepared files, so held-out
    retrieval sets built from it are reproducible.
    """
    source = open_source(dataset, split, data_dir)
    for index in range(len(source)):
        yield _decode(source[index])


def make_batches(
    config: DataConfig, tokenizer: Tokenizer, global_batch_size: int, process_index: int = 0, process_count: int = 1
) -> PairBatches | StreamBatches:
    """StreamBatches when DataConfig.sources is set, else PairBatches over the TFDS dataset."""
    kind = StreamBatches if config.sources else PairBatches
    return kind(config, tokenizer, global_batch_size, process_index, process_count)


def iter_training_texts(
    data_dir: str,
    datasets: Sequence[str] = builders.DATASETS,
    max_texts: int = 100_000,
) -> Iterator[str]:
    """Yields up to ``max_texts`` x and y texts of the train splits, for tokenizer training.

    Datasets are interleaved record by record so each contributes even when
    the bound cuts the stream short.
    """
    yield from _interleave_texts([iter_split_texts(name, "train", data_dir) for name in datasets], max_texts)


def iter_source_texts(sources: Sequence[Source], max_texts: int = 100_000) -> Iterator[str]:
    """Yields up to ``max_texts`` x and y texts of the sources (shards in order), for tokenizer
    training; sources are interleaved record by record."""
    yield from _interleave_texts([_all_records(source) for source in sources], max_texts)


def _all_records(source: Source) -> Iterator[dict]:
    for index in range(len(source.shards())):
        yield from source.read_shard(index)


def _interleave_texts(streams: Sequence[Iterator[dict]], max_texts: int) -> Iterator[str]:
    texts = [itertools.chain.from_iterable((r["x"], r["y"]) for r in stream) for stream in streams]
    interleaved = itertools.chain.from_iterable(itertools.zip_longest(*texts))
    yield from itertools.islice((t for t in interleaved if t is not None), max_texts)
