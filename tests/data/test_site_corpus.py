"""Tests for cpt_jax.data.site_corpus / site_dedup and the site_code / site_text builders, on a
fake environment (a stdlib root and a site-packages root under tmp_path)."""

from __future__ import annotations

import collections
import itertools
import os
import pathlib
import sys
import textwrap

import pytest
import tensorflow_datasets as tfds

from cpt_jax.data import builders, site_corpus, site_dedup
from cpt_jax.data.stdlib_corpus import SPLITS, module_split


def _name(split: str, prefix: str) -> str:
    """The first name ``<prefix><i>`` that module_split puts in ``split``."""
    return next(f"{prefix}{i}" for i in itertools.count() if module_split(f"{prefix}{i}") == split)


TRAIN, VALIDATION, TEST = (_name(s, "pkg") for s in SPLITS)
CAPPED, COPIER, STDLIB = _name("train", "capped"), _name("train", "lib"), _name("train", "std")
FUNCTION = '''
def merge_sorted(left, right):
    """Merge two sorted lists into one sorted list, keeping equal items stable."""
    out, i, j = [], 0, 0
    while i < len(left) and j < len(right):
        if right[j] < left[i]:
            out.append(right[j]); j += 1
        else:
            out.append(left[i]); i += 1
    out.extend(left[i:])
    out.extend(right[j:])
    return out
'''
# The same function as vendored elsewhere: one line changed (5-gram Jaccard ~0.8+), another docstring.
NEAR_COPY = FUNCTION.replace("keeping equal items stable", "as the vendored helper does").replace(
    "out.extend(right[j:])", "out.extend(right[j:])  # tail")


def _prose(tag: str) -> str:
    """Three paragraphs of 60 distinct words: three spans, two neighbouring pairs (SPANS)."""
    return "\n\n".join(" ".join(f"{tag}{p}{i}" for i in range(60)) for p in "abc") + "\n"


def _write(path: pathlib.Path, text: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)


def _doc_function(name: str) -> str:
    return f'def {name}(x):\n    """Return {name} of the value x, documented."""\n    return x + {len(name)}\n'


@pytest.fixture()
def fake_env(tmp_path: pathlib.Path, monkeypatch: pytest.MonkeyPatch) -> tuple[site_corpus.Root, ...]:
    stdlib, site = tmp_path / "stdlib", tmp_path / "site-packages"
    _write(stdlib / STDLIB / "__init__.py", _doc_function("std_helper"))
    _write(stdlib / STDLIB / "test" / "test_x.py", _doc_function("std_test"))  # pruned
    _write(site / TEST / "__init__.py", FUNCTION)
    _write(site / TEST / "README.md", _prose("readme"))
    _write(site / TRAIN / "__init__.py", _doc_function("train_helper"))
    _write(site / TRAIN / "compat.py", NEAR_COPY)  # a near copy of a test pair
    _write(site / COPIER / "exact.py", "\n\n" + FUNCTION)  # an exact copy
    _write(site / TRAIN / "_vendor" / "copy.py", FUNCTION)  # pruned, never read
    _write(site / TRAIN / "tests" / "test_y.py", _doc_function("train_test"))  # pruned
    _write(site / VALIDATION / "mod.py", _doc_function("valid_helper"))
    for i in range(4):
        _write(site / CAPPED / f"m{i}.py", _doc_function(f"capped_{i}"))
    _write(site / f"{TRAIN}-1.0.dist-info" / "METADATA",
           f"Metadata-Version: 2.1\nName: {TRAIN}\nVersion: 1.0\n\n{_prose('train')}")
    _write(site / f"{TRAIN}-1.0.dist-info" / "top_level.txt", f"{TRAIN}\n")
    _write(site / f"{TEST}-2.0.dist-info" / "METADATA",
           f"Metadata-Version: 2.1\nName: {TEST}\nVersion: 2.0\n\n{_prose('test')}")
    _write(site / f"{TEST}-2.0.dist-info" / "top_level.txt", f"{TEST}\n")
    outside = tmp_path / "outside"
    _write(outside / "secret.py", _doc_function("secret_helper"))
    os.symlink(outside / "secret.py", site / VALIDATION / "linked.py")  # a symlink out of the roots
    os.symlink(outside, site / "linkedpkg")
    roots = (site_corpus.Root(stdlib, stdlib=True), site_corpus.Root(site))
    monkeypatch.setattr(site_corpus, "environment_roots", lambda: roots)
    monkeypatch.setattr(site_corpus, "MAX_FILES_PER_PACKAGE", 2)
    return roots


def _mine(kind: str) -> tuple[dict[str, list[dict[str, str]]], dict[str, collections.Counter]]:
    pairs, skipped = {}, {}
    for split in SPLITS:
        skipped[split] = collections.Counter()
        pairs[split] = [p for _, p in site_corpus.iter_pairs(kind, split, skipped=skipped[split])]
    return pairs, skipped


def test_code_pairs_are_mined_and_split_by_package(fake_env):
    pairs, _ = _mine("code")
    modules = {split: {p["module"] for p in ps} for split, ps in pairs.items()}
    assert modules["test"] == {TEST}
    assert modules["validation"] == {f"{VALIDATION}.mod"}
    assert {TRAIN, STDLIB, f"{CAPPED}.m0", f"{CAPPED}.m1"} <= modules["train"]
    for split, names in modules.items():
        assert {module_split(m) for m in names} == {split}
    tops = {split: {m.split(".")[0] for m in names} for split, names in modules.items()}
    assert not tops["train"] & tops["validation"] and not tops["train"] & tops["test"]
    assert not tops["validation"] & tops["test"]


def test_copies_of_a_test_pair_are_dropped_from_train_and_counted(fake_env):
    pairs, skipped = _mine("code")
    assert [p["x"] for p in pairs["test"]] == ["Merge two sorted lists into one sorted list, keeping equal items stable."]
    train_modules = {p["module"] for p in pairs["train"]}
    assert f"{TRAIN}.compat" not in train_modules and f"{COPIER}.exact" not in train_modules
    assert skipped["train"]["cross_split_duplicate"] == 1  # exact.py: the same code (and docstring)
    assert skipped["train"]["cross_split_near_duplicate"] == 1  # compat.py: one line changed
    assert skipped["test"]["cross_split_duplicate"] == 0  # the held-out pair itself is kept


def test_without_the_held_out_copy_the_near_copy_is_kept(fake_env):
    """The dedup must be what removes compat.py (a test that can fail)."""
    (fake_env[1].path / TEST / "__init__.py").write_text(_doc_function("unrelated"))
    pairs, skipped = _mine("code")
    assert {f"{TRAIN}.compat", f"{COPIER}.exact"} <= {p["module"] for p in pairs["train"]}
    assert skipped["train"]["cross_split_near_duplicate"] == skipped["train"]["cross_split_duplicate"] == 0


def test_per_package_cap_keeps_the_first_files_and_counts_the_rest(fake_env):
    pairs, skipped = _mine("code")
    capped = sorted(p["module"] for p in pairs["train"] if p["module"].startswith(CAPPED))
    assert capped == [f"{CAPPED}.m0", f"{CAPPED}.m1"]
    assert skipped["train"]["package_file_cap"] == 2  # m2.py, m3.py


def test_text_pairs_from_metadata_doc_files_and_docstrings(fake_env):
    pairs, skipped = _mine("text")
    kinds = {split: collections.Counter(site_corpus.source_kind(p["module"], "text") for p in ps)
             for split, ps in pairs.items()}
    assert kinds["train"]["metadata"] == 2 and kinds["test"]["metadata"] == 2
    assert kinds["test"]["doc_file"] == 2  # README.md: three paragraphs, two neighbouring pairs
    assert {p["module"] for p in pairs["test"]} == {f"{TEST}.metadata:{TEST}", f"{TEST}.file:README.md"}
    for split, ps in pairs.items():
        assert {module_split(p["module"]) for p in ps} <= {split}


def test_nothing_outside_the_roots_is_read(fake_env, tmp_path):
    _mine("code"), _mine("text")  # imports done before the hook listens
    roots = [os.path.realpath(root.path) for root in fake_env]
    seen: list[str] = []
    listening = [True]

    def hook(event: str, args: tuple) -> None:
        if listening[0] and event in ("open", "os.listdir", "os.scandir") and args and isinstance(args[0], (str, bytes, os.PathLike)):
            seen.append(os.path.realpath(os.fsdecode(args[0])))

    sys.addaudithook(hook)  # cannot be removed: switched off below
    try:
        _mine("code"), _mine("text")
    finally:
        listening[0] = False
    assert seen
    outside = [p for p in seen if not any(p == r or p.startswith(r + os.sep) for r in roots)]
    assert outside == []
    assert not any(p.endswith(("secret.py", "copy.py", "test_x.py", "test_y.py")) for p in seen)


def test_shingle_jaccard_threshold():
    a = " ".join(f"w{i}" for i in range(100))
    near = a.replace("w50", "changed")  # 5 of 96 shingles changed
    far = " ".join(f"w{i}" for i in range(60)) + " " + " ".join(f"z{i}" for i in range(40))
    index = site_dedup.HeldOutIndex()
    index.add(a)
    assert index.match("  " + a.replace(" ", "\n")) == "cross_split_duplicate"
    assert site_dedup.jaccard(site_dedup.shingles(a), site_dedup.shingles(near)) >= 0.8
    assert index.match(near) == "cross_split_near_duplicate"
    assert site_dedup.jaccard(site_dedup.shingles(a), site_dedup.shingles(far)) < 0.8
    assert index.match(far) is None


def test_site_code_builds_with_counts_in_metadata(fake_env, tmp_path, capsys):
    data_dir = str(tmp_path / "tfds")
    builder = builders.prepare("site_code", data_dir)
    assert builder.info.file_format.value == "array_record"
    log = capsys.readouterr().out
    assert "cross_split_duplicate=1, cross_split_near_duplicate=1" in log
    counts = builders.drop_counts("site_code", data_dir, "train")
    assert list(counts) == list(site_corpus.BUILD_RULES)
    assert counts["package_file_cap"] == 2 and counts["cross_split_near_duplicate"] == 1
    assert builder.info.metadata["kind_counts"]["test"] == {"code": 1}
    test = tfds.data_source("site_code", split="test", data_dir=data_dir, download=False)
    assert [r["module"].decode() for r in test] == [TEST]
    assert textwrap.dedent(FUNCTION).split('"""')[2].strip() in test[0]["y"].decode()


@pytest.mark.parametrize("kind", ["code", "text"])
def test_a_shared_held_out_mining_writes_the_same_splits(fake_env, kind):
    """A build mines validation and test once (HeldOutPairs) for train's dedup and their own
    splits: the same pairs and drop counts as mining them again for each."""
    expected, expected_skipped = _mine(kind)
    held_out = site_corpus.HeldOutPairs(kind, fake_env)
    for split in SPLITS:  # the builder's order: train (which fills held_out) first
        skipped = collections.Counter()
        pairs = [p for _, p in site_corpus.iter_pairs(kind, split, fake_env, skipped=skipped, held_out=held_out)]
        assert pairs == expected[split] and skipped == expected_skipped[split]
    with pytest.raises(ValueError, match="same kind, roots and seed"):
        list(site_corpus.iter_pairs("code" if kind == "text" else "text", "train", fake_env, held_out=held_out))
