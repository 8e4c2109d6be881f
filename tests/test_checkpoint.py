"""Orbax checkpoints: interval policy, sharded round trip, metadata, clear errors."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from jax.sharding import NamedSharding
from jax.sharding import PartitionSpec as P

from cpt_jax import checkpoint
from cpt_jax.parallel.mesh import MeshConfig, make_mesh


def _tree(mesh):
    shard = NamedSharding(mesh, P("data"))
    params = {"w": jax.device_put(jnp.arange(16.0).reshape(8, 2), shard), "t": jnp.float32(2.5)}
    opt_state = {"mu": jax.device_put(jnp.ones((8, 2)), shard)}
    return params, opt_state


def test_saves_on_interval_and_when_forced(tmp_path):
    mesh = make_mesh(MeshConfig(data=-1))
    params, opt_state = _tree(mesh)
    ckpt = checkpoint.Checkpointer(str(tmp_path), save_every=5, keep=10, async_save=False)
    saved = [s for s in range(1, 13) if ckpt.save(s, params, opt_state, {"step": s}, force=s == 12)]
    ckpt.wait()
    assert saved == [5, 10, 12]
    assert ckpt.latest_step() == 12
    ckpt.close()


def test_round_trip_onto_a_sharded_target(tmp_path):
    mesh = make_mesh(MeshConfig(data=-1))
    params, opt_state = _tree(mesh)
    ckpt = checkpoint.Checkpointer(str(tmp_path), save_every=1)
    ckpt.save(3, params, opt_state, {"step": 3, "note": "x"})
    ckpt.wait()
    shardings = jax.tree.map(lambda a: a.sharding, params)
    got_params, got_opt, meta = ckpt.restore(
        3, checkpoint.abstract_like(params, shardings),
        checkpoint.abstract_like(opt_state, jax.tree.map(lambda a: a.sharding, opt_state)),
    )
    ckpt.close()
    np.testing.assert_array_equal(got_params["w"], params["w"])
    assert got_params["w"].sharding == params["w"].sharding
    np.testing.assert_array_equal(got_opt["mu"], opt_state["mu"])
    assert meta == {"step": 3, "note": "x"}
    assert checkpoint.read_meta(str(tmp_path)) == (3, meta)


def test_read_meta_without_checkpoints_says_what_to_pass(tmp_path):
    with pytest.raises(FileNotFoundError, match="output_dir of a training run"):
        checkpoint.read_meta(str(tmp_path))


def test_shape_mismatches_lists_every_differing_parameter():
    from cpt_jax.model import ModelConfig

    small = ModelConfig(vocab_size=64, d_model=32, num_layers=2, num_heads=4, d_mlp=64, max_len=16)
    assert checkpoint.shape_mismatches(small, small) == []
    wider = ModelConfig(**{**small.__dict__, "d_mlp": 128})
    assert checkpoint.shape_mismatches(small, wider) == [
        "['blocks']['mlp']['wi']['bias']: (2, 64) -> (2, 128)",
        "['blocks']['mlp']['wi']['kernel']: (2, 32, 64) -> (2, 32, 128)",
        "['blocks']['mlp']['wo']['kernel']: (2, 64, 32) -> (2, 128, 32)",
    ]
    unscanned = ModelConfig(**{**small.__dict__, "scan_layers": False})
    assert "['blocks']['mlp']['wi']['bias']: (2, 64) -> absent" in checkpoint.shape_mismatches(small, unscanned)


# --- integrity: checksum manifest written after the commit, verified before every restore ---


def _saved(tmp_path, steps=(3,), async_save=False):
    mesh = make_mesh(MeshConfig(data=-1))
    params, opt_state = _tree(mesh)
    ckpt = checkpoint.Checkpointer(str(tmp_path), save_every=1, keep=10, async_save=async_save)
    for step in steps:
        ckpt.save(step, params, opt_state, {"step": step})
    ckpt.wait()
    targets = tuple(checkpoint.abstract_like(t, jax.tree.map(lambda a: a.sharding, t)) for t in (params, opt_state))
    return ckpt, params, targets


def _step_dir(tmp_path, step=3):
    return tmp_path / "checkpoints" / str(step)


def _array_file(tmp_path, item="params", step=3):
    """The largest file of an item: an OCDBT data file holding array bytes."""
    files = [p for p in (_step_dir(tmp_path, step) / item).rglob("*") if p.is_file()]
    return max(files, key=lambda p: p.stat().st_size)


def test_manifest_records_every_item_file_and_no_pickle_is_written_or_read(tmp_path, monkeypatch):
    import json
    import pickle

    ckpt, params, targets = _saved(tmp_path)
    step_dir = _step_dir(tmp_path)
    manifest = json.loads((step_dir / checkpoint.MANIFEST_FILE).read_text())
    files = {str(p.relative_to(step_dir))
             for item in checkpoint.ITEMS for p in (step_dir / item).rglob("*") if p.is_file()}
    assert set(manifest["files"]) == files and {f.split("/")[0] for f in files} == set(checkpoint.ITEMS)
    for rel, entry in manifest["files"].items():
        assert entry["size"] == (step_dir / rel).stat().st_size and len(entry["sha256"]) == 64

    pickle_magic = tuple(bytes([0x80, protocol]) for protocol in range(2, 6))
    for path in (tmp_path / "checkpoints").rglob("*"):
        assert path.suffix not in (".pkl", ".pickle"), path
        assert not path.is_file() or not path.read_bytes().startswith(pickle_magic), f"{path} looks like a pickle"

    def refuse(*_, **__):
        raise AssertionError("a checkpoint read unpickled something")

    for name in ("load", "loads", "Unpickler"):
        monkeypatch.setattr(pickle, name, refuse)
    got, _, meta = ckpt.restore(3, *targets)
    np.testing.assert_array_equal(got["w"], params["w"])
    assert meta == {"step": 3}
    ckpt.close()


def test_async_saves_get_their_manifest_once_committed(tmp_path):
    mesh = make_mesh(MeshConfig(data=-1))
    params, opt_state = _tree(mesh)
    ckpt = checkpoint.Checkpointer(str(tmp_path), save_every=1, keep=10, async_save=True)
    ckpt.save(1, params, opt_state, {"step": 1})
    ckpt.save(2, params, opt_state, {"step": 2})  # step 1 is committed, and gets its manifest, first
    assert (_step_dir(tmp_path, 1) / checkpoint.MANIFEST_FILE).exists()
    ckpt.wait()
    assert (_step_dir(tmp_path, 2) / checkpoint.MANIFEST_FILE).exists()
    ckpt.close()
    assert not list((tmp_path / "checkpoints").rglob("*.tmp"))


@pytest.mark.parametrize(
    "tamper,problem",
    [
        (lambda p: p.write_bytes(bytes([p.read_bytes()[0] ^ 1]) + p.read_bytes()[1:]), "SHA-256 differs"),
        (lambda p: p.write_bytes(p.read_bytes()[:-7]), "the manifest says"),
        (lambda p: p.unlink(), "missing"),
        (lambda p: p.with_name("extra").write_bytes(b"x"), "not in the manifest"),
    ],
    ids=["flipped-bit", "truncated", "deleted", "added"],
)
def test_tampered_parameter_files_are_named_before_anything_is_loaded(tmp_path, tamper, problem):
    ckpt, _, targets = _saved(tmp_path)
    victim = _array_file(tmp_path)
    tamper(victim)
    with pytest.raises(checkpoint.CheckpointIntegrityError, match=problem) as info:
        ckpt.restore(3, *targets)
    message = str(info.value)
    assert "params/" in message and "Use an earlier step" in message
    if problem != "not in the manifest":
        assert str(victim.relative_to(_step_dir(tmp_path))) in message
    with pytest.raises(checkpoint.CheckpointIntegrityError):
        checkpoint.restore_params(str(tmp_path), 3, targets[0])  # the Embedder's path
    # Only the items read are checked: the intact metadata still reads.
    assert ckpt.read_meta(3) == {"step": 3} and checkpoint.read_meta(str(tmp_path)) == (3, {"step": 3})
    ckpt.close()


def test_tampered_metadata_fails_read_meta(tmp_path):
    ckpt, _, _ = _saved(tmp_path)
    meta = _step_dir(tmp_path) / "meta" / "metadata"
    meta.write_text(meta.read_text().replace("3", "4"))
    with pytest.raises(checkpoint.CheckpointIntegrityError, match="meta/metadata: SHA-256"):
        checkpoint.read_meta(str(tmp_path))
    with pytest.raises(checkpoint.CheckpointIntegrityError):
        ckpt.read_meta(3)
    ckpt.close()


def test_a_damaged_manifest_is_an_integrity_error(tmp_path):
    ckpt, _, targets = _saved(tmp_path)
    (_step_dir(tmp_path) / checkpoint.MANIFEST_FILE).write_text('{"files": ')
    with pytest.raises(checkpoint.CheckpointIntegrityError, match="manifest .* is unreadable"):
        ckpt.restore(3, *targets)
    ckpt.close()


def test_a_checkpoint_without_manifest_loads_with_a_warning(tmp_path):
    ckpt, params, targets = _saved(tmp_path)
    (_step_dir(tmp_path) / checkpoint.MANIFEST_FILE).unlink()  # an older run, or killed before it
    with pytest.warns(checkpoint.UnverifiedCheckpointWarning, match="without an integrity check"):
        got, _, _ = ckpt.restore(3, *targets)
    np.testing.assert_array_equal(got["w"], params["w"])
    ckpt.close()


def test_training_quarantines_a_tampered_latest_checkpoint_and_restores_the_previous(tmp_path, capsys):
    from cpt_jax.data.config import DataConfig
    from cpt_jax.model import ModelConfig
    from cpt_jax.parallel.rules import rules_from_config
    from cpt_jax.train import restore as run
    from cpt_jax.train.config import TrainConfig
    from cpt_jax.train.optimizer import make_optimizer
    from cpt_jax.train.state import abstract_train_state, state_shardings

    model = ModelConfig(vocab_size=64, d_model=16, num_layers=1, num_heads=2, d_mlp=32, max_len=16)
    config = TrainConfig(output_dir=str(tmp_path), model=model, num_steps=10, global_batch_size=8,
                              data=DataConfig(max_len_x=16, max_len_y=16))
    mesh, rules = make_mesh(config.mesh), rules_from_config(None)
    tx = make_optimizer(config.optimizer, config.num_steps)
    # Zeros placed with the run's shardings: a state of the right structure without compiling init.
    zeros = jax.tree.map(lambda a, s: jax.device_put(np.zeros(a.shape, a.dtype), s),
                         abstract_train_state(model, config.temperature, tx),
                         state_shardings(model, config.temperature, tx, mesh, rules))
    ckpt = checkpoint.Checkpointer(str(tmp_path), save_every=1, async_save=False)
    for step in (1, 2):
        ckpt.save(step, zeros.params, zeros.opt_state, {"step": step, "model_config": checkpoint.model_meta(model)})
    ckpt.wait()
    victim = _array_file(tmp_path, "opt_state", step=2)
    victim.write_bytes(victim.read_bytes()[:-1] + bytes([victim.read_bytes()[-1] ^ 1]))

    restored, _ = run.restore_or_init(config, ckpt, tx, mesh, rules)
    out = capsys.readouterr().out
    assert "checkpoint at step 2 cannot be restored (CheckpointIntegrityError" in out
    assert "restored checkpoint at step 1" in out
    assert int(restored.step) == 1
    assert (tmp_path / "checkpoints" / "2.unreadable" / checkpoint.MANIFEST_FILE).exists()  # kept, never deleted
    assert ckpt.all_steps() == [1]
    ckpt.close()


def test_reading_a_run_creates_and_changes_nothing(tmp_path):
    """read_meta / restore_params (what evaluate, embed and export use) never create a directory
    (a mistyped path stays missing) and leave every file of the run as it was."""
    missing = tmp_path / "typo"
    with pytest.raises(FileNotFoundError, match="pass the output_dir of a training run"):
        checkpoint.read_meta(str(missing))
    assert not missing.exists()
    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(FileNotFoundError):
        checkpoint.read_meta(str(empty))
    assert list(empty.iterdir()) == []

    run = tmp_path / "run"
    params = {"w": np.arange(6, dtype=np.float32)}
    ckpt = checkpoint.Checkpointer(str(run), async_save=False)
    ckpt.save(3, params, {"count": np.zeros((), np.int32)}, {"step": 3}, force=True)
    ckpt.close()
    before = {p: (p.stat().st_size, p.stat().st_mtime_ns) for p in run.rglob("*")}
    step, meta = checkpoint.read_meta(str(run))
    target = {"w": jax.ShapeDtypeStruct((6,), np.float32, sharding=jax.sharding.SingleDeviceSharding(jax.devices()[0]))}
    np.testing.assert_array_equal(checkpoint.restore_params(str(run), step, target)["w"], params["w"])
    assert (step, meta["step"]) == (3, 3)
    assert {p: (p.stat().st_size, p.stat().st_mtime_ns) for p in run.rglob("*")} == before


def test_a_protected_step_outlives_keep_n_until_released(tmp_path):
    """protect(): keep-N never deletes the step; once replaced, the old one goes after the next commit
    (even when that commit is the run's last save) unless it is among the latest N."""
    ckpt = checkpoint.Checkpointer(str(tmp_path), save_every=1, keep=1, async_save=False)
    tree = {"a": np.ones(3, np.float32)}
    for step in range(1, 7):
        ckpt.save(step, tree, tree, {"step": step}, force=True)
        if step == 2:
            ckpt.protect(2)
        if step == 6:
            ckpt.protect(6, replaces=2)
        ckpt.wait()
        assert ckpt.all_steps() == ([step] if step <= 2 else [2, step] if step < 6 else [6]), step
    ckpt.close()
