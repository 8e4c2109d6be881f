"""The input pipeline: deterministic global batches of a weighted mixture of sources, this
process's rows of them, exact resume.

Every dataset is a Source (data/sources/), the built-in stdlib corpora included
(PreparedPairsSource), and one batcher, `Batches`, reads them all. V virtual readers each give
R = G/V rows per step, c_k(s) of them from source k (data/mixture.py); rows are reader-major
and, within a reader, source-major. Process p of P owns the contiguous readers
[p*V/P, (p+1)*V/P), so its rows are the global rows [p*G/P, (p+1)*G/P) and the global batch,
row order included, does not depend on P. How a reader reads source k depends on the source:

* a streaming source: the reader's own shards, windowed shuffle (stream.SourceReader); its
  position is every reader's state (ReaderState), saved in each checkpoint's meta under
  STREAM_META_KEY;
* a random-access source (len + fetch, e.g. a prepared TFDS split): contiguous slices of one
  global stream permuted anew every epoch (stream.GlobalOrder), a true global shuffle; its
  position is a function of the step and the mixture counts, so nothing of it is saved. With
  that one source, global batch s is rows [s*G, (s+1)*G) of
  `grain.MapDataset.range(n).shuffle(seed=seed).repeat()`.

The global batch at step s depends on the data, the seed, G, V and s only: resuming, or
resuming with another process count, replays nothing and changes nothing.
"""

from __future__ import annotations

import dataclasses
import itertools
from collections.abc import Iterator, Sequence

import numpy as np

from cpt_jax.batch import ContentIds, Negatives, PairBatch, padded_side
from cpt_jax.data import mixture
from cpt_jax.data.content import content_ids
from cpt_jax.data.config import DataConfig, check_process_slice, check_stream_layout, readers_for, require_sources
from cpt_jax.data.prefetch import Prefetch
from cpt_jax.data.sources.base import Record, Source, is_random_access
from cpt_jax.data.sources.prepared_pairs import iter_records
from cpt_jax.data.stream import GlobalOrder, ReaderState, SourceReader
from cpt_jax.data.tokenizer import Tokenizer

STREAM_META_KEY = "data_stream"  # checkpoint meta key of Batches.checkpoint_meta
LAYOUT_DEFAULTS = {"batching": "mixed"}  # layout keys that checkpoints written before them lack


def source_schedule(config: DataConfig, num_sources: int, rows_per_step: int) -> mixture.Schedule:
    """How many of a step's rows_per_step rows each of the config's num_sources sources gives
    (DataConfig.weights, equal without them; one source per step with batching="by_source",
    its pattern shifted by the seed)."""
    weights = mixture.normalise(config.weights or (1.0,) * num_sources)
    if len(weights) != num_sources:
        raise ValueError(f"{len(weights)} weights for {num_sources} sources; give one per source.")
    return mixture.Schedule(weights, rows_per_step, by_source=config.batching == "by_source", offset=config.seed)


@dataclasses.dataclass(frozen=True)
class StreamPosition:
    """Where this process's readers are after a batch: JSON-ready, gathered into checkpoints.

    step: the next step. readers: streaming source name -> this process's reader states
    (ReaderState fields, in reader order); random-access sources have none (their position is
    the step). drop_stats: source name -> drop counts by rule and "kept" (DropStats) of this
    process's sources: records read so far, including any read ahead of the consumer.
    """

    step: int
    readers: dict[str, list[list[int]]]
    drop_stats: dict[str, dict]


@dataclasses.dataclass(frozen=True)
class Produced:
    """One local batch and the stream position after it."""

    batch: PairBatch
    position: StreamPosition


class Batches:
    """Process-local tokenised PairBatches of a weighted mixture of pair sources.

    x, y: PaddedSide [local, max_len_{x,y}] (int32, local = global_batch_size // process_count);
    with num_negatives = n > 0, negatives: Negatives of [local, n, max_len_y] (tokenised as the
    y side) and valid [local, n]. Rows are reader-major, and within a reader source-major.
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
        check_process_slice(config, global_batch_size, process_index, process_count)
        if sources is None:
            require_sources(config)
        self.config = config
        self.tokenizer = tokenizer
        self.sources = list(sources) if sources is not None else [c.build() for c in config.sources]
        random_access = [is_random_access(s) for s in self.sources]
        check_stream_layout(config, global_batch_size, process_count, random_access)
        self.num_readers = readers_for(config, process_count, random_access)
        names = [s.name for s in self.sources]
        if len(set(names)) != len(names):
            raise ValueError(f"source names {names} repeat; give every source a distinct name.")
        self.rows_per_reader = global_batch_size // self.num_readers
        self.schedule = source_schedule(config, len(self.sources), self.rows_per_reader)
        self.instructions = config.instructions or (("", ""),) * len(self.sources)
        if len(self.instructions) != len(self.sources):
            raise ValueError(
                f"{len(self.instructions)} instruction pairs for {len(self.sources)} sources; give one per source."
            )
        per_process = self.num_readers // process_count
        self.reader_ids = range(process_index * per_process, (process_index + 1) * per_process)
        # Random-access sources: records; streaming sources: shards. Checked again on resume.
        self.sizes = {s.name: len(s) if is_random_access(s) else len(s.shards()) for s in self.sources}
        self._orders = {s.name: GlobalOrder(len(s), config.seed) for s in self.sources if is_random_access(s)}

    @property
    def streaming(self) -> list[Source]:
        """The sources read by shuffled readers, whose positions checkpoints must save."""
        return [s for s in self.sources if s.name not in self._orders]

    def step_counts(self, step: int) -> list[int]:
        """Rows each source gives every reader at `step` (sums to global_batch_size / V; with
        DataConfig.batching="by_source", all from one source)."""
        return self.schedule.step(step)

    def produce(self, start_step: int = 0, resume: dict | None = None) -> Prefetch[Produced]:
        """Produced batches of steps start_step, start_step + 1, ... forever.

        resume: `resume_meta` of the checkpoint at start_step (None at step 0, or when every
        source is random access). Prefetched in a thread (DataConfig.prefetch_batches); close() it.
        """
        states = self._restore(start_step, resume)
        cfg = self.config
        readers = {
            src.name: [
                SourceReader(src, cfg.seed, v, cfg.stream_readers, cfg.shuffle_window, state)
                for v, state in zip(self.reader_ids, states[src.name])
            ]
            for src in self.streaming
        }
        step = start_step

        def next_batch() -> Produced:
            nonlocal step
            records = self._records(step, readers)
            step += 1
            position = StreamPosition(
                step,
                {name: [list(r.state) for r in rs] for name, rs in readers.items()},
                {src.name: {**src.stats.as_dict(), "kept": src.stats.kept} for src in self.sources},
            )
            return Produced(tokenize_pairs(records, self.tokenizer, cfg), position)

        return Prefetch(next_batch, cfg.prefetch_batches)

    def _records(self, step: int, readers: dict[str, list[SourceReader]]) -> list[Record]:
        """This process's records of `step`, reader-major then source-major."""
        counts = self.step_counts(step)
        before = self.schedule.cumulative(step)
        per_source: list[list[list[Record]]] = []  # [source][local reader] -> records
        for src, count, done, prefixes in zip(self.sources, counts, before, self.instructions):
            if count == 0:
                per_source.append([[] for _ in self.reader_ids])
                continue
            if src.name in readers:
                parts = [r.take(count) for r in readers[src.name]]
            else:  # the local readers' slices are contiguous in the global stream: fetch them at once
                first = self.num_readers * done + self.reader_ids[0] * count
                rows = src.fetch(self._orders[src.name].rows(first, first + count * len(self.reader_ids)))
                parts = [rows[i * count : (i + 1) * count] for i in range(len(self.reader_ids))]
            per_source.append([[with_instruction(r, *prefixes) for r in part] for part in parts])
        return [r for i in range(len(self.reader_ids)) for part in per_source for r in part[i]]

    def checkpoint_meta(self, positions: Sequence[StreamPosition], drop_stats: dict) -> dict:
        """The JSON saved under STREAM_META_KEY: every streaming reader's state, from the positions
        of all processes in process order (their readers are contiguous), and the run's drop counts."""
        steps = {p.step for p in positions}
        if len(steps) != 1:
            raise ValueError(f"processes are at different steps {sorted(steps)}; gather positions of one step.")
        readers = {s.name: [state for p in positions for state in p.readers[s.name]] for s in self.streaming}
        if any(len(r) != self.config.stream_readers for r in readers.values()):
            raise ValueError("the positions do not cover every reader; pass one position per process, in order.")
        return self._meta(steps.pop(), readers, drop_stats)

    def resume_meta(self, saved: dict | None, start_step: int) -> dict | None:
        """The `resume` argument of `produce` from a checkpoint's STREAM_META_KEY entry.

        None at step 0. A checkpoint without the entry (written before positions were saved)
        resumes when every source is random access (its position is the step); otherwise
        ValueError, since the streaming readers' states are lost.
        """
        if saved is not None or start_step == 0:
            return saved
        if self.streaming:
            raise ValueError(
                f"The checkpoint at step {start_step} has no data stream position ({STREAM_META_KEY!r} in its "
                f"meta), so the readers of {[s.name for s in self.streaming]} cannot resume where they were. Train "
                "into a new TrainConfig.output_dir, or resume with only random-access sources (prepared datasets)."
            )
        return self._meta(start_step, {}, {})

    def _meta(self, step: int, readers: dict[str, list], drop_stats: dict) -> dict:
        def entry(name: str) -> dict:
            if name in self._orders:
                return {"name": name, "num_examples": self.sizes[name]}
            return {"name": name, "num_shards": self.sizes[name], "readers": readers[name]}

        return {**self._layout(), "step": step, "sources": [entry(s.name) for s in self.sources], "drop_stats": drop_stats}

    def _layout(self) -> dict:
        cfg = self.config
        return {"seed": cfg.seed, "stream_readers": cfg.stream_readers, "shuffle_window": cfg.shuffle_window,
                "batching": cfg.batching}

    def _restore(self, start_step: int, resume: dict | None) -> dict[str, list[ReaderState]]:
        """This process's reader states, checked against the saved layout and sources."""
        if start_step < 0:
            raise ValueError(f"start_step={start_step} must be non-negative.")
        if resume is None:
            resume = self.resume_meta(None, start_step)  # raises unless the position is the step
            if resume is None:
                return {s.name: [ReaderState()] * len(self.reader_ids) for s in self.streaming}
        saved_layout = {k: resume.get(k, LAYOUT_DEFAULTS.get(k)) for k in self._layout()}
        saved_sizes = {s["name"]: s.get("num_shards", s.get("num_examples")) for s in resume["sources"]}
        if saved_layout != self._layout() or saved_sizes != self.sizes or resume["step"] != start_step:
            raise ValueError(
                f"The saved data stream (step {resume['step']}, {saved_layout}, sources and sizes {saved_sizes}) "
                f"does not match this run (step {start_step}, {self._layout()}, {self.sizes}). Resume with the "
                "same data settings and sources, or train into a new TrainConfig.output_dir."
            )
        by_name = {s["name"]: s.get("readers") for s in resume["sources"]}
        return {s.name: [ReaderState(*by_name[s.name][v]) for v in self.reader_ids] for s in self.streaming}


def tokenize_pairs(records: Sequence[Record], tokenizer: Tokenizer, config: DataConfig) -> PairBatch:
    """{"x", "y", optional "negatives"} records -> the PairBatch (see Batches), with the content ids
    (content_ids) of every text as the model reads it, for false-negative masking in the loss."""
    x = padded_side(*tokenizer.encode([r["x"] for r in records], "x", config.max_len_x))
    y = padded_side(*tokenizer.encode([r["y"] for r in records], "y", config.max_len_y))
    x_ids, y_ids = content_ids([r["x"] for r in records]), content_ids([r["y"] for r in records])
    n = config.num_negatives
    if not n:
        return PairBatch(x, y, ids=ContentIds(x_ids, y_ids))
    given = [list(r.get("negatives") or ())[:n] for r in records]
    texts = [negs[j] if j < len(negs) else "" for negs in given for j in range(n)]
    n_tokens, n_mask = tokenizer.encode(texts, "y", config.max_len_y)
    side = padded_side(n_tokens.reshape(len(records), n, -1), n_mask.reshape(len(records), n, -1))
    valid = (np.arange(n)[None, :] < np.array([len(g) for g in given])[:, None]).astype(np.int32)
    ids = ContentIds(x_ids, y_ids, content_ids(texts).reshape(len(records), n, 2))
    return PairBatch(x, y, Negatives(side, valid), ids)


def with_instruction(record: Record, x_prefix: str, y_prefix: str) -> Record:
    """The record as the model reads it: its source's instruction before x, and before y and every
    hard negative (y-side texts). The record itself is left unchanged (sources may cache it)."""
    if not (x_prefix or y_prefix):
        return record
    out = {**record, "x": x_prefix + record["x"], "y": y_prefix + record["y"]}
    if record.get("negatives"):
        out["negatives"] = [y_prefix + n for n in record["negatives"]]
    return out


def merge_counts(*counts: dict) -> dict:
    """Key-wise sum of nested dicts of counts (e.g. drop statistics of several processes)."""
    out: dict = {}
    for c in counts:
        for key, value in c.items():
            out[key] = merge_counts(out.get(key, {}), value) if isinstance(value, dict) else out.get(key, 0) + value
    return out


def prepare_sources(config: DataConfig) -> None:
    """Builds what the sources need before anything reads them (e.g. a built-in prepared dataset;
    idempotent). Process 0 calls it; the others wait for it."""
    for source in config.sources:
        prepare = getattr(source, "prepare", None)
        if prepare is not None:
            prepare()


def training_texts(config: DataConfig, max_texts: int) -> Iterator[str]:
    """Up to max_texts x and y texts of the run's sources, for tokenizer training: every source's
    records in shard order (a prepared split: its on-disk order), interleaved record by record."""
    return iter_source_texts([c.build() for c in config.sources], max_texts)


def iter_split_texts(dataset: str, split: str, data_dir: str) -> Iterator[dict[str, str]]:
    """Yields every ``{"x", "y", "module"}`` record of a prepared split in its fixed on-disk order.

    The order is a deterministic function of the prepared files, so held-out retrieval sets built
    from it are reproducible.
    """
    return iter_records(dataset, split, data_dir)


def iter_training_texts(data_dir: str, datasets: Sequence[str] | None = None, max_texts: int = 100_000) -> Iterator[str]:
    """Up to max_texts x and y texts of the prepared datasets' train splits (default: every
    built-in one), interleaved record by record so each contributes even when the bound cuts the
    stream short."""
    if datasets is None:
        from cpt_jax.data import builders

        datasets = builders.DATASETS
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
