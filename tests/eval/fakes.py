"""A deterministic stand-in encoder and writers for BEIR / classification folders."""

from __future__ import annotations

import json
import os
import re
import zlib
from collections.abc import Sequence

import numpy as np

HASHED, NONZERO = 64, 16
DIM = HASHED + NONZERO


class HashEncoder:
    """Hashed bag of words -> a unit vector with 16 entries of +-1/4 and the rest 0.

    Each token adds +-1 to one of 64 crc32-chosen coordinates; up to 16 nonzero counts (largest
    |count| first, lower coordinate among ties) keep their sign at magnitude 1/4, and the rest of
    the 16 go to fixed padding coordinates 64.. that carry no content. Every dot product is a
    multiple of 1/16, exact in float32 whatever the summation order, so rankings (ties included)
    cannot depend on how the corpus is chunked. Texts sharing words score higher.
    Every call is recorded as (side, texts) in ``calls``.
    """

    def __init__(self, salt: str = "") -> None:
        self.salt = salt
        self.calls: list[tuple[str, list[str]]] = []

    def vector(self, text: str) -> np.ndarray:
        counts = np.zeros(HASHED)
        for token in re.findall(r"\w+", text.lower()):
            h = zlib.crc32((self.salt + token).encode())
            counts[h % HASHED] += 1 if (h >> 8) & 1 else -1
        keep = np.lexsort((np.arange(HASHED), -np.abs(counts)))[:NONZERO]
        keep = keep[counts[keep] != 0]
        v = np.zeros(DIM, np.float32)
        v[keep] = np.where(counts[keep] < 0, -0.25, 0.25)
        v[HASHED : HASHED + NONZERO - keep.size] = 0.25
        return v

    def encode(self, texts: Sequence[str], side: str, batch_size: int) -> np.ndarray:
        assert side in ("query", "document") and batch_size >= 1
        self.calls.append((side, list(texts)))
        return np.stack([self.vector(t) for t in texts]) if texts else np.zeros((0, DIM), np.float32)


def write_jsonl(path: str, rows: Sequence[dict]) -> None:
    os.makedirs(os.path.dirname(path), exist_ok=True)
    with open(path, "w", encoding="utf-8") as f:
        f.writelines(json.dumps(r) + "\n" for r in rows)


def write_beir(
    folder: str,
    corpus: Sequence[dict],
    queries: Sequence[dict],
    qrels: Sequence[tuple[str, str, int]],
    split: str = "test",
) -> str:
    """corpus rows {"_id", "title", "text"}, query rows {"_id", "text"}, qrels (qid, did, grade)."""
    write_jsonl(os.path.join(folder, "corpus.jsonl"), corpus)
    write_jsonl(os.path.join(folder, "queries.jsonl"), queries)
    os.makedirs(os.path.join(folder, "qrels"), exist_ok=True)
    with open(os.path.join(folder, "qrels", f"{split}.tsv"), "w") as f:
        f.write("query-id\tcorpus-id\tscore\n")
        f.writelines(f"{q}\t{d}\t{g}\n" for q, d, g in qrels)
    return folder


class ScoreEncoder:
    """Documents whose text is a number s in [0, 1] get similarity exactly-ish s with every query.

    Queries map to (1, 0), documents to (s, sqrt(1 - s^2)): hand-computable rankings.
    """

    def encode(self, texts: Sequence[str], side: str, batch_size: int) -> np.ndarray:
        if side == "query":
            return np.tile(np.array([1.0, 0.0], np.float32), (len(texts), 1))
        s = np.array([float(t) for t in texts], np.float64)
        return np.stack([s, np.sqrt(1 - s**2)], axis=1).astype(np.float32)


def write_toy_folders(root: str) -> tuple[str, str]:
    """A 30-document BEIR folder and a two-class {text, label} folder under root: (beir, classification)."""
    corpus = [{"_id": f"d{i}", "title": "", "text": f"topic{i % 5} word{i}"} for i in range(30)]
    queries = [{"_id": f"q{j}", "text": f"topic{j} word{j}"} for j in range(5)]
    beir = write_beir(os.path.join(root, "toy_beir"), corpus, queries, [(f"q{j}", f"d{j}", 1) for j in range(5)])
    rng = np.random.default_rng(0)
    for split, n in (("train", 30), ("test", 10)):
        labels = rng.integers(0, 2, n)
        rows = [{"text": f"{'alpha beta' if y else 'gamma delta'} {rng.integers(9)}", "label": int(y)} for y in labels]
        write_jsonl(os.path.join(root, "toy_cls", f"{split}.jsonl"), rows)
    return beir, os.path.join(root, "toy_cls")
