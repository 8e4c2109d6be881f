"""Orbax checkpoints of a run: parameters, optimizer state and JSON metadata per step.

Layout under `<run_dir>/checkpoints/<step>/`:
  params/         the parameter tree (sharded arrays; restorable alone, e.g. for embedding)
  opt_state/      the optimizer state
  meta/           JSON: the model config, the data position (next step), the operative gin config
  checksums.json  size and SHA-256 of every file of the three items, written once the save is
                  committed; every restore first checks the files it reads against it
Items are separate so that consumers read only what they need; no pickle is written or read.

A checkpoint without checksums.json (written before checksums existed, or its run was killed
between the commit and the manifest) still loads, with an UnverifiedCheckpointWarning: Orbax
has committed it, and refusing it would throw away the newest state of every killed run.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import os
import warnings
from collections.abc import Sequence
from typing import Any

import jax
import orbax.checkpoint as ocp

from cpt_jax.model import ModelConfig, init_params
from cpt_jax.parallel import runtime

CHECKPOINT_SUBDIR = "checkpoints"
MANIFEST_FILE = "checksums.json"
ITEMS = ("params", "opt_state", "meta")
_MAX_LISTED_PROBLEMS = 10


class CheckpointIntegrityError(RuntimeError):
    """A checkpoint's files differ from the checksums recorded after its save."""


class UnverifiedCheckpointWarning(UserWarning):
    """A checkpoint has no checksum manifest, so it is loaded without an integrity check."""


def checkpoint_dir(run_dir: str) -> str:
    return os.path.join(os.path.abspath(run_dir), CHECKPOINT_SUBDIR)


def file_sha256(path: str) -> str:
    """SHA-256 of a file's bytes, read in 1 MiB blocks (the manifest's checksum; also mining's
    fingerprint of a model's files)."""
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        while chunk := f.read(1 << 20):
            digest.update(chunk)
    return digest.hexdigest()


def _item_files(step_dir: str, items: Sequence[str]) -> dict[str, str]:
    """'item/relative/path' -> absolute path for every file under the items' directories."""
    files = {}
    for item in items:
        for root, _, names in os.walk(os.path.join(step_dir, item)):
            for name in names:
                path = os.path.join(root, name)
                files[os.path.relpath(path, step_dir).replace(os.sep, "/")] = path
    return files


def write_manifest(step_dir: str) -> str:
    """Records size and SHA-256 of every item file of a committed checkpoint; returns its path.
    Written to a temporary name and renamed, so a reader never sees half a manifest."""
    files = {rel: {"size": os.path.getsize(path), "sha256": file_sha256(path)}
             for rel, path in sorted(_item_files(step_dir, ITEMS).items())}
    path = os.path.join(step_dir, MANIFEST_FILE)
    with open(f"{path}.tmp", "w") as f:
        json.dump({"algorithm": "sha256", "files": files}, f, indent=1)
        f.flush()
        os.fsync(f.fileno())
    os.replace(f"{path}.tmp", path)
    return path


def verify(step_dir: str, items: Sequence[str] = ITEMS) -> None:
    """Checks the files of `items` against the step's manifest before anything is loaded.

    Raises CheckpointIntegrityError naming every missing, added, resized or modified file;
    warns (UnverifiedCheckpointWarning) when there is no manifest. A missing step directory
    is left to Orbax to report.
    """
    if not os.path.isdir(step_dir):
        return
    path = os.path.join(step_dir, MANIFEST_FILE)
    if not os.path.exists(path):
        warnings.warn(
            f"Checkpoint {step_dir} has no {MANIFEST_FILE} (saved before checksums existed, or its run stopped "
            "between the save and the manifest): loading it without an integrity check.",
            UnverifiedCheckpointWarning,
            stacklevel=3,
        )
        return
    try:
        with open(path) as f:
            recorded = {rel: (int(e["size"]), str(e["sha256"])) for rel, e in json.load(f)["files"].items()}
    except (OSError, ValueError, KeyError, TypeError, AttributeError) as e:
        raise CheckpointIntegrityError(
            f"Checkpoint {step_dir}: its manifest {path} is unreadable ({type(e).__name__}: {e}), so its files "
            "cannot be verified. Use another step, or delete the manifest to load the checkpoint unverified."
        ) from e
    expected = {rel: v for rel, v in recorded.items() if rel.split("/", 1)[0] in items}
    present = _item_files(step_dir, items)
    problems = []
    for rel in sorted(expected.keys() | present.keys()):
        if rel not in present:
            problems.append(f"{rel}: missing")
        elif rel not in expected:
            problems.append(f"{rel}: not in the manifest (added after the save)")
        elif (size := os.path.getsize(present[rel])) != expected[rel][0]:
            problems.append(f"{rel}: {size} bytes, the manifest says {expected[rel][0]} (truncated or extended)")
        elif file_sha256(present[rel]) != expected[rel][1]:
            problems.append(f"{rel}: SHA-256 differs from the manifest (bytes modified)")
    if problems:
        listed = problems[:_MAX_LISTED_PROBLEMS]
        if len(problems) > len(listed):
            listed.append(f"... and {len(problems) - len(listed)} more")
        raise CheckpointIntegrityError(
            f"Checkpoint {step_dir} fails its integrity check against {MANIFEST_FILE}:\n  " + "\n  ".join(listed)
            + "\nIts files changed after the save; nothing was loaded. Use an earlier step (train() moves this "
            "one to <step>.unreadable and restores the previous one itself; elsewhere pass an earlier --step), "
            "or copy the checkpoint again from an intact source."
        )


class Checkpointer:
    """Thin policy layer over ocp.CheckpointManager (async saves, keep-N, latest-step lookup),
    adding a checksum manifest to every committed save and verifying it on restore."""

    def __init__(self, run_dir: str, save_every: int = 1000, keep: int = 3, async_save: bool = True) -> None:
        self._save_every = max(save_every, 1)
        # Steps kept whatever keep-N says (the best checkpoint of evaluation during training).
        self._protected: set[int] = set()
        self._released: list[int] = []  # protected once; deleted after the next commit unless recent
        self._keep = keep
        policy = ocp.checkpoint_managers.AnyPreservationPolicy(
            [ocp.checkpoint_managers.LatestN(n=keep), _ProtectedSteps(self._protected)]
        )
        options = ocp.CheckpointManagerOptions(
            preservation_policy=policy,
            enable_async_checkpointing=async_save,
            create=True,
        )
        self._directory = checkpoint_dir(run_dir)
        self._manager = ocp.CheckpointManager(self._directory, item_names=ITEMS, options=options)
        # Steps saved by this Checkpointer whose manifest waits for their commit.
        self._unmanifested: list[int] = []

    def save(self, step: int, params: Any, opt_state: Any, meta: dict[str, Any], force: bool = False) -> bool:
        """Start saving `step` (asynchronously) if it is a multiple of save_every, or if `force`.
        The previous save's manifest is written first (Orbax would wait for that save anyway)."""
        if not force and step % self._save_every:
            return False
        self._write_manifests()
        saved = self._manager.save(
            step,
            args=ocp.args.Composite(
                params=ocp.args.StandardSave(params),
                opt_state=ocp.args.StandardSave(opt_state),
                meta=ocp.args.JsonSave(meta),
            ),
            force=True,  # the interval is decided above; Orbax's own policy also saves the first step
        )
        if saved:
            self._unmanifested.append(step)
        return saved

    def _write_manifests(self) -> None:
        """Manifests of this Checkpointer's saves, once committed. Collective, like save/wait/close."""
        if not self._unmanifested:
            return
        self._manager.wait_until_finished()
        runtime.barrier("checkpoint committed")  # every process's shards are on disk before they are hashed
        if jax.process_index() == 0:
            for step in self._unmanifested:
                step_dir = self._step_dir(step)
                if os.path.isdir(step_dir):  # keep-N may have deleted it already
                    write_manifest(step_dir)
        self._unmanifested.clear()
        self._delete_released()

    def _step_dir(self, step: int) -> str:
        return os.path.join(self._directory, str(step))

    def protect(self, step: int, replaces: int | None = None) -> None:
        """Keeps `step` whatever keep-N says, from now on; `replaces` (a step protected before, e.g.
        the previous best) goes back to keep-N, which deletes it at a later save if it is not recent."""
        if replaces is not None and replaces != step:
            self._protected.discard(replaces)
            self._released.append(replaces)
        self._protected.add(step)

    def _delete_released(self) -> None:
        """Deletes released steps that keep-N would not keep (Orbax applies the policy only at a
        save, so a best replaced at the last save would otherwise stay). Runs after a commit: the
        step that replaced them is on disk first. Collective, like save."""
        recent = set(sorted(self.all_steps())[-self._keep :])
        for step in self._released:
            if step not in recent and step not in self._protected and step in self.all_steps():
                self._manager.delete(step)
        self._released.clear()

    def latest_step(self) -> int | None:
        return self._manager.latest_step()

    def all_steps(self) -> list[int]:
        """Steps of the finalised checkpoints (Orbax never lists a save still in a temporary dir)."""
        return list(self._manager.all_steps())

    def restore(self, step: int, params_target: Any, opt_state_target: Any) -> tuple[Any, Any, dict[str, Any]]:
        """Restore onto the given abstract targets (jax.ShapeDtypeStruct with shardings), after
        checking the files against the step's manifest (CheckpointIntegrityError if they differ)."""
        verify(self._step_dir(step))
        out = self._manager.restore(
            step,
            args=ocp.args.Composite(
                params=ocp.args.StandardRestore(params_target),
                opt_state=ocp.args.StandardRestore(opt_state_target),
                meta=ocp.args.JsonRestore(),
            ),
        )
        return out.params, out.opt_state, dict(out.meta)

    def restore_params(self, step: int, params_target: Any) -> Any:
        """The parameters of one checkpoint alone (its optimizer state is not read), after checking
        the parameter and meta files against the step's manifest."""
        verify(self._step_dir(step), ("params", "meta"))
        return self._manager.restore(step, args=ocp.args.Composite(params=ocp.args.StandardRestore(params_target))).params

    def read_meta(self, step: int) -> dict[str, Any]:
        """The JSON metadata of one checkpoint (cheap: no arrays are read or hashed)."""
        verify(self._step_dir(step), ("meta",))
        return dict(self._manager.restore(step, args=ocp.args.Composite(meta=ocp.args.JsonRestore())).meta)

    def quarantine(self, step: int) -> str:
        """Moves an unreadable checkpoint aside to `<step>.unreadable` (kept for inspection, never
        deleted) so the step can be written again; returns the new path."""
        src = self._step_dir(step)
        dst = f"{src}.unreadable"
        if jax.process_index() == 0:
            os.replace(src, dst if not os.path.exists(dst) else f"{dst}.{os.getpid()}")
        self._manager.reload()
        return dst

    def wait(self) -> None:
        """Block until any in-flight async save is committed and has its manifest."""
        self._manager.wait_until_finished()
        self._write_manifests()

    def close(self) -> None:
        self._write_manifests()
        self._manager.close()


class _ProtectedSteps:
    """An Orbax preservation policy: the checkpoints whose steps are in a set the Checkpointer holds."""

    def __init__(self, steps: set[int]) -> None:
        self._steps = steps

    def should_preserve(self, checkpoints: Sequence[Any], *, context: Any) -> list[bool]:
        return [info.step in self._steps for info in checkpoints]


def model_meta(model: ModelConfig) -> dict[str, Any]:
    return dataclasses.asdict(model)


def _reader(run_dir: str) -> ocp.CheckpointManager:
    """A manager that only reads: it creates no directory and writes nothing (evaluating, embedding
    or exporting a run never changes it, and a mistyped path is not made into an empty run)."""
    directory = checkpoint_dir(run_dir)
    if not os.path.isdir(directory):
        raise FileNotFoundError(
            f"No checkpoint under {directory}; pass the output_dir of a training run "
            "(python -m cpt_jax.train writes one at the end)."
        )
    options = ocp.CheckpointManagerOptions(create=False)
    return ocp.CheckpointManager(directory, item_names=ITEMS, options=options)


def read_meta(run_dir: str, step: int | None = None) -> tuple[int, dict[str, Any]]:
    """(step, meta) of `step` or of the latest checkpoint in run_dir; a clear error if none."""
    manager = _reader(run_dir)
    try:
        step = manager.latest_step() if step is None else step
        if step is None:
            raise FileNotFoundError(
                f"No checkpoint under {checkpoint_dir(run_dir)}; pass the output_dir of a training run "
                "(python -m cpt_jax.train writes one at the end)."
            )
        verify(os.path.join(checkpoint_dir(run_dir), str(step)), ("meta",))
        meta = manager.restore(step, args=ocp.args.Composite(meta=ocp.args.JsonRestore())).meta
        return step, dict(meta)
    finally:
        manager.close()


def restore_params(run_dir: str, step: int, target: Any) -> Any:
    """The parameter tree of one checkpoint, restored onto `target` (abstract arrays with shardings),
    after checking the parameter files against the step's manifest."""
    verify(os.path.join(checkpoint_dir(run_dir), str(step)), ("params",))
    manager = _reader(run_dir)
    try:
        return manager.restore(step, args=ocp.args.Composite(params=ocp.args.StandardRestore(target))).params
    finally:
        manager.close()


def shape_mismatches(saved: ModelConfig, current: ModelConfig) -> list[str]:
    """'path: saved shape -> current shape' for every encoder parameter the two configs disagree on
    (including parameters only one of them has). Empty when a checkpoint of `saved` fits `current`."""
    def shapes(cfg: ModelConfig) -> dict[str, tuple]:
        tree = jax.eval_shape(lambda: init_params(cfg, jax.random.key(0)))
        return {jax.tree_util.keystr(p): tuple(x.shape) for p, x in jax.tree_util.tree_flatten_with_path(tree)[0]}

    a, b = shapes(saved), shapes(current)
    return [f"{k}: {a.get(k, 'absent')} -> {b.get(k, 'absent')}" for k in sorted(a.keys() | b.keys()) if a.get(k) != b.get(k)]


def abstract_like(tree: Any, shardings: Any) -> Any:
    """ShapeDtypeStructs of `tree` (arrays or abstract) placed with `shardings`."""
    return jax.tree.map(lambda x, s: jax.ShapeDtypeStruct(x.shape, x.dtype, sharding=s), tree, shardings)
