"""Orbax checkpoints of a run: parameters, optimizer state and JSON metadata per step.

Layout under `<run_dir>/checkpoints/<step>/`:
  params/     the parameter tree (sharded arrays; restorable alone, e.g. for embedding)
  opt_state/  the optimizer state
  meta/       JSON: the model config, the data position (next step), the operative gin config
Items are separate so that consumers read only what they need; no pickle is written or read.
"""

from __future__ import annotations

import dataclasses
import os
from typing import Any

import jax
import orbax.checkpoint as ocp

from cpt_jax.model import ModelConfig, init_params

CHECKPOINT_SUBDIR = "checkpoints"


def checkpoint_dir(run_dir: str) -> str:
    return os.path.join(os.path.abspath(run_dir), CHECKPOINT_SUBDIR)


class Checkpointer:
    """Thin policy layer over ocp.CheckpointManager (async saves, keep-N, latest-step lookup)."""

    def __init__(self, run_dir: str, save_every: int = 1000, keep: int = 3, async_save: bool = True) -> None:
        self._save_every = max(save_every, 1)
        options = ocp.CheckpointManagerOptions(
            max_to_keep=keep,
            enable_async_checkpointing=async_save,
            create=True,
        )
        self._directory = checkpoint_dir(run_dir)
        self._manager = ocp.CheckpointManager(self._directory, item_names=("params", "opt_state", "meta"), options=options)

    def save(self, step: int, params: Any, opt_state: Any, meta: dict[str, Any], force: bool = False) -> bool:
        """Start saving `step` (asynchronously) if it is a multiple of save_every, or if `force`."""
        if not force and step % self._save_every:
            return False
        return self._manager.save(
            step,
            args=ocp.args.Composite(
                params=ocp.args.StandardSave(params),
                opt_state=ocp.args.StandardSave(opt_state),
                meta=ocp.args.JsonSave(meta),
            ),
            force=True,  # the interval is decided above; Orbax's own policy also saves the first step
        )

    def latest_step(self) -> int | None:
        return self._manager.latest_step()

    def all_steps(self) -> list[int]:
        """Steps of the finalised checkpoints (Orbax never lists a save still in a temporary dir)."""
        return list(self._manager.all_steps())

    def restore(self, step: int, params_target: Any, opt_state_target: Any) -> tuple[Any, Any, dict[str, Any]]:
        """Restore onto the given abstract targets (jax.ShapeDtypeStruct with shardings)."""
        out = self._manager.restore(
            step,
            args=ocp.args.Composite(
                params=ocp.args.StandardRestore(params_target),
                opt_state=ocp.args.StandardRestore(opt_state_target),
                meta=ocp.args.JsonRestore(),
            ),
        )
        return out.params, out.opt_state, dict(out.meta)

    def read_meta(self, step: int) -> dict[str, Any]:
        """The JSON metadata of one checkpoint (cheap: no arrays are read)."""
        return dict(self._manager.restore(step, args=ocp.args.Composite(meta=ocp.args.JsonRestore())).meta)

    def quarantine(self, step: int) -> str:
        """Moves an unreadable checkpoint aside to `<step>.unreadable` (kept for inspection, never
        deleted) so the step can be written again; returns the new path."""
        src = os.path.join(self._directory, str(step))
        dst = f"{src}.unreadable"
        if jax.process_index() == 0:
            os.replace(src, dst if not os.path.exists(dst) else f"{dst}.{os.getpid()}")
        self._manager.reload()
        return dst

    def wait(self) -> None:
        """Block until any in-flight async save is committed."""
        self._manager.wait_until_finished()

    def close(self) -> None:
        self._manager.close()


def model_meta(model: ModelConfig) -> dict[str, Any]:
    return dataclasses.asdict(model)


def read_meta(run_dir: str, step: int | None = None) -> tuple[int, dict[str, Any]]:
    """(step, meta) of `step` or of the latest checkpoint in run_dir; a clear error if none."""
    manager = ocp.CheckpointManager(checkpoint_dir(run_dir), item_names=("params", "opt_state", "meta"))
    try:
        step = manager.latest_step() if step is None else step
        if step is None:
            raise FileNotFoundError(
                f"No checkpoint under {checkpoint_dir(run_dir)}; pass the output_dir of a training run "
                "(python -m cpt_jax.train writes one at the end)."
            )
        meta = manager.restore(step, args=ocp.args.Composite(meta=ocp.args.JsonRestore())).meta
        return step, dict(meta)
    finally:
        manager.close()


def restore_params(run_dir: str, step: int, target: Any) -> Any:
    """The parameter tree of one checkpoint, restored onto `target` (abstract arrays with shardings)."""
    manager = ocp.CheckpointManager(checkpoint_dir(run_dir), item_names=("params", "opt_state", "meta"))
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
