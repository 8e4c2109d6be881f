"""DataConfig: what a run reads and how it is tokenised, and the checks of its batch layout.

Kept apart from the pipeline so that configuring a run (train/config.py, the gin edge, the
accelerator benchmarks) loads nothing of the data stack (TensorFlow, grain, tokenizers).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from typing import ClassVar

from cpt_jax.data import mixture
from cpt_jax.typecheck import SEED, Bound, at_least, check_field_types


@dataclasses.dataclass(frozen=True, kw_only=True)
class DataConfig:
    """What to read and how to tokenise it.

    sources: the pair sources, each a config with .build() -> Source (data/sources/); e.g. the
      stdlib corpus is (PreparedPairsSource(dataset='stdlib_code', data_dir=...),). Training needs
      at least one (require_sources); a run fed by its caller (bench/, tests) may have none.
    weights: one positive mixture weight per source (any scale); empty for equal weights.
    stream_readers: V virtual readers; the global batch and every process count must divide it.
    shuffle_window: W pairs each reader of each streaming source holds and permutes (the memory
      bound); random-access sources are shuffled globally instead.
    num_negatives: hard negatives per pair from the records' "negatives" (fewer are masked out);
      0 leaves the batch and the loss as they are.
    log_fingerprints: the loop appends an order-free fingerprint of every global batch to
      <output_dir>/batch_fingerprints.jsonl (for checking resumes; costs a gather per step).
    batching: "mixed" (every batch holds every source, c_k(s) rows of source k: data/mixture.py)
      or "by_source" (each step's whole global batch comes from one source, chosen by weight from
      (seed, step) alone, so every process agrees; in-batch negatives then differ by meaning, not by
      source).
    instructions: one (x_prefix, y_prefix) pair per source, or empty for none: text put before
      every x (and y, and hard negative) of that source before tokenisation, inside the side's
      delimiters (E5 / BGE style "query: " / "passage: ", or a task description). Saved with the
      run; Embedder, evaluate, mine and export apply them by source name.
    """

    max_len_x: int
    max_len_y: int
    sources: tuple = ()
    weights: tuple = ()
    stream_readers: int = 16
    shuffle_window: int = 1024
    seed: int = 0  # shuffle seed, in [0, 2**32)
    prefetch_batches: int = 4  # local batches produced ahead of the consumer (0: none, synchronous)
    num_negatives: int = 0
    log_fingerprints: bool = False
    batching: str = "mixed"
    instructions: tuple = ()

    BOUNDS: ClassVar[dict[str, Bound]] = {
        "max_len_x": at_least(1, "tokens per x sequence, delimiters included"),
        "max_len_y": at_least(1, "tokens per y sequence, delimiters included"),
        "stream_readers": at_least(1, "virtual readers; the global batch must be a multiple"),
        "shuffle_window": at_least(1, "pairs each reader holds and permutes; 1 does not shuffle"),
        "seed": SEED,
        "prefetch_batches": at_least(0, "local batches made ahead; 0 is synchronous"),
        "num_negatives": at_least(0, "hard negatives per pair; 0 uses none"),
    }

    def __post_init__(self) -> None:
        check_field_types(self)  # types, then the BOUNDS above
        for name in ("sources", "weights"):
            value = getattr(self, name)
            if not isinstance(value, (tuple, list)):
                raise TypeError(f"DataConfig.{name}={value!r} must be a tuple.")
            object.__setattr__(self, name, tuple(value))  # gin may bind a list
        if self.weights and len(self.weights) != len(self.sources):
            raise ValueError(
                f"DataConfig.weights has {len(self.weights)} entries for {len(self.sources)} sources; "
                "give one weight per source (or none for equal weights)."
            )
        if self.weights:
            mixture.normalise(self.weights)
        if self.batching not in BATCHING:
            raise ValueError(f"DataConfig.batching={self.batching!r}; use one of {BATCHING}.")
        object.__setattr__(self, "instructions", _checked_instructions(self.instructions, len(self.sources)))


BATCHING = ("mixed", "by_source")


def _checked_instructions(value: object, num_sources: int) -> tuple[tuple[str, str], ...]:
    """DataConfig.instructions as a tuple of (x_prefix, y_prefix) string pairs, one per source."""
    example = 'e.g. DataConfig.instructions = (("query: ", "passage: "),) for one source'
    if not isinstance(value, (tuple, list)):
        raise TypeError(f"DataConfig.instructions={value!r} must be a tuple of (x_prefix, y_prefix) pairs; {example}.")
    pairs = []
    for i, pair in enumerate(value):
        if not (isinstance(pair, (tuple, list)) and len(pair) == 2 and all(isinstance(t, str) for t in pair)):
            raise TypeError(
                f"DataConfig.instructions[{i}]={pair!r} must be a pair of strings (x_prefix, y_prefix); "
                f'use "" for no prefix on a side; {example}.'
            )
        pairs.append(tuple(pair))
    if pairs and len(pairs) != num_sources:
        raise ValueError(
            f"DataConfig.instructions has {len(pairs)} pairs for {num_sources} sources; give one (x_prefix, "
            "y_prefix) pair per source, in the order of DataConfig.sources (or none)."
        )
    return tuple(pairs)


def check_process_slice(config: DataConfig, global_batch_size: int, process_index: int, process_count: int) -> None:
    """Raises ValueError unless this process's slice of the global batch is well defined: a positive
    batch and process count, a process index in range, a 32-bit seed."""
    if global_batch_size <= 0 or process_count <= 0:
        raise ValueError(f"global_batch_size={global_batch_size} and process_count={process_count} must be positive.")
    if not 0 <= process_index < process_count:
        raise ValueError(f"process_index={process_index} is outside [0, {process_count}).")
    if not 0 <= config.seed < 2**32:
        raise ValueError(f"DataConfig.seed={config.seed} must be in [0, 2**32): the shuffles take a 32-bit seed.")


def readers_for(config: DataConfig, process_count: int, random_access: Sequence[bool] | None = None) -> int:
    """The number of virtual readers V the batcher uses: DataConfig.stream_readers; but with one
    random-access source (e.g. the stdlib corpus), whose global batches are consecutive rows of its
    global order whatever V is, one reader per process, so any batch the processes can split works.
    random_access: per source, whether it is random access (default: the configs' RANDOM_ACCESS)."""
    if random_access is None:
        random_access = [getattr(s, "RANDOM_ACCESS", False) for s in config.sources]
    return process_count if list(random_access) == [True] else config.stream_readers


def check_stream_layout(config: DataConfig, global_batch_size: int, process_count: int,
                        random_access: Sequence[bool] | None = None) -> None:
    """Raises ValueError unless V (readers_for) divides the global batch and the process count divides V."""
    readers = readers_for(config, process_count, random_access)
    if global_batch_size % readers and readers != config.stream_readers:  # one reader per process
        raise ValueError(
            f"global batch {global_batch_size} is not divisible by the {process_count} processes; make it a multiple."
        )
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


def require_sources(config: DataConfig) -> None:
    """ValueError unless the config names at least one source (a run that reads its data)."""
    if not config.sources:
        raise ValueError(
            "DataConfig.sources is empty; name at least one source, e.g. include "
            "configs/data/stdlib_code.gin or bind DataConfig.sources = (@PreparedPairsSource(),)."
        )
