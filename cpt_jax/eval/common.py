"""What every evaluation task shares: the encoder interface and strict JSONL reading."""

from __future__ import annotations

import json
import os
from collections.abc import Iterator, Sequence
from typing import Any, Protocol

import numpy as np


class Encoder(Protocol):
    """Anything that embeds texts: :class:`cpt_jax.embedder.Embedder`, or a test fake. It may also
    have ``for_task(name) -> Encoder``, the encoder for a task of that name (see for_task)."""

    def encode(self, texts: Sequence[str], side: str, batch_size: int) -> np.ndarray:
        """texts -> float32 ``[len(texts), d]`` with L2-normalised rows; side is "query" or "document"."""
        ...


def for_task(encoder: Encoder, name: str) -> Encoder:
    """The encoder to score task ``name`` with: ``encoder.for_task(name)`` when it has that optional
    method (a run trained with per-source instructions uses its source's), else the encoder itself."""
    pick = getattr(encoder, "for_task", None)
    return pick(name) if callable(pick) else encoder


def encode_checked(encoder: Encoder, texts: Sequence[str], side: str, batch_size: int) -> np.ndarray:
    """``encoder.encode`` with its output checked: ``[len(texts), d]`` float32, finite."""
    out = np.asarray(encoder.encode(list(texts), side, batch_size))
    if out.ndim != 2 or out.shape[0] != len(texts):
        raise ValueError(f"encode({len(texts)} texts, side={side!r}) returned shape {out.shape}; expected [n, d].")
    if not np.isfinite(out).all():
        raise ValueError(f"encode(side={side!r}) returned NaN/inf; check the model.")
    return out.astype(np.float32, copy=False)


def require_file(path: str, what: str) -> str:
    """``path`` if it is a file, else a FileNotFoundError naming what it should hold."""
    if not os.path.isfile(path):
        raise FileNotFoundError(f"Missing {path}: {what}.")
    return path


def iter_jsonl(path: str) -> Iterator[tuple[int, dict[str, Any]]]:
    """``(1-based line number, object)`` per non-blank line; a bad line raises with its number."""
    with open(path, encoding="utf-8") as f:
        for line_no, line in enumerate(f, 1):
            if not line.strip():
                continue
            try:
                obj = json.loads(line)
            except json.JSONDecodeError as e:
                raise ValueError(
                    f"{path}:{line_no}: not valid JSON ({e.msg}); each line must be one JSON object."
                ) from None
            if not isinstance(obj, dict):
                raise ValueError(f"{path}:{line_no}: expected a JSON object, got {type(obj).__name__}.")
            yield line_no, obj


def field(obj: dict[str, Any], key: str, path: str, line_no: int, types: tuple[type, ...] = (str,)) -> Any:
    """``obj[key]`` checked present and of one of ``types``; errors name the file and line."""
    if key not in obj:
        raise ValueError(f"{path}:{line_no}: missing field {key!r} (has {sorted(obj)}).")
    value = obj[key]
    if not isinstance(value, types) or isinstance(value, bool):
        names = " or ".join(t.__name__ for t in types)
        raise ValueError(f"{path}:{line_no}: field {key!r} must be {names}, got {value!r}.")
    return value
