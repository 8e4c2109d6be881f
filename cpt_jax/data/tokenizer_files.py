"""A saved tokenizer directory's integrity: its checksums.json, the errors for damaged or changed
files, and the fingerprint check a checkpoint makes (data/tokenizer.py saves and loads through it).

The manifest is written with the directory (atomically) and verified before anything is loaded; a
directory from before checksums loads with a warning. The style follows cpt_jax/checkpoint.py.
"""

from __future__ import annotations

import hashlib
import json
import os
import warnings
from typing import Any

from cpt_jax import atomic

MANIFEST_FILE = "checksums.json"


class TokenizerIntegrityError(ValueError):
    """A saved tokenizer's files are missing, differ from its checksums.json, or do not parse."""


class TokenizerMismatchError(ValueError):
    """A checkpoint was trained with another tokenizer than the one its run directory holds now."""


class UnverifiedTokenizerWarning(UserWarning):
    """A saved tokenizer directory has no checksums.json, so it is loaded without an integrity check."""


def sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def _manifest_entries(directory: str) -> dict[str, str]:
    """Name -> path of the regular files a manifest covers: the directory's top-level files."""
    return {
        name: os.path.join(directory, name)
        for name in sorted(os.listdir(directory))
        if name != MANIFEST_FILE and os.path.isfile(os.path.join(directory, name))
    }


def write_manifest(directory: str) -> str:
    """Records size and SHA-256 of each file of a tokenizer directory in checksums.json (written
    atomically); returns its path. ``save`` calls it; call it yourself to give a directory saved
    before checksums existed a manifest of its files as they are."""
    files = {}
    for name, path in _manifest_entries(directory).items():
        data = read_bytes(path)
        files[name] = {"size": len(data), "sha256": sha256(data)}
    path = os.path.join(directory, MANIFEST_FILE)
    atomic.write_json(path, {"algorithm": "sha256", "files": files}, indent=1)
    return path


_RESTORE_FIX = (
    "restore the tokenizer directory from an intact copy (the one the run's checkpoints were trained with), "
    "or retrain into a new output_dir"
)


def verify(directory: str) -> None:
    """Checks a tokenizer directory's files against its checksums.json.

    Raises TokenizerIntegrityError naming each missing, resized or modified file (files added
    after the save are not checked: they play no part in encoding); warns
    (UnverifiedTokenizerWarning) when there is no manifest."""
    manifest = os.path.join(directory, MANIFEST_FILE)
    if not os.path.exists(manifest):
        warnings.warn(
            f"Tokenizer {directory} has no {MANIFEST_FILE} (saved before checksums existed): loading it without "
            "an integrity check. To checksum it as it is now: python -c \"from cpt_jax.data.tokenizer_files import "
            f"write_manifest; write_manifest('{directory}')\"",
            UnverifiedTokenizerWarning,
            stacklevel=3,
        )
        return
    try:
        with open(manifest, "rb") as f:
            recorded = {name: (int(e["size"]), str(e["sha256"])) for name, e in json.loads(f.read())["files"].items()}
    except (OSError, ValueError, KeyError, TypeError, AttributeError) as e:
        raise TokenizerIntegrityError(
            f"Tokenizer {directory}: its manifest {manifest} is unreadable ({type(e).__name__}: {e}), so its files "
            f"cannot be verified. Fix: {_RESTORE_FIX}; or delete {manifest} to load the files unverified."
        ) from e
    problems = []
    for name, (size, sha) in sorted(recorded.items()):
        path = os.path.join(directory, name)
        if not os.path.isfile(path):
            problems.append(f"{path}: missing")
            continue
        data = read_bytes(path)
        if len(data) != size:
            problems.append(f"{path}: {len(data)} bytes, {MANIFEST_FILE} says {size} (truncated or extended)")
        elif sha256(data) != sha:
            problems.append(f"{path}: SHA-256 differs from {MANIFEST_FILE} (edited after the save)")
    if problems:
        raise TokenizerIntegrityError(
            f"Tokenizer {directory} fails its integrity check against {MANIFEST_FILE}:\n  " + "\n  ".join(problems)
            + f"\nA different vocabulary would silently change every embedding; nothing was loaded. Fix: {_RESTORE_FIX}."
        )


def check_fingerprint(tokenizer: Any, recorded: str | None, where: str, override: str = "") -> None:
    """Raises TokenizerMismatchError when a checkpoint recorded (``recorded``, from its meta's
    "tokenizer_sha256") another tokenizer than ``tokenizer``; nothing when it recorded none
    (checkpoints written before fingerprints). ``where`` names the checkpoint and the tokenizer
    directory in the message; ``override`` is an extra way out to suggest (e.g. an argument)."""
    if recorded is None:
        return
    current = tokenizer.fingerprint()
    if current != recorded:
        raise TokenizerMismatchError(
            f"{where}: the tokenizer changed since the checkpoint was written (its meta records tokenizer_sha256 "
            f"{recorded}, the tokenizer now has {current}); its embeddings would differ from the trained model's. "
            f"Fix: restore the tokenizer the checkpoint was trained with{', ' + override if override else ''}."
        )


def read_bytes(path: str) -> bytes:
    """The file's bytes; a missing file is a TokenizerIntegrityError naming it and the fix."""
    try:
        with open(path, "rb") as f:
            return f.read()
    except FileNotFoundError as e:
        raise TokenizerIntegrityError(f"Tokenizer file {path} is missing. Fix: {_RESTORE_FIX}.") from e


def unparsable(path: str, error: BaseException) -> str:
    """The message for a tokenizer file that does not parse."""
    return (
        f"Tokenizer file {path} does not parse ({error}); it is probably half-written (a full disk or a killed "
        f"process while it was saved) or edited. Fix: {_RESTORE_FIX}. A run directory whose checkpoints never "
        "used it can instead delete the tokenizer directory, and the next run writes it again."
    )


def read_json(path: str) -> dict[str, Any]:
    """A JSON file of the directory ({} if absent); unparsable: TokenizerIntegrityError."""
    if not os.path.exists(path):
        return {}
    with open(path) as f:
        try:
            return json.load(f)
        except ValueError as e:
            raise TokenizerIntegrityError(unparsable(path, e)) from e
