"""TfdsTextSource: a tiny TFDS dataset built here (tfrecord and array_record), read back by name."""

from __future__ import annotations

import inspect
import pathlib

import numpy as np
import pytest
import tensorflow_datasets as tfds
from etils import epath

from cpt_jax.data.sources import TfdsTextSource
from cpt_jax.data.sources.base import DropStats
from cpt_jax.data.sources.spans import span_pairs

NAME = "sources_tiny_texts"
SPANS = {"min_span_words": 4, "max_span_words": 9}


def _document(i: int) -> bytes:
    if i == 5:
        return b""
    if i == 7:
        return b"bad \xff bytes " + b" ".join(b"u%d" % k for k in range(30))
    return " ".join(f"d{i}w{k}" for k in range(10 + 3 * i)).encode()


class SourcesTinyTexts(tfds.core.GeneratorBasedBuilder):
    """30 examples: a title and a body of 10 + 3i words (one empty, one with bad UTF-8)."""

    VERSION = tfds.core.Version("1.0.0")

    @tfds.core.utils.classproperty
    @classmethod
    def code_path(cls) -> epath.Path:
        return epath.Path(inspect.getfile(cls))  # TFDS's default needs importlib_resources

    def _info(self) -> tfds.core.DatasetInfo:
        features = {"title": tfds.features.Text(), "body": tfds.features.Text(), "id": np.int64}
        return tfds.core.DatasetInfo(builder=self, features=tfds.features.FeaturesDict(features))

    def _split_generators(self, dl_manager):
        del dl_manager
        return {"train": self._generate_examples()}

    def _generate_examples(self):
        for i in range(30):
            yield i, {"title": f"title {i}", "body": _document(i), "id": i}


FORMATS = ("tfrecord", "array_record")


@pytest.fixture(scope="module")
def data_dirs(tmp_path_factory) -> dict[str, str]:
    """The dataset prepared in 3 shards in each file format: {file_format: data_dir}."""
    tfds.display_progress_bar(False)
    dirs = {}
    for file_format in FORMATS:
        dirs[file_format] = str(tmp_path_factory.mktemp(file_format))
        builder = tfds.builder(NAME, data_dir=dirs[file_format], file_format=file_format)
        builder.download_and_prepare(
            file_format=file_format, download_config=tfds.download.DownloadConfig(num_shards=3)
        )
    return dirs


def _expected_pairs(data_dir: str, fields: tuple[str, ...], config: TfdsTextSource) -> list[list[dict]]:
    """Pairs per shard computed independently: the examples of each shard file, in order."""
    builder = tfds.builder(NAME, data_dir=data_dir)
    per_shard = []
    for i in range(3):
        if builder.info.file_format == tfds.core.FileFormat.ARRAY_RECORD:
            examples = list(builder.as_data_source(split=f"train[{i}shard]"))
        else:
            examples = list(tfds.as_numpy(builder.as_dataset(split=f"train[{i}shard]", shuffle_files=False)))
        pairs = []
        for k, ex in enumerate(examples):
            doc = "\n\n".join(t for t in (ex[f].decode("utf-8", "replace") for f in fields) if t.strip())
            pairs += span_pairs(doc, f"{NAME}/train[{i}shard]#{k}", config, DropStats())
        per_shard.append(pairs)
    return per_shard


@pytest.mark.parametrize("file_format", FORMATS)
def test_reads_each_shard_by_name(data_dirs, file_format):
    data_dir = data_dirs[file_format]
    config = TfdsTextSource(dataset=NAME, data_dir=data_dir, text_fields=("body",), **SPANS)
    source = config.build()
    assert source.shards() == ["train[0shard]", "train[1shard]", "train[2shard]"]
    per_shard = [list(source.read_shard(i)) for i in range(3)]
    assert per_shard == _expected_pairs(data_dir, ("body",), config)
    assert sum(len(p) for p in per_shard) > 30
    dropped = source.stats.as_dict()
    assert dropped["empty"] == 1 and dropped["invalid_utf8"] == 1
    assert any("bad \ufffd bytes" in p["x"] for shard in per_shard for p in shard)
    assert [list(source.read_shard(i)) for i in range(3)] == per_shard  # deterministic
    assert list(source.read_shard(1, start=3)) == per_shard[1][3:]


def test_both_file_formats_give_the_same_pairs(data_dirs):
    results = []
    for data_dir in data_dirs.values():
        config = TfdsTextSource(dataset=f"{NAME}:1.0.0", data_dir=data_dir, text_fields=("title", "body"), **SPANS)
        source = config.build()
        results.append([list(source.read_shard(i)) for i in range(3)])
    assert results[0] == results[1]
    assert results[0][0][0]["x"].startswith("title ")


def test_missing_dataset_split_and_field_are_named(data_dirs, tmp_path: pathlib.Path):
    data_dir = data_dirs["array_record"]
    with pytest.raises(ValueError, match=rf"not prepared under {tmp_path}.*tfds build {NAME} --data_dir={tmp_path}"):
        TfdsTextSource(dataset=NAME, data_dir=str(tmp_path)).build()
    with pytest.raises(ValueError, match=r"not found under .*tfds build no_such_dataset_xyz:2.0.0"):
        TfdsTextSource(dataset="no_such_dataset_xyz", version="2.0.0", data_dir=str(tmp_path)).build()
    with pytest.raises(ValueError, match=r"has no split 'test'; it has \['train'\]"):
        TfdsTextSource(dataset=NAME, data_dir=data_dir, split="test").build()
    with pytest.raises(ValueError, match=r"'id' is not a top-level text feature.*\['body', 'title'\]"):
        TfdsTextSource(dataset=NAME, data_dir=data_dir, text_fields=("body", "id")).build()
