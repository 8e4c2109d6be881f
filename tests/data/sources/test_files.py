"""files.expand_globs: glob semantics, symlink loops, duplicate real paths, bounded expansion."""

from __future__ import annotations

import glob
import os
import pathlib
import random
import warnings

import pytest

from cpt_jax.data.sources import CodeFilesSource, PairedJsonlSource, TextFilesSource
from cpt_jax.data.sources import files
from cpt_jax.data.sources.base import DROP_RULES, DropStats

WORDS = " ".join(f"w{i}" for i in range(20))
SPANS = {"min_span_words": 5, "max_span_words": 5}


def _build(config):
    """config.build(), its GlobWarnings recorded (not shown)."""
    with warnings.catch_warnings(record=True):
        warnings.simplefilter("always")
        return config.build()


def _expand(patterns, stats=None) -> tuple[list[str], list[str]]:
    """(files, warning messages) of expand_globs."""
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        found = files.expand_globs(patterns, "Test.paths", stats)
    return found, [str(w.message) for w in caught if issubclass(w.category, files.GlobWarning)]


def _two_loops(root: pathlib.Path) -> pathlib.Path:
    """root/corpus/sub/{a.txt, loop1 -> .. (corpus), loop2 -> ../.. (root)}: each loop alone
    makes glob repeat a.txt up to the symlink limit; both make its walk exponential."""
    sub = root / "corpus" / "sub"
    sub.mkdir(parents=True)
    (sub / "a.txt").write_text(WORDS)
    (sub / "loop1").symlink_to("..")
    (sub / "loop2").symlink_to("../..")
    return root / "corpus"


@pytest.mark.timeout(30)
def test_two_symlink_loops_under_globstar_finish_and_are_reported(tmp_path: pathlib.Path):
    corpus = _two_loops(tmp_path)
    # What a run does: build the source (glob.glob never returned here).
    source = _build(TextFilesSource(paths=(str(corpus / "**" / "*.txt"),), **SPANS))
    assert source.shards() == [str(corpus / "sub" / "a.txt")]
    stats = DropStats()
    found, messages = _expand([str(corpus / "**" / "*.txt"), str(corpus / "**")], stats)
    assert found == [str(corpus / "sub" / "a.txt")]
    assert stats.as_dict() == {"symlink_loop": 4}  # two per glob
    assert len(messages) == 1 and "4 symlink loop(s) not followed" in messages[0]
    assert f"{str(corpus / 'sub' / 'loop1')!r} -> '..' (= {str(corpus)!r})" in messages[0]
    assert f"through the link {str(corpus / 'sub' / 'loop2')!r} -> {str(tmp_path)!r}" in messages[0]


@pytest.mark.timeout(30)
def test_one_symlink_loop_lists_each_real_file_once(tmp_path: pathlib.Path):
    sub = tmp_path / "corpus" / "sub"
    sub.mkdir(parents=True)
    (sub / "a.txt").write_text(WORDS)
    (sub / "b.txt").write_text(WORDS)
    (sub / "loop").symlink_to("..")
    source = _build(TextFilesSource(paths=(str(tmp_path / "corpus" / "**" / "*.txt"),), **SPANS))
    shards = source.shards()
    assert shards == [str(sub / "a.txt"), str(sub / "b.txt")]  # glob.glob: 41 paths each
    assert len({os.path.realpath(s) for s in shards}) == len(shards)
    stats = DropStats()
    _, messages = _expand([str(tmp_path / "corpus" / "**" / "*.txt")], stats)
    assert stats.as_dict() == {"symlink_loop": 1}
    assert f"{str(sub / 'loop')!r} -> '..'" in messages[0]


def test_a_file_reached_through_links_or_two_globs_is_one_shard(tmp_path: pathlib.Path):
    corpus = tmp_path / "corpus"
    (corpus / "real").mkdir(parents=True)
    (corpus / "real" / "c.txt").write_text(WORDS)
    (corpus / "z.txt").write_text(WORDS)
    (corpus / "a_link.txt").symlink_to("z.txt")  # a file link sorting before its target
    (corpus / "0dir").symlink_to("real")  # a directory link sorting before its target
    (corpus / "1dir").symlink_to(corpus / "real")
    expected = [str(corpus / "real" / "c.txt"), str(corpus / "z.txt")]  # under the path crossing the fewest links
    source = _build(TextFilesSource(paths=(str(corpus / "**" / "*.txt"), str(corpus / "1dir" / "*.txt")), **SPANS))
    assert source.shards() == expected  # glob.glob: 0dir/c.txt, 1dir/c.txt, a_link.txt as well
    stats = DropStats()
    found, messages = _expand(
        [str(corpus / "**" / "*.txt"), str(corpus / "*" / "c.txt"), str(corpus / "real" / ".." / "z.txt")], stats
    )
    assert found == expected
    # a_link.txt; 0dir and 1dir under "**" (not walked again); 0dir/c.txt and 1dir/c.txt of the
    # second glob (real/c.txt is the same path again, not counted); real/../z.txt.
    assert stats.as_dict() == {"duplicate_path": 6}
    assert "6 path(s) resolve to a file or directory already matched" in messages[0]
    assert f"{str(corpus / 'a_link.txt')!r} is {str(corpus / 'z.txt')!r}" in messages[0]


def test_overlapping_globs_are_not_duplicates(tmp_path: pathlib.Path):
    (tmp_path / "a.txt").write_text(WORDS)
    stats = DropStats()
    found, messages = _expand([str(tmp_path / "*.txt"), str(tmp_path / "**" / "*.txt")], stats)
    assert found == [str(tmp_path / "a.txt")] and stats.as_dict() == {} and messages == []


def test_bounded_expansion_names_the_glob_the_limit_and_the_fix(tmp_path: pathlib.Path, monkeypatch):
    for d in range(4):
        (tmp_path / f"d{d}").mkdir()
        for f in range(5):
            (tmp_path / f"d{d}" / f"{f}.txt").write_text("x")
    pattern = str(tmp_path / "**" / "*.txt")
    monkeypatch.setattr(files, "MAX_SCANNED_ENTRIES", 12)
    scans = r"the glob '.*\*\*/\*\.txt' scans more than 12 directory entries .*MAX_SCANNED_ENTRIES.*narrow the glob"
    with pytest.raises(ValueError, match=scans):
        files.expand_globs([pattern], "Test.paths")
    monkeypatch.setattr(files, "MAX_SCANNED_ENTRIES", 10_000)
    monkeypatch.setattr(files, "MAX_MATCHED_FILES", 19)
    matches = r"the glob '.*\*\*/\*\.txt' brings the files matched to more than 19 .*MAX_MATCHED_FILES.*narrow the glob"
    with pytest.raises(ValueError, match=matches):
        PairedJsonlSource(paths=(pattern,)).build()
    monkeypatch.setattr(files, "MAX_MATCHED_FILES", 20)
    assert len(files.expand_globs([pattern], "Test.paths")) == 20


def test_glob_without_match_is_named(tmp_path: pathlib.Path):
    (tmp_path / "a.py").write_text("x = 1\n")
    for pattern in ("*.txt", "missing/**/*.py", "a.py/", "**/"):
        with pytest.raises(ValueError, match="Test.paths: the glob .* matches no file"):
            files.expand_globs([str(tmp_path / "a.py"), f"{tmp_path}/{pattern}"], "Test.paths")
    with pytest.raises(ValueError, match="matches no file"):
        CodeFilesSource(paths=(str(tmp_path / "*.go"),)).build()


def test_the_drop_rules_are_registered():
    assert {"symlink_loop", "duplicate_path"} <= set(DROP_RULES)
    assert set(files.Discovery(files=[], loops=1, duplicates=1).drops()) <= set(DROP_RULES)


def _random_tree(root: pathlib.Path, seed: int) -> None:
    rng = random.Random(seed)
    names = ["a", "b1", "d0", "d1", "x.txt", "y.md", "z.txt.gz", ".hid", ".dot.txt", "q[1].txt", "c d.txt", "ab"]

    def fill(directory: pathlib.Path, depth: int) -> None:
        directory.mkdir(exist_ok=True)
        chosen = rng.sample(names, rng.randint(3, 8))
        for name in ["d0", "d1", ".hid", "x.txt"] + chosen if depth == 0 else chosen:
            if (directory / name).exists():
                continue
            if depth < 4 and (rng.random() < 0.5 or (depth == 0 and name in ("d0", "d1", ".hid"))):
                fill(directory / name, depth + 1)
            else:
                (directory / name).write_text(name)

    fill(root, 0)
    (root / "d0" / "empty").mkdir(parents=True, exist_ok=True)


GLOB_PATTERNS = [
    "**", "**/*", "**/*.txt", "*/**/*.md", "**/.*", ".*/**", "**/.hid/*", "**/.hid/**/*", "d0/**/**/*.txt",
    "*/*.txt", "?1/**/*", "[ab]*/**/*.gz", "**/q[[]1].txt", "**/q[1].txt", "d*/**/", "**/x.txt", "d0/*/x.txt",
    "d0/**", "d0", "x.txt", "nowhere/**/*.txt", "*/d*/*", "**/d1/**/*.md", "**/*/**/y.md", "*", ".*", "**/c d.txt",
    "**/a/**", "d[!0]/**/*", "**/*.[tm][xd]*", "a**/*",
]


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_matches_glob_glob_on_a_tree_without_links(tmp_path: pathlib.Path, monkeypatch, seed: int):
    root = tmp_path / "tree"
    _random_tree(root, seed)
    monkeypatch.chdir(root)
    nonempty = 0
    for relative in GLOB_PATTERNS:
        for pattern in (relative, f"{root}/{relative}"):
            expected = sorted({p for p in glob.glob(pattern, recursive=True) if os.path.isfile(p)})
            try:
                found = files.discover_files([pattern], "Test.paths")
            except ValueError as e:
                assert "matches no file" in str(e)
                actual = []
            else:
                actual = found.files
                assert found.drops() == {}
            assert actual == expected, pattern
            nonempty += bool(expected)
    assert nonempty > len(GLOB_PATTERNS)  # the comparison is not vacuous


def test_a_link_out_of_the_tree_is_followed_as_glob_does(tmp_path: pathlib.Path):
    (tmp_path / "outside" / "deep").mkdir(parents=True)
    (tmp_path / "outside" / "deep" / "o.txt").write_text(WORDS)
    (tmp_path / "corpus").mkdir()
    (tmp_path / "corpus" / "c.txt").write_text(WORDS)
    (tmp_path / "corpus" / "ext").symlink_to(tmp_path / "outside")
    (tmp_path / "corpus" / "broken").symlink_to(tmp_path / "nowhere")
    for pattern in ("**/*.txt", "*/deep/*.txt", "**", "ext/**/o.txt"):
        full = str(tmp_path / "corpus" / pattern)
        found, messages = _expand([full])
        assert found == sorted(p for p in glob.glob(full, recursive=True) if os.path.isfile(p)) and messages == []
        assert str(tmp_path / "corpus" / "ext" / "deep" / "o.txt") in found
