"""The built-in linear-probe tasks: the split and cap rules, the stats, and the one atomic build
under <data_dir>/classification/<name>/ (reused when current, rebuilt when missing or stale)."""

from __future__ import annotations

import dataclasses
import json
import os

import pytest

from cpt_jax.data import probe_tasks
from cpt_jax.data.probe_tasks import STDLIB_PACKAGES, StdlibPackages
from cpt_jax.data.stdlib_corpus import module_split


def _pairs() -> list[tuple[str, dict[str, str]]]:
    """Package p<i> with files m0..m5 of 10 docstrings each, and a one-file package."""
    pairs = [(f"p{i}.m{j}:{k}", {"x": f"doc {i} {j} {k}", "module": f"p{i}.m{j}"})
             for i in range(3) for j in range(6) for k in range(10)]
    return pairs + [(f"solo:{k}", {"x": "solo", "module": "solo"}) for k in range(40)]


def test_probe_splits_are_disjoint_by_file_and_capped():
    examples = probe_tasks.build_examples(_pairs(), classes=2, max_train=25, max_held_out=8)
    modules = {split: {r["module"] for r in rows} for split, rows in examples.items()}
    assert not (modules["train"] & modules["test"] or modules["train"] & modules["dev"] or modules["dev"] & modules["test"])
    labels = {r["label"] for rows in examples.values() for r in rows}
    assert labels == {"p0", "p1"}  # two classes kept; "solo" has one file and cannot be split
    for split, cap in (("train", 25), ("dev", 8), ("test", 8)):
        assert all(sum(r["label"] == c for r in examples[split]) <= cap for c in labels)
    assert examples == probe_tasks.build_examples(_pairs(), classes=2, max_train=25, max_held_out=8)


def test_split_files_never_gives_a_held_out_side_more_than_twice_its_share():
    files = {f"m{j}": n for j, n in enumerate([50, 5, 5, 10, 20, 10])}
    sides = probe_tasks.split_files(files)
    for side, share in probe_tasks.HELD_OUT.items():
        held = sum(n for f, n in files.items() if sides.get(f) == side)
        assert 0 < held <= 2 * share * sum(files.values())


@pytest.mark.parametrize(
    "fields, message",
    [({"classes": 1}, r"StdlibPackages\.classes=1 is out of range: must be >= 2"),
     ({"max_train": 5}, r"StdlibPackages\.max_train=5 is out of range: must be >= 20"),
     ({"max_held_out": 0}, r"StdlibPackages\.max_held_out=0 is out of range")],
)
def test_task_sizes_are_checked(fields, message):
    with pytest.raises(ValueError, match=message):
        StdlibPackages(**fields)


def test_the_built_in_task_has_the_reports_full_sizes():
    assert probe_tasks.CLASSIFICATION_TASKS == {STDLIB_PACKAGES: StdlibPackages(15, 150, 50)}


@pytest.fixture
def fake_stdlib(monkeypatch):
    """StdlibPackages.examples from _pairs() instead of the interpreter's stdlib; counts its builds."""
    builds = []

    def examples(task):
        builds.append(task)
        return probe_tasks.build_examples(_pairs(), task.classes, task.max_train, task.max_held_out)

    monkeypatch.setattr(StdlibPackages, "examples", examples)
    return builds


def test_prepare_builds_once_under_the_data_dir(tmp_path, fake_stdlib):
    folder = probe_tasks.prepare(STDLIB_PACKAGES, str(tmp_path))
    assert folder == os.path.join(str(tmp_path), "classification", STDLIB_PACKAGES)
    assert sorted(os.listdir(tmp_path / "classification")) == [STDLIB_PACKAGES]  # no staging left behind
    assert sorted(os.listdir(folder)) == ["dev.jsonl", probe_tasks.STATS_FILE, "test.jsonl", "train.jsonl"]
    rows = [json.loads(line) for line in open(os.path.join(folder, "train.jsonl"))]
    assert rows and all(set(r) == {"text", "label"} for r in rows)
    stats = probe_tasks.read_stats(folder)
    assert stats["classes"] == ["p0", "p1", "p2"] and stats["sizes"] == dataclasses.asdict(StdlibPackages())
    assert sum(stats["counts"]["train"].values()) == len(rows)
    expected = sum(module_split(f"p{i}") == "train" for i in range(3)) / 3
    assert stats["seen_in_training_fraction"] == pytest.approx(expected)
    probe_tasks.prepare(STDLIB_PACKAGES, str(tmp_path))
    assert len(fake_stdlib) == 1  # current: reused


def test_a_missing_file_or_other_sizes_rebuild_the_folder(tmp_path, fake_stdlib):
    folder = probe_tasks.prepare(STDLIB_PACKAGES, str(tmp_path))
    os.remove(os.path.join(folder, "dev.jsonl"))
    probe_tasks.prepare(STDLIB_PACKAGES, str(tmp_path))
    assert len(fake_stdlib) == 2 and os.path.isfile(os.path.join(folder, "dev.jsonl"))
    small = StdlibPackages(classes=2, max_train=25, max_held_out=8)
    stats = probe_tasks.ensure_task(folder, small)
    assert len(fake_stdlib) == 3 and stats["classes"] == ["p0", "p1"]
    assert probe_tasks.ensure_task(folder, small) == stats and len(fake_stdlib) == 3


def test_an_interrupted_build_leaves_no_folder_to_trust(tmp_path, fake_stdlib, monkeypatch):
    real_dump = json.dump

    def killed(*args, **kwargs):
        raise KeyboardInterrupt  # the process stopped while the stats were being written

    monkeypatch.setattr(probe_tasks.json, "dump", killed)
    with pytest.raises(KeyboardInterrupt):
        probe_tasks.prepare(STDLIB_PACKAGES, str(tmp_path))
    assert os.listdir(tmp_path / "classification") == []  # neither the folder nor its staging copy
    monkeypatch.setattr(probe_tasks.json, "dump", real_dump)
    folder = probe_tasks.prepare(STDLIB_PACKAGES, str(tmp_path))
    assert probe_tasks.read_stats(folder) is not None and len(fake_stdlib) == 2


def test_an_unknown_name_names_the_built_in_tasks(tmp_path):
    message = r"'nope' is not a built-in classification task; choose from \('stdlib_packages',\)"
    with pytest.raises(ValueError, match=message):
        probe_tasks.prepare("nope", str(tmp_path))


def test_the_real_task_from_this_interpreters_stdlib(tmp_path):
    """Deterministic: two builds write the same bytes; 2..15 classes, each on every side."""
    first = probe_tasks.prepare(STDLIB_PACKAGES, str(tmp_path / "a"))
    second = probe_tasks.write_task(str(tmp_path / "b"), StdlibPackages())
    for name in ("train.jsonl", "dev.jsonl", "test.jsonl"):
        assert open(os.path.join(first, name), "rb").read() == open(tmp_path / "b" / name, "rb").read()
    assert probe_tasks.read_stats(first) == second
    assert 2 <= len(second["classes"]) <= 15
    for split, counts in second["counts"].items():
        assert sorted(counts) == second["classes"] and max(counts.values()) <= (150 if split == "train" else 50)
    assert 0 < second["seen_in_training_fraction"] < 1
