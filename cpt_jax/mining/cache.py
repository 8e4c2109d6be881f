"""Embeddings of a set of texts cached on disk chunk by chunk, keyed by everything that made them.

Layout: ``<cache_dir>/<role>-<key>/manifest.json`` and ``chunk_00000.npy``, ``chunk_00001.npy``, ...
(float32 ``[rows, d]``; chunk i holds the embeddings of texts ``[i * chunk_size, (i + 1) * chunk_size)``).

``key`` is the first 16 hex digits of the SHA-256 of the manifest (canonical JSON) of
  model       the model's fingerprint (mining/model.py: checkpoint or files, lengths, prefixes)
  side        "query" or "document"
  texts       the texts' SHA-256 and count, in order
  chunk_size  texts per chunk
so a changed model, corpus, chunk size, length or instruction names another directory: nothing
encoded under other settings is ever read (a separate cache rather than an error, so changing a
setting and back costs nothing), and everything encoded under these settings is reused. A new
directory beside an older one of the same role is reported with the fields that differ; the old
one is left as is (delete it to free the space). Every file is written atomically
(cpt_jax/atomic.py), so a killed run leaves whole chunks only, and the next run encodes the rest.
"""

from __future__ import annotations

import hashlib
import io
import json
import os
from collections.abc import Iterable, Iterator
from typing import Any

import numpy as np

from cpt_jax import atomic
from cpt_jax.eval.common import Encoder, encode_checked

MANIFEST = "manifest.json"


def _canonical(obj: Any) -> str:
    return json.dumps(obj, sort_keys=True, separators=(",", ":"))


def changed_fields(old: Any, new: Any, prefix: str = "") -> list[str]:
    """Dotted names of the leaves where two manifests differ (a key in one only counts)."""
    if isinstance(old, dict) and isinstance(new, dict):
        out = []
        for key in sorted(old.keys() | new.keys()):
            out += changed_fields(old.get(key), new.get(key), f"{prefix}{key}.")
        return out
    return [] if old == new else [prefix.rstrip(".")]


class ChunkCache:
    """The chunk files of one text set under one manifest (see the module docstring)."""

    def __init__(self, cache_dir: str, role: str, manifest: dict[str, Any]) -> None:
        self.cache_dir = cache_dir
        self.role = role
        self.manifest = {"role": role, **manifest}
        self.key = hashlib.sha256(_canonical(self.manifest).encode()).hexdigest()[:16]
        self.directory = os.path.join(cache_dir, f"{role}-{self.key}")
        self.reused = self.encoded = 0

    def open(self) -> str | None:
        """Creates the directory and its manifest, or checks an existing one; a note naming what
        changed since the newest other cache of this role when this one is new, else None."""
        path = os.path.join(self.directory, MANIFEST)
        if os.path.isfile(path):
            with open(path, encoding="utf-8") as f:
                saved = json.load(f)
            if saved != json.loads(_canonical(self.manifest)):
                raise ValueError(
                    f"{path} does not describe the embeddings asked for (differs in "
                    f"{', '.join(changed_fields(saved, self.manifest))}): it was edited, or two settings share "
                    f"a key. Delete {self.directory} and rerun."
                )
            return None
        note = self._changes()
        os.makedirs(self.directory, exist_ok=True)
        atomic.write_json(path, self.manifest, indent=1, sort_keys=True)
        return note

    def _changes(self) -> str | None:
        others = []
        if os.path.isdir(self.cache_dir):
            for name in os.listdir(self.cache_dir):
                path = os.path.join(self.cache_dir, name, MANIFEST)
                if name.startswith(f"{self.role}-") and os.path.isfile(path):
                    others.append((os.path.getmtime(path), path))
        if not others:
            return None
        path = max(others)[1]
        with open(path, encoding="utf-8") as f:
            fields = changed_fields(json.load(f), self.manifest)
        return (
            f"{self.role} embeddings: {', '.join(fields)} changed since {os.path.dirname(path)}; encoding anew into "
            f"{self.directory} (nothing of the old cache is read; delete it to free the space)."
        )

    def chunk_path(self, index: int) -> str:
        return os.path.join(self.directory, f"chunk_{index:05d}.npy")

    def cached_chunks(self) -> int:
        """How many chunk files are on disk."""
        return sum(1 for n in os.listdir(self.directory) if n.startswith("chunk_") and n.endswith(".npy"))

    def load(self, index: int, rows: int) -> np.ndarray | None:
        """Chunk ``index`` (``[rows, d]`` float32), or None when it is not cached yet."""
        path = self.chunk_path(index)
        if not os.path.isfile(path):
            return None
        try:
            emb = np.load(path, allow_pickle=False)
        except (OSError, ValueError) as e:
            raise ValueError(f"cached embeddings {path} do not read back ({e}); delete the file and rerun.") from e
        if emb.ndim != 2 or emb.shape[0] != rows or emb.dtype != np.float32:
            raise ValueError(
                f"cached embeddings {path} hold {emb.dtype} {emb.shape}, expected float32 [{rows}, d]; "
                "delete the file and rerun."
            )
        return emb

    def save(self, index: int, emb: np.ndarray) -> None:
        buffer = io.BytesIO()
        np.save(buffer, np.asarray(emb, np.float32), allow_pickle=False)
        atomic.write_bytes(self.chunk_path(index), buffer.getvalue())


def embed_chunks(
    encoder: Encoder, chunks: Iterable[list[str]], cache: ChunkCache, side: str, batch_size: int
) -> Iterator[np.ndarray]:
    """The embeddings ``[len(chunk), d]`` of each chunk in order: read from the cache, else
    encoded and saved there before they are handed on."""
    for index, texts in enumerate(chunks):
        emb = cache.load(index, len(texts))
        if emb is None:
            emb = encode_checked(encoder, texts, side, batch_size)
            cache.save(index, emb)
            cache.encoded += 1
        else:
            cache.reused += 1
        yield emb
