"""Resuming a run: the newest checkpoint that restores, and never a lost run by mistake.

A restore can fail three ways, and each gets its own answer:
* damage: a step's files differ from its checksum manifest, or one is missing. The step is moved
  to `<step>.unreadable` (kept, never deleted) and the previous one is tried;
* mismatch: this run's settings change what the saved weights, optimizer state or token ids
  mean (model fields, the optimizer's state structure, the tokenizer). Refused before anything is
  read or moved, with the differing fields and the two ways out (TrainConfig.resume_overrides);
* anything else (I/O errors, memory, timeouts): retried, then raised. Nothing is moved.
A run whose checkpoints were all quarantined is never silently restarted from step 0.

A LoRA run's checkpoints hold its adapters alone and name the base they adapt (`lora_meta`: the
imported weights' SHA-256, or the seed of a random base); every start rebuilds that base and a
resume onto another base, rank, alpha or target set is refused.
"""

from __future__ import annotations

import dataclasses
import glob
import hashlib
import os
import time
from typing import Any

import jax
import numpy as np
import optax
from jax.sharding import Mesh

from cpt_jax.checkpoint import Checkpointer, CheckpointIntegrityError, abstract_like, checkpoint_dir, shape_mismatches
from cpt_jax.interop import pretrained
from cpt_jax.model import ModelConfig
from cpt_jax.parallel import runtime
from cpt_jax.parallel.rules import Rules
from cpt_jax.train.config import TrainConfig
from cpt_jax.train.state import (
    TrainState,
    abstract_train_state,
    create_train_state,
    frozen_base,
    state_shardings,
    train_state_from_params,
)

# ModelConfig fields that change how the encoder computes, not what its weights mean: a resumed run
# may change them freely (a change of parameter shapes is refused by the shape check).
RUNTIME_MODEL_FIELDS = frozenset({"dropout", "dtype", "eos_last_layer", "scan_layers", "scan_unroll", "remat", "max_len"})
OVERRIDABLE = ("OptimizerConfig", "tokenizer") + tuple(
    f"ModelConfig.{f.name}" for f in dataclasses.fields(ModelConfig) if f.name not in RUNTIME_MODEL_FIELDS
)
DAMAGE = (CheckpointIntegrityError, FileNotFoundError)  # evidence that a step's files are broken
TRANSIENT = (OSError, MemoryError, TimeoutError)  # worth another try; never a reason to move a step
ATTEMPTS = 3
BACKOFF_S = 2.0


class ResumeMismatchError(ValueError):
    """This run's settings do not match the checkpoint it would resume; nothing was moved."""


class RestoreError(RuntimeError):
    """No checkpoint could be restored, for a reason that is not a settings mismatch."""


def check_overrides(overrides: tuple) -> None:
    """ValueError for a TrainConfig.resume_overrides entry that names nothing overridable."""
    unknown = [o for o in overrides if o not in OVERRIDABLE]
    if unknown:
        raise ValueError(
            f"TrainConfig.resume_overrides names {unknown}, which are not settings a resume can override; "
            f"choose from {list(OVERRIDABLE)}."
        )


def opt_state_signature(opt_state: Any) -> str:
    """A digest of the optimizer state's tree structure and leaf shapes: equal iff a saved state
    restores onto this one."""
    leaves, tree = jax.tree.flatten(opt_state)
    text = str(tree) + "".join(f"{tuple(x.shape)}{x.dtype}" for x in leaves)
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def lora_meta(config: TrainConfig) -> dict[str, Any] | None:
    """A LoRA run's adapters and the base they belong to (None: every weight trains). The base is
    the imported weights (their files' SHA-256) or, without init_from, the encoder of the seed."""
    lora = config.lora
    if not lora.enabled:
        return None
    base = ({"weights_sha256": pretrained.weights_sha256(pretrained.resolve(config.init_from))}
            if config.init_from else {"seed": config.seed})
    return {"rank": lora.rank, "alpha": lora.alpha, "targets": lora.targets, "dropout": lora.dropout, "base": base}


def run_meta(config: TrainConfig, tx: optax.GradientTransformation, tokenizer_sha256: str | None) -> dict[str, Any]:
    """What a checkpoint of this run records about the meaning of its arrays (compared on resume)."""
    abstract = abstract_train_state(config.model, config.temperature, tx, config.lora)
    return {
        "model_config": dataclasses.asdict(config.model),
        "optimizer_config": dataclasses.asdict(config.optimizer),
        "opt_state_signature": opt_state_signature(abstract.opt_state),
        "lora": lora_meta(config),
        **({"tokenizer_sha256": tokenizer_sha256} if tokenizer_sha256 else {}),
    }


def differences(saved: dict[str, Any], now: dict[str, Any]) -> dict[str, str]:
    """{override name: 'what differs'} between a checkpoint's meta and this run's run_meta. Keys
    that an older checkpoint lacks are not compared."""
    out = {}
    saved_model = saved.get("model_config", {})
    for name, value in now["model_config"].items():
        if name not in RUNTIME_MODEL_FIELDS and name in saved_model and saved_model[name] != value:
            out[f"ModelConfig.{name}"] = f"ModelConfig.{name}: checkpoint {saved_model[name]!r}, now {value!r}"
    if "opt_state_signature" in saved and saved["opt_state_signature"] != now["opt_state_signature"]:
        old = saved.get("optimizer_config", {})
        fields = [f"{k}: checkpoint {old[k]!r}, now {v!r}" for k, v in now["optimizer_config"].items()
                  if k in old and old[k] != v]
        out["OptimizerConfig"] = ("OptimizerConfig (the optimizer state's structure differs): "
                                  + ("; ".join(fields) or "the chain itself changed"))
    if "tokenizer_sha256" in saved and "tokenizer_sha256" in now and saved["tokenizer_sha256"] != now["tokenizer_sha256"]:
        out["tokenizer"] = (f"tokenizer: the run's tokenizer/ (sha256 {now['tokenizer_sha256']}) is not the one the "
                            f"checkpoint was trained with ({saved['tokenizer_sha256']})")
    return out


def quarantined(run_dir: str) -> list[str]:
    """The quarantined steps of a run directory (`<step>.unreadable[.<pid>]`), sorted."""
    return sorted(os.path.basename(p) for p in glob.glob(os.path.join(checkpoint_dir(run_dir), "*.unreadable*")))


def restore_or_init(
    config: TrainConfig,
    ckpt: Checkpointer,
    tx: optax.GradientTransformation,
    mesh: Mesh,
    rules: Rules,
    init_params: Any = None,
    meta_now: dict[str, Any] | None = None,
) -> tuple[TrainState, TrainState]:
    """The newest checkpoint that restores, onto this run's mesh (any earlier mesh or process
    count), else a fresh state (from init_params, the host encoder tree, when given). Restoring
    never materialises a fresh state first. meta_now: this run's run_meta (default: without a
    tokenizer fingerprint)."""
    steps, aside = sorted(ckpt.all_steps(), reverse=True), quarantined(config.output_dir)
    if not steps and aside:
        raise RestoreError(
            f"{checkpoint_dir(config.output_dir)} holds only quarantined checkpoints {aside}, moved aside earlier "
            "because their files failed the integrity check; starting from step 0 would throw their progress "
            "away. Copy intact checkpoints back, or move those aside (or delete them) to start afresh, or "
            "train into a new TrainConfig.output_dir."
        )
    lora = config.lora
    if lora.enabled and config.init_from and init_params is None:
        raise ValueError(
            f"TrainConfig.lora trains adapters on TrainConfig.init_from={config.init_from!r}, but no base weights "
            "were given: pass init_params=pretrained.encoder_params(...) on every start (train() does), or the "
            "adapters would sit on a random base."
        )
    if not steps:
        if init_params is not None:
            return train_state_from_params(init_params, config.model, config.temperature, tx, mesh, rules, lora,
                                           config.seed)
        return create_train_state(config.model, config.temperature, tx, mesh, rules, config.seed, lora)
    if aside:
        print(f"WARNING: {checkpoint_dir(config.output_dir)} holds quarantined checkpoints {aside} (their files failed "
              "the integrity check); resuming from the newest readable one.", flush=True)
    meta_now = meta_now or run_meta(config, tx, None)
    shardings = state_shardings(config.model, config.temperature, tx, mesh, rules, lora)
    failures = []
    for step in steps:
        state = _restore_step(config, ckpt, step, tx, shardings, meta_now, failures)
        if state is not None:
            if lora.enabled:  # the adapters' base, rebuilt as the checkpoints name it (checked above)
                base = frozen_base(config.model, lora, shardings, encoder=init_params, seed=config.seed)
                state = state.replace(frozen=base)
            print(f"restored checkpoint at step {step} from {config.output_dir}", flush=True)
            return state, shardings
    raise RestoreError(
        f"None of the checkpoints in {checkpoint_dir(config.output_dir)} restores:\n  " + "\n  ".join(failures)
        + "\nThey were moved to <step>.unreadable; nothing was deleted. Copy intact checkpoints back, move those "
        "aside to start afresh, or point TrainConfig.output_dir elsewhere."
    )


def _restore_step(config: TrainConfig, ckpt: Checkpointer, step: int, tx: optax.GradientTransformation,
                  shardings: TrainState, meta_now: dict[str, Any], failures: list[str]) -> TrainState | None:
    """The state of checkpoint `step`; None (after quarantining it, noted in failures) if it is damaged."""
    try:
        saved = _with_retries(lambda: ckpt.read_meta(step), f"the metadata of checkpoint {step}")
        _refuse_mismatch(config, step, saved, meta_now)
        abstract = abstract_train_state(config.model, config.temperature, tx, config.lora)
        params_target = abstract_like(abstract.params, shardings.params)
        if "OptimizerConfig" in config.resume_overrides and "OptimizerConfig" in differences(saved, meta_now):
            params = _with_retries(lambda: ckpt.restore_params(step, params_target), f"checkpoint {step}")
            opt_state = jax.jit(tx.init, out_shardings=shardings.opt_state)(params)
            print(f"resume_overrides: restored the parameters of step {step} with a fresh optimizer state.", flush=True)
        else:
            opt_target = abstract_like(abstract.opt_state, shardings.opt_state)
            params, opt_state, _ = _with_retries(lambda: ckpt.restore(step, params_target, opt_target), f"checkpoint {step}")
    except DAMAGE as e:
        failures.append(f"step {step}: {type(e).__name__}: {str(e)[:300]}")
        runtime.barrier(f"restore attempt {step}")  # every process has tried before it moves
        moved = ckpt.quarantine(step)
        print(f"WARNING: checkpoint at step {step} cannot be restored ({type(e).__name__}: {str(e)[:200]}); moved it "
              f"to {moved} and trying the previous one.", flush=True)
        return None
    except (ResumeMismatchError, RestoreError):
        raise
    except Exception as e:  # noqa: BLE001 - not damage: refuse without moving anything
        raise ResumeMismatchError(
            f"Checkpoint {step} in {checkpoint_dir(config.output_dir)} does not restore onto this run's state "
            f"({type(e).__name__}: {str(e)[:400]}). Nothing was moved. If a setting changed since it was written, "
            "set it back or train into a new TrainConfig.output_dir; if the checkpoint is damaged, move it aside "
            "and rerun to resume from the previous one."
        ) from e
    return TrainState(step=jax.device_put(np.int32(saved["step"]), shardings.step), params=params, opt_state=opt_state)


def _refuse_mismatch(config: TrainConfig, step: int, saved: dict[str, Any], meta_now: dict[str, Any]) -> None:
    """ResumeMismatchError, before anything is read or moved, if checkpoint `step` was written with
    parameter shapes, or settings not named in resume_overrides, that differ from this run's."""
    where = f"The checkpoint at step {step} in {checkpoint_dir(config.output_dir)}"
    _refuse_lora_mismatch(where, saved.get("lora"), meta_now.get("lora"))
    try:
        shapes = shape_mismatches(ModelConfig(**saved["model_config"]), config.model)
    except (KeyError, TypeError, ValueError):
        shapes = []  # a model config this version cannot build: the restore reports what differs
    if shapes:
        raise ResumeMismatchError(
            f"{where} was written by a different model (other parameter shapes):\n  " + "\n  ".join(shapes)
            + "\nNothing was moved. Restore the old ModelConfig, or train into a new TrainConfig.output_dir."
        )
    found = {k: v for k, v in differences(saved, meta_now).items() if k not in config.resume_overrides}
    if found:
        names = ", ".join(repr(k) for k in found)
        raise ResumeMismatchError(
            f"{where} was trained with other settings:\n  " + "\n  ".join(found.values())
            + "\nNothing was moved. Either set them back to the checkpoint's values, or train into a new "
            f"TrainConfig.output_dir; to resume with the new values anyway, set TrainConfig.resume_overrides = "
            f"({names},) (OptimizerConfig: the parameters are restored with a fresh optimizer state)."
        )


def _refuse_lora_mismatch(where: str, saved: dict | None, now: dict | None) -> None:
    """ResumeMismatchError when the checkpoint's adapters (or full weights) are not what this run
    would train: LoRA on or off, another rank, alpha or target set, or another base. Dropout may change."""
    def identity(meta: dict | None) -> dict | None:
        return None if meta is None else {k: v for k, v in meta.items() if k != "dropout"}

    if identity(saved) == identity(now):
        return

    def say(meta: dict | None) -> str:
        if meta is None:
            return "every weight trained (no LoRA)"
        base = meta["base"]
        if "weights_sha256" in base:
            named = f"imported weights sha256 {base['weights_sha256'][:16]}"
        else:
            named = f"random base of seed {base['seed']}"
        return f"LoRA rank {meta['rank']}, alpha {meta['alpha']}, targets {meta['targets']!r}, base: {named}"

    raise ResumeMismatchError(
        f"{where} was trained as {say(saved)}; this run is {say(now)}. Its arrays mean nothing to this run, so "
        "nothing was moved. Set TrainConfig.lora (and TrainConfig.init_from / seed, which name the base) back, or "
        "train into a new TrainConfig.output_dir; to adapt a trained run with LoRA, export it "
        "(python -m cpt_jax.export) and start a new run from that directory (TrainConfig.init_from)."
    )


def _with_retries(read: Any, what: str) -> Any:
    """read(), retried ATTEMPTS times on transient errors (I/O, memory, timeouts) with growing
    pauses; damage (DAMAGE) is raised at once, and exhausted retries as RestoreError."""
    for attempt in range(ATTEMPTS):
        try:
            return read()
        except DAMAGE:
            raise
        except TRANSIENT as e:
            if attempt + 1 == ATTEMPTS:
                raise RestoreError(
                    f"Reading {what} failed {ATTEMPTS} times ({type(e).__name__}: {e}). This is not damage to the "
                    "checkpoint as far as can be told, so nothing was moved; rerun when the storage (or memory) "
                    "is healthy."
                ) from e
            print(f"WARNING: reading {what} failed ({type(e).__name__}: {e}); retrying.", flush=True)
            time.sleep(BACKOFF_S * 2**attempt)
    raise AssertionError("unreachable")
