"""Cross-split deduplication of the site corpora (site_corpus.py): a train pair that repeats a
held-out (validation or test) pair's text is dropped FROM TRAIN.

Why train, not the held-out pair: the held-out splits are whole packages, the retrieval tasks the
models are scored on; cutting them would make them depend on what happens to be in train and bias
them towards code that nobody copies, while train is ~8x larger and loses only a few percent.
Vendored copies (six, typing_extensions, ...) and shared boilerplate are what this catches.

Every side (x and y) of every held-out pair goes into one :class:`HeldOutIndex`; a train pair is
dropped when either of its sides

  cross_split_duplicate       equals a held-out side after whitespace normalisation
                              (``" ".join(text.split())``; case kept), or
  cross_split_near_duplicate  has a Jaccard similarity >= NEAR_DUPLICATE_JACCARD (0.8) with a
                              held-out side, over their sets of lowercased word 5-grams ("shingles";
                              a text of fewer than 5 words is one shingle, so it only matches
                              itself exactly).

Near-duplicate candidates come from MinHash LSH (NUM_PERM = 64 hash functions, 16 bands of 4
rows: a pair at Jaccard 0.8 becomes a candidate with probability 1 - (1 - 0.8^4)^16 > 0.9997, at
0.5 with 0.64), and every candidate is verified by the exact Jaccard of the two shingle sets, so
nothing under the threshold is ever dropped. Hashes are zlib.crc32 of words and fixed odd
multipliers: the result is the same in every process and run.
"""

from __future__ import annotations

import hashlib
import zlib
from collections.abc import Iterable, Iterator

import numpy as np

from cpt_jax.data.sources.base import RuleCounter

SHINGLE_WORDS = 5
NEAR_DUPLICATE_JACCARD = 0.8  # a train side at or above this shingle Jaccard with a held-out side is dropped
NUM_PERM = 64
BANDS = 16
ROWS = NUM_PERM // BANDS

_rng = np.random.default_rng(20240519)  # fixed: the hash functions are part of the recipe
_MULT = _rng.integers(1, 2**63, size=NUM_PERM, dtype=np.uint64) * np.uint64(2) + np.uint64(1)
_ADD = _rng.integers(0, 2**63, size=NUM_PERM, dtype=np.uint64)
_GRAM = np.array([0x9E3779B97F4A7C15 ** (SHINGLE_WORDS - 1 - j) % 2**64 for j in range(SHINGLE_WORDS)],
                 dtype=np.uint64)


def normalize(text: str) -> str:
    """Whitespace-normalised text: the key of exact duplicates."""
    return " ".join(text.split())


def _digest(text: str) -> bytes:
    return hashlib.blake2b(normalize(text).encode("utf-8", "surrogatepass"), digest_size=16).digest()


def shingles(text: str) -> np.ndarray:
    """Sorted unique uint64 hashes of the lowercased word 5-grams of ``text`` ([n_shingles])."""
    words = np.array([zlib.crc32(w.encode("utf-8", "surrogatepass")) for w in text.lower().split()],
                     dtype=np.uint64)
    if len(words) < SHINGLE_WORDS:
        padded = np.zeros(SHINGLE_WORDS, dtype=np.uint64)
        padded[: len(words)] = words + np.uint64(1)
        return np.array([int((padded * _GRAM).sum())], dtype=np.uint64)
    n = len(words) - SHINGLE_WORDS + 1
    grams = np.zeros(n, dtype=np.uint64)
    for j in range(SHINGLE_WORDS):
        grams += words[j : j + n] * _GRAM[j]  # wraps mod 2^64
    return np.unique(grams)


def _bands(shingle_set: np.ndarray) -> list[bytes]:
    signature = (shingle_set[:, None] * _MULT[None, :] + _ADD[None, :]).min(axis=0)
    return [bytes([b]) + signature[b * ROWS : (b + 1) * ROWS].tobytes() for b in range(BANDS)]


def jaccard(a: np.ndarray, b: np.ndarray) -> float:
    """Jaccard similarity of two sorted unique shingle arrays."""
    common = len(np.intersect1d(a, b, assume_unique=True))
    return common / (len(a) + len(b) - common)


class HeldOutIndex:
    """The held-out sides: exact digests, LSH bands and shingle sets (see the module docstring)."""

    def __init__(self) -> None:
        self._exact: set[bytes] = set()
        self._bands: dict[bytes, list[int]] = {}
        self._shingles: list[np.ndarray] = []

    def __len__(self) -> int:
        return len(self._shingles)

    def add(self, text: str) -> None:
        digest = _digest(text)
        if digest in self._exact:
            return
        self._exact.add(digest)
        shingle_set = shingles(text)
        i = len(self._shingles)
        self._shingles.append(shingle_set)
        for band in _bands(shingle_set):
            self._bands.setdefault(band, []).append(i)

    def match(self, text: str) -> str | None:
        """The rule under which ``text`` repeats a held-out side, or None."""
        if _digest(text) in self._exact:
            return "cross_split_duplicate"
        shingle_set = shingles(text)
        seen: set[int] = set()
        for band in _bands(shingle_set):
            for i in self._bands.get(band, ()):
                if i not in seen:
                    seen.add(i)
                    if jaccard(shingle_set, self._shingles[i]) >= NEAR_DUPLICATE_JACCARD:
                        return "cross_split_near_duplicate"
        return None


def drop_held_out_matches(
    pairs: Iterable[tuple[str, dict[str, str]]], index: HeldOutIndex, stats: RuleCounter
) -> Iterator[tuple[str, dict[str, str]]]:
    """The pairs none of whose sides repeats a held-out side; the others counted (exact first)."""
    for key, pair in pairs:
        rules = [index.match(pair["x"]), index.match(pair["y"])]
        if "cross_split_duplicate" in rules:
            stats.count("cross_split_duplicate")
        elif "cross_split_near_duplicate" in rules:
            stats.count("cross_split_near_duplicate")
        else:
            yield key, pair
