"""cpt-text span pairs from a prepared TFDS text dataset, by name (e.g. "c4/en:3.0.1").

The dataset must already be prepared under `data_dir` (local or gs://, read through TFDS's
own file layer): this source never downloads or builds. One shard per file of the split,
read independently through TFDS's shard slicing (`train[3shard]`): shard ids are
"<split>[<i>shard]" with i zero-padded, so sorting them keeps file order. tfrecord files
are read with `as_dataset` (no shuffling, no caching), array_record files with
`as_data_source`; both give the same examples in the same order.

An example's document is its `text_fields` (top-level Text features), the non-empty ones
joined by a blank line; span pairs follow `spans.py` with document id
"<dataset>/<shard id>#<example index in the shard>". Drop rules: those of `spans.py`, plus
  invalid_utf8  a text field with bytes that are not UTF-8; replaced by U+FFFD and KEPT.

TensorFlow and TFDS are imported by `build()`, not on import, so that configuring the other
sources does not load TensorFlow.
"""

from __future__ import annotations

import dataclasses
import functools
from collections.abc import Callable, Iterator
from typing import TYPE_CHECKING

from cpt_jax.data.sources.base import Record, RuleCounter, ShardedSource, as_str_tuple
from cpt_jax.data.sources.spans import SpanConfig, span_pairs

if TYPE_CHECKING:
    from tensorflow_datasets.core import DatasetBuilder

_READ_BATCH = 256  # array_record examples fetched per call
ExampleReader = Callable[["DatasetBuilder", str, tuple[str, ...]], Iterator[dict]]
"""(builder, shard id, text fields) -> the shard's examples in file order."""


@dataclasses.dataclass(frozen=True, kw_only=True)
class TfdsTextSource(SpanConfig):
    """Span pairs from the text field(s) of a prepared TFDS dataset's split."""

    dataset: str  # TFDS name, optionally with config and version: "c4/en", "c4/en:3.0.1"
    version: str | None = None  # or give the version here (not both)
    split: str = "train"  # a split name; no slicing (sharding is the source's job)
    data_dir: str | None = None  # None: TFDS's default (~/tensorflow_datasets or $TFDS_DATA_DIR)
    text_fields: tuple[str, ...] = ("text",)
    name: str = "tfds_text"

    def __post_init__(self) -> None:
        super().__post_init__()
        object.__setattr__(self, "text_fields", as_str_tuple(self, "text_fields", self.text_fields))
        if not self.text_fields:
            raise ValueError("TfdsTextSource.text_fields is empty; name at least one text feature.")
        if self.version is not None and ":" in self.dataset:
            raise ValueError(
                f"TfdsTextSource: dataset={self.dataset!r} already names a version; drop version={self.version!r}."
            )
        if "[" in self.split:
            raise ValueError(
                f"TfdsTextSource.split={self.split!r}: give a plain split name; the source reads it shard by shard."
            )

    def build(self) -> ShardedSource:
        """The source over the split's shards; ValueError if the dataset is not prepared,
        lacks the split or the text fields."""
        import tensorflow_datasets as tfds

        builder = _prepared_builder(self)
        if self.split not in builder.info.splits:
            raise ValueError(
                f"TFDS dataset {self.dataset!r} has no split {self.split!r}; it has {sorted(builder.info.splits)}."
            )
        features = builder.info.features
        for field in self.text_fields:
            if field not in features or not isinstance(features[field], tfds.features.Text):
                texts = sorted(k for k in features if isinstance(features[k], tfds.features.Text))
                raise ValueError(
                    f"TfdsTextSource.text_fields: {field!r} is not a top-level text feature of "
                    f"{self.dataset!r}; its text features are {texts}."
                )
        num_shards = builder.info.splits[self.split].num_shards
        width = len(str(max(num_shards - 1, 0)))
        shard_ids = [f"{self.split}[{i:0{width}d}shard]" for i in range(num_shards)]
        file_format = builder.info.file_format
        examples: ExampleReader
        if file_format == tfds.core.FileFormat.TFRECORD:
            examples = _tfrecord_examples
        elif file_format == tfds.core.FileFormat.ARRAY_RECORD:
            examples = _array_record_examples
        else:
            raise ValueError(
                f"TFDS dataset {self.dataset!r} is stored as {file_format}; "
                "this source reads tfrecord or array_record."
            )
        return ShardedSource(self.name, shard_ids, functools.partial(_read_shard, self, builder, examples))


def _prepared_builder(config: TfdsTextSource) -> DatasetBuilder:
    import tensorflow_datasets as tfds

    where = config.data_dir or "the default TFDS data_dir"
    fix = (
        f"Prepare it once with `tfds build {config.dataset}{'' if config.version is None else ':' + config.version}"
        f"{'' if config.data_dir is None else ' --data_dir=' + config.data_dir}` "
        "(or the builder's download_and_prepare); this source never downloads."
    )
    kwargs = {"data_dir": config.data_dir}
    if config.version is not None:
        kwargs["version"] = config.version
    try:
        builder = tfds.builder(config.dataset, **kwargs)
    except tfds.core.registered.DatasetNotFoundError as e:
        raise ValueError(f"TFDS dataset {config.dataset!r} was not found under {where}. {fix}") from e
    if not builder.is_prepared():
        raise ValueError(
            f"TFDS dataset {config.dataset!r} (version {builder.version}) is not prepared under {where}. {fix}"
        )
    return builder


def _tfrecord_examples(builder: DatasetBuilder, shard_id: str, fields: tuple[str, ...]) -> Iterator[dict]:
    import tensorflow_datasets as tfds

    dataset = builder.as_dataset(
        split=shard_id,
        shuffle_files=False,
        decoders=tfds.decode.PartialDecoding({field: True for field in fields}),  # skip other features
        read_config=tfds.ReadConfig(try_autocache=False),  # stream; never hold a shard in memory
    )
    yield from tfds.as_numpy(dataset)


def _array_record_examples(builder: DatasetBuilder, shard_id: str, fields: tuple[str, ...]) -> Iterator[dict]:
    del fields  # data sources decode whole examples
    source = builder.as_data_source(split=shard_id)
    for start in range(0, len(source), _READ_BATCH):
        yield from source.__getitems__(list(range(start, min(start + _READ_BATCH, len(source)))))


def _read_shard(
    config: TfdsTextSource, builder: DatasetBuilder, examples: ExampleReader, shard_id: str, stats: RuleCounter
) -> Iterator[Record]:
    for index, example in enumerate(examples(builder, shard_id, config.text_fields)):
        texts = [_decode(example[field], stats) for field in config.text_fields]
        document = "\n\n".join(text for text in texts if text.strip())
        yield from span_pairs(document, f"{config.dataset}/{shard_id}#{index}", config, stats)


def _decode(value: bytes | str, stats: RuleCounter) -> str:
    if isinstance(value, str):
        return value
    try:
        return value.decode("utf-8")
    except UnicodeDecodeError:
        stats.count("invalid_utf8")
        return value.decode("utf-8", errors="replace")
