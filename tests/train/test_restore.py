"""Resuming: damage is quarantined, a settings mismatch is refused with nothing moved, transient
errors are retried, and a run whose checkpoints were all quarantined never restarts from step 0."""

from __future__ import annotations

import dataclasses
import errno
import os

import jax
import numpy as np
import pytest

from cpt_jax import checkpoint
from cpt_jax.data.config import DataConfig
from cpt_jax.model import ModelConfig
from cpt_jax.parallel.mesh import make_mesh
from cpt_jax.parallel.rules import rules_from_config
from cpt_jax.train import restore
from cpt_jax.train.config import TrainConfig
from cpt_jax.train.optimizer import OptimizerConfig, make_optimizer
from cpt_jax.train.state import abstract_train_state, state_shardings

MODEL = ModelConfig(vocab_size=64, d_model=16, num_layers=1, num_heads=2, d_mlp=32, max_len=16)


def _config(run_dir, **overrides) -> TrainConfig:
    base = dict(output_dir=str(run_dir), model=MODEL, num_steps=10, global_batch_size=8,
                data=DataConfig(max_len_x=16, max_len_y=16))
    return TrainConfig(**{**base, **overrides})


def _pieces(config: TrainConfig):
    mesh, rules = make_mesh(config.mesh, jax.devices()[:1]), rules_from_config(None)
    return make_optimizer(config.optimizer, config.num_steps), mesh, rules


def _save(config: TrainConfig, steps=(1, 2), tokenizer_sha256="tok-a", legacy=False) -> None:
    """Checkpoints of `config`'s state (zeros; the step number as the temperature) with the meta
    train() writes (legacy: only what checkpoints recorded before run_meta existed)."""
    tx, mesh, rules = _pieces(config)
    zeros = jax.tree.map(lambda a, s: jax.device_put(np.zeros(a.shape, a.dtype), s),
                         abstract_train_state(config.model, config.temperature, tx),
                         state_shardings(config.model, config.temperature, tx, mesh, rules))
    meta = restore.run_meta(config, tx, tokenizer_sha256)
    if legacy:
        meta = {"model_config": meta["model_config"]}
    ckpt = checkpoint.Checkpointer(config.output_dir, save_every=1, async_save=False)
    for step in steps:
        params = {**zeros.params, "log_temperature": np.float32(step)}
        ckpt.save(step, params, zeros.opt_state, {"step": step, **meta})
    ckpt.close()


def _resume(config: TrainConfig, tokenizer_sha256="tok-a"):
    tx, mesh, rules = _pieces(config)
    ckpt = checkpoint.Checkpointer(config.output_dir, save_every=1, async_save=False)
    try:
        state, _ = restore.restore_or_init(config, ckpt, tx, mesh, rules, None, restore.run_meta(config, tx, tokenizer_sha256))
        return state, ckpt.all_steps()
    finally:
        ckpt.close()


def _untouched(run_dir) -> bool:
    names = sorted(os.listdir(os.path.join(run_dir, "checkpoints")))
    return names == ["1", "2"]


@pytest.mark.parametrize(
    "change, field",
    [
        (dict(model=dataclasses.replace(MODEL, pooling="mean")), "ModelConfig.pooling"),
        (dict(model=dataclasses.replace(MODEL, attention="bidirectional")), "ModelConfig.attention"),
        (dict(optimizer=OptimizerConfig(clip_norm=0.0)), "OptimizerConfig"),
    ],
)
def test_a_settings_mismatch_is_refused_and_nothing_is_moved(tmp_path, change, field):
    _save(_config(tmp_path))
    with pytest.raises(restore.ResumeMismatchError, match=f"(?s)trained with other settings.*{field}.*Nothing was moved"):
        _resume(_config(tmp_path, **change))
    assert _untouched(tmp_path)
    # The documented way out: name the field, and the run resumes from the newest step.
    state, steps = _resume(_config(tmp_path, **change, resume_overrides=(field,)))
    assert int(state.step) == 2 and steps == [1, 2] and float(state.params["log_temperature"]) == 2.0


def test_runtime_fields_may_change_on_resume(tmp_path):
    _save(_config(tmp_path))
    runtime = dataclasses.replace(MODEL, dropout=0.1, remat="full", scan_unroll=1, eos_last_layer=False)
    state, _ = _resume(_config(tmp_path, model=runtime, optimizer=OptimizerConfig(learning_rate=5e-3)))
    assert int(state.step) == 2


def test_another_tokenizer_is_a_mismatch(tmp_path):
    _save(_config(tmp_path))
    with pytest.raises(restore.ResumeMismatchError, match="tokenizer: the run's tokenizer/"):
        _resume(_config(tmp_path), tokenizer_sha256="tok-b")
    assert _untouched(tmp_path)


def test_an_old_checkpoint_that_does_not_fit_is_refused_not_quarantined(tmp_path):
    """Without run_meta in the meta (older runs) the optimizer change shows only when Orbax fails
    to restore onto the new state: that is not damage, so nothing may move."""
    _save(_config(tmp_path), legacy=True)
    with pytest.raises(restore.ResumeMismatchError, match="does not restore onto this run's state"):
        _resume(_config(tmp_path, optimizer=OptimizerConfig(clip_norm=0.0)))
    assert _untouched(tmp_path)


def test_transient_errors_are_retried_then_raised_without_moving_anything(tmp_path, monkeypatch):
    _save(_config(tmp_path))
    monkeypatch.setattr(restore, "BACKOFF_S", 0.0)
    real, calls = checkpoint.Checkpointer.restore, []

    def flaky(self, step, *targets):
        calls.append(step)
        if len(calls) < 3:
            raise OSError(errno.EIO, "Input/output error")
        return real(self, step, *targets)

    monkeypatch.setattr(checkpoint.Checkpointer, "restore", flaky)
    state, steps = _resume(_config(tmp_path))
    assert int(state.step) == 2 and calls == [2, 2, 2] and steps == [1, 2]

    monkeypatch.setattr(checkpoint.Checkpointer, "restore", lambda *a: (_ for _ in ()).throw(MemoryError("out of memory")))
    with pytest.raises(restore.RestoreError, match="failed 3 times.*nothing was moved"):
        _resume(_config(tmp_path))
    assert _untouched(tmp_path)


def test_damage_is_quarantined_and_a_run_of_only_quarantined_steps_does_not_restart(tmp_path, capsys):
    _save(_config(tmp_path))
    for step in (1, 2):
        victim = next(p for p in (tmp_path / "checkpoints" / str(step) / "params").rglob("*") if p.is_file()
                      and p.stat().st_size > 0 and "metadata" not in p.name)
        victim.write_bytes(b"\0" + victim.read_bytes()[1:] if victim.read_bytes()[:1] != b"\0" else b"\1" + victim.read_bytes()[1:])
    with pytest.raises(restore.RestoreError, match="None of the checkpoints"):
        _resume(_config(tmp_path))
    assert sorted(os.listdir(tmp_path / "checkpoints")) == ["1.unreadable", "2.unreadable"]
    with pytest.raises(restore.RestoreError, match=r"only quarantined checkpoints \['1.unreadable', '2.unreadable'\]"):
        _resume(_config(tmp_path))  # the rerun: never a silent start from step 0


def test_quarantined_steps_beside_good_ones_are_reported(tmp_path, capsys):
    _save(_config(tmp_path), steps=(1,))
    os.makedirs(tmp_path / "checkpoints" / "7.unreadable")
    state, _ = _resume(_config(tmp_path))
    assert int(state.step) == 1
    assert "holds quarantined checkpoints ['7.unreadable']" in capsys.readouterr().out


def test_unknown_overrides_are_named():
    restore.check_overrides(("ModelConfig.pooling", "OptimizerConfig", "tokenizer"))
    with pytest.raises(ValueError, match=r"\['ModelConfig.dropout'\].*choose from"):
        restore.check_overrides(("ModelConfig.dropout",))
