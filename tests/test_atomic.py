"""cpt_jax.atomic: a failed write leaves the old file (or directory) whole and no temporary behind."""

from __future__ import annotations

import errno
import json
import os
import pathlib

import pytest

from cpt_jax import atomic


def _disk_full(*args, **kwargs):
    raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))


def test_writes_replace_the_file_and_keep_its_mode(tmp_path: pathlib.Path):
    path = tmp_path / "a.json"
    atomic.write_json(str(path), {"x": 1}, indent=1)
    assert json.loads(path.read_text()) == {"x": 1}
    os.chmod(path, 0o640)
    atomic.write_text(str(path), "new")
    assert path.read_text() == "new" and os.stat(path).st_mode & 0o777 == 0o640
    atomic.write_bytes(str(tmp_path / "b.bin"), b"\0\1")
    assert (tmp_path / "b.bin").read_bytes() == b"\0\1"
    assert sorted(os.listdir(tmp_path)) == ["a.json", "b.bin"]


@pytest.mark.parametrize("where", ["fsync", "replace", "write"])
def test_a_full_disk_leaves_the_old_file_and_no_temporary(where, tmp_path: pathlib.Path, monkeypatch):
    path = tmp_path / "config.gin"
    path.write_text("old content\n")
    if where == "write":  # the disk fills after part of the data is on it
        real_open = open

        class HalfFile:
            def __init__(self, f):
                self._f = f

            def write(self, data):
                self._f.write(data[: len(data) // 2])
                self._f.flush()
                _disk_full()

            def __getattr__(self, name):
                return getattr(self._f, name)

            def __enter__(self):
                return self

            def __exit__(self, *exc):
                self._f.close()

        monkeypatch.setattr("builtins.open", lambda *a, **k: HalfFile(real_open(*a, **k)))
    else:
        monkeypatch.setattr(os, where, _disk_full)
    with pytest.raises(OSError) as info:
        atomic.write_text(str(path), "new content " * 1000)
    monkeypatch.undo()
    error = info.value
    assert isinstance(error, atomic.AtomicWriteError) and error.errno == errno.ENOSPC
    assert str(path) in str(error) and "free space on /" in str(error) and "unchanged" in str(error)
    assert isinstance(error.__cause__, OSError) and error.__cause__.errno == errno.ENOSPC
    assert path.read_text() == "old content\n"
    assert os.listdir(tmp_path) == ["config.gin"]


def test_a_failed_first_write_creates_nothing(tmp_path: pathlib.Path, monkeypatch):
    monkeypatch.setattr(os, "fsync", _disk_full)
    with pytest.raises(OSError, match="no file was created"):
        atomic.write_json(str(tmp_path / "data_stats.json"), {"a": 1})
    assert os.listdir(tmp_path) == []


def test_an_unserialisable_object_writes_nothing(tmp_path: pathlib.Path):
    with pytest.raises(TypeError):
        atomic.write_json(str(tmp_path / "x.json"), {"a": object()})
    assert os.listdir(tmp_path) == []


def test_staged_dir_appears_only_when_complete(tmp_path: pathlib.Path):
    final = tmp_path / "out"
    with atomic.staged_dir(str(final)) as tmp:
        (pathlib.Path(tmp) / "a").write_text("1")
        assert not final.exists() and os.path.dirname(tmp) == str(tmp_path)
    assert sorted(os.listdir(final)) == ["a"] and os.listdir(tmp_path) == ["out"]
    # A non-empty final directory is replaced whole: no file of the old one survives.
    with atomic.staged_dir(str(final)) as tmp:
        (pathlib.Path(tmp) / "b").write_text("2")
        assert (final / "a").read_text() == "1"
    assert os.listdir(final) == ["b"] and os.listdir(tmp_path) == ["out"]


@pytest.mark.parametrize("existing", [False, True])
def test_staged_dir_failing_midway_leaves_no_half_directory(existing, tmp_path: pathlib.Path):
    final = tmp_path / "tokenizer"
    if existing:
        final.mkdir()
        (final / "tokenizer.json").write_text("old")
    with pytest.raises(OSError) as info:
        with atomic.staged_dir(str(final)) as tmp:
            (pathlib.Path(tmp) / "tokenizer.json").write_text("half")
            _disk_full()
    assert isinstance(info.value, atomic.AtomicWriteError) and info.value.errno == errno.ENOSPC
    assert str(final) in str(info.value) and "free space on" in str(info.value)
    assert os.listdir(tmp_path) == (["tokenizer"] if existing else [])
    if existing:
        assert os.listdir(final) == ["tokenizer.json"] and (final / "tokenizer.json").read_text() == "old"
    # Any other exception is re-raised unchanged, after the same clean-up.
    with pytest.raises(KeyError):
        with atomic.staged_dir(str(final)):
            raise KeyError("boom")
    assert os.listdir(tmp_path) == (["tokenizer"] if existing else [])


def test_replace_dir_without_replace_refuses_a_non_empty_target(tmp_path: pathlib.Path):
    (tmp_path / "new").mkdir()
    (tmp_path / "new" / "f").write_text("new")
    (tmp_path / "busy").mkdir()
    (tmp_path / "busy" / "keep").write_text("mine")
    with pytest.raises(FileExistsError, match="not empty"):
        atomic.replace_dir(str(tmp_path / "new"), str(tmp_path / "busy"), replace=False)
    assert (tmp_path / "busy" / "keep").read_text() == "mine" and (tmp_path / "new" / "f").exists()
    (tmp_path / "empty").mkdir()
    atomic.replace_dir(str(tmp_path / "new"), str(tmp_path / "empty"), replace=False)
    assert os.listdir(tmp_path / "empty") == ["f"] and not (tmp_path / "new").exists()


def test_replace_dir_without_an_atomic_exchange_still_replaces_whole(tmp_path: pathlib.Path, monkeypatch):
    monkeypatch.setattr(atomic, "_exchange", lambda a, b: False)  # e.g. not Linux
    for name, content in (("old", "1"), ("new", "2")):
        (tmp_path / name).mkdir()
        (tmp_path / name / name).write_text(content)
    atomic.replace_dir(str(tmp_path / "new"), str(tmp_path / "old"))
    assert os.listdir(tmp_path) == ["old"] and os.listdir(tmp_path / "old") == ["new"]
