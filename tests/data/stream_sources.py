"""In-test pair sources for the streaming pipeline, and a character tokenizer that can be read back.

ListSource keeps its shards in memory and counts the records its shards have handed out, so a
test can check how many pairs a reader holds. JsonlPairs is a file-backed source config (one
JSON object per line, {"x", "y"[, "negatives"]}; a pair with an empty side is dropped and
counted as "empty") used by the multi-process training test through gin.
"""

from __future__ import annotations

import dataclasses
import glob
import json
from collections.abc import Iterator, Sequence

import numpy as np

from cpt_jax.data.sources.base import DropStats, Record


class ListSource:
    """A Source over in-memory shards: shards[i] is shard i's records in order."""

    def __init__(self, name: str, shards: Sequence[Sequence[Record]]) -> None:
        self.name = name
        self.stats = DropStats()
        self._shards = [list(s) for s in shards]
        self.pulled = 0  # records handed out by read_shard, over all reads

    def shards(self) -> list[str]:
        return [f"{self.name}-{i:03d}" for i in range(len(self._shards))]

    def read_shard(self, index: int, start: int = 0) -> Iterator[Record]:
        for record in self._shards[index][start:]:
            self.pulled += 1
            self.stats.keep()
            yield record


def pairs(name: str, shard_sizes: Sequence[int], negatives: Sequence[int] = (0,)) -> ListSource:
    """A ListSource whose record j of shard i is x "name.i.j", y "y name.i.j"; record number t
    (over all shards) has negatives[t % len(negatives)] negatives "neg{k} name.i.j"."""
    shards, t = [], 0
    for i, size in enumerate(shard_sizes):
        shard = []
        for j in range(size):
            key = f"{name}.{i}.{j}"
            negs = [f"neg{k} {key}" for k in range(negatives[t % len(negatives)])]
            shard.append({"x": key, "y": f"y {key}", "negatives": negs})
            t += 1
        shards.append(shard)
    return ListSource(name, shards)


@dataclasses.dataclass(frozen=True)
class JsonlPairs:
    """Config of a JSONL pair source: every file matching `pattern` is one shard."""

    name: str
    pattern: str

    def build(self) -> _JsonlSource:
        return _JsonlSource(self.name, sorted(glob.glob(self.pattern)))


class _JsonlSource:
    def __init__(self, name: str, files: list[str]) -> None:
        if not files:
            raise ValueError(f"no files for source {name!r}")
        self.name = name
        self.stats = DropStats()
        self._files = files

    def shards(self) -> list[str]:
        return list(self._files)

    def read_shard(self, index: int, start: int = 0) -> Iterator[Record]:
        kept = 0
        with open(self._files[index]) as f:
            for line in f:
                record = json.loads(line)
                if not record["x"] or not record["y"]:
                    if kept >= start:
                        self.stats.count("empty")
                    continue
                kept += 1
                if kept > start:
                    self.stats.keep()
                    yield record


def write_jsonl_corpus(root: str, name: str, num_files: int, per_file: int, empty_every: int = 0) -> str:
    """num_files JSONL files of per_file pairs of made-up words (every empty_every-th pair with an
    empty y, and one hard negative each); returns their glob."""
    rng = np.random.default_rng(len(name))
    syllables = ["ka", "lo", "mi", "pu", "re", "sa", "to", "vi", "ne", "zu", "qo", "fy"]
    words = lambda n: " ".join("".join(rng.choice(syllables, rng.integers(1, 4))) for _ in range(n))  # noqa: E731
    for i in range(num_files):
        with open(f"{root}/{name}-{i:03d}.jsonl", "w") as f:
            for j in range(per_file):
                y = "" if empty_every and j % empty_every == 0 else words(int(rng.integers(3, 20)))
                record = {"x": f"{name} {i} {j} {words(4)}", "y": y, "negatives": [words(6)]}
                f.write(json.dumps(record) + "\n")
    return f"{root}/{name}-*.jsonl"


def register_gin() -> None:
    """Makes JsonlPairs available to gin bindings (for training subprocesses)."""
    import gin

    gin.external_configurable(JsonlPairs, "JsonlPairs")


class CharTokenizer:
    """Tokenizer stand-in: one id per character (its code point), no delimiters; decodable."""

    vocab_size = 0x110000

    def encode(self, texts: Sequence[str], side: str, max_len: int) -> tuple[np.ndarray, np.ndarray]:
        tokens = np.zeros((len(texts), max_len), np.int32)
        mask = np.zeros((len(texts), max_len), np.int32)
        for row, text in enumerate(texts):
            ids = [ord(c) for c in text[:max_len]]
            tokens[row, : len(ids)] = ids
            mask[row, : len(ids)] = 1
        return tokens, mask


def decode(tokens: np.ndarray, mask: np.ndarray) -> list[str]:
    """CharTokenizer's texts back from [rows, len] tokens and mask."""
    return ["".join(chr(t) for t, m in zip(row, row_mask) if m) for row, row_mask in zip(tokens, mask)]
