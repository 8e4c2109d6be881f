"""Tests for cpt_jax.data.stdlib_corpus."""

from __future__ import annotations

import ast
import collections
import textwrap

import pytest

from cpt_jax.data import stdlib_corpus as corpus


def _module(source: str, name: str = "pkg.mod") -> corpus.StdlibModule:
    source = textwrap.dedent(source)
    return corpus.StdlibModule(name, source, ast.parse(source))


def test_module_split_is_stable_and_per_package():
    names = [name for name, _ in corpus.iter_module_files()]
    first = [corpus.module_split(n) for n in names]
    assert first == [corpus.module_split(n) for n in names]
    for name, split in zip(names, first):
        assert split == corpus.module_split(name.split(".")[0])
    tops = sorted({n.split(".")[0] for n in names})
    counts = collections.Counter(corpus.module_split(t) for t in tops)
    assert set(counts) == set(corpus.SPLITS)
    assert 0.65 < counts["train"] / len(tops) < 0.92
    assert [corpus.module_split(t, seed=1) for t in tops] != [corpus.module_split(t) for t in tops]


def test_module_files_skip_tests_and_site_packages():
    names = [name for name, _ in corpus.iter_module_files()]
    assert "json.decoder" in names and "json" in names
    assert len(set(names)) == len(names)
    for name in names:
        parts = set(name.split("."))
        assert not parts & {"test", "tests", "idlelib", "lib2to3", "site-packages"}, name


def test_code_pairs_remove_docstring_and_keep_body():
    module = _module(
        '''
        class A:
            @staticmethod
            def method(x):
                """Return twice the value of x.

                More text here.
                """  # trailing comment
                s = """
        flush-left string line
                """
                return 2 * x

        async def fetch(url):
            """Fetch the given url asynchronously."""
            return await get(url)

        def stub():
            """This function is a stub only."""
            ...

        def short():
            """Tiny."""
            return 1

        def inline(): "Inline docstring on the def line."; return 1
        '''
    )
    skipped: collections.Counter[str] = collections.Counter()
    pairs = dict(corpus.code_pairs_from_sources([(module.name, module.source.encode())], skipped))
    assert set(pairs) == {"pkg.mod:A.method:4", "pkg.mod:fetch:14"}
    assert skipped == {"empty_body": 1, "short_docstring": 1, "inline_docstring": 1}
    method = pairs["pkg.mod:A.method:4"]
    assert method["x"] == "Return twice the value of x.\n\nMore text here."
    assert method["module"] == "pkg.mod"
    assert method["y"].startswith("def method(x):\n    s = ")
    assert "Return twice" not in method["y"] and "trailing comment" not in method["y"]
    assert "\nflush-left string line\n" in method["y"]  # less-indented string kept as is
    assert method["y"].endswith("    return 2 * x\n")
    assert pairs["pkg.mod:fetch:14"]["y"] == "async def fetch(url):\n    return await get(url)\n"


def test_real_code_pairs_parse_without_docstring():
    pairs = list(corpus.iter_code_pairs("test"))
    assert len(pairs) > 100
    assert len({key for key, _ in pairs}) == len(pairs)
    for _, pair in pairs:
        assert corpus.module_split(pair["module"]) == "test"
        fn = ast.parse(pair["y"]).body[0]
        assert isinstance(fn, (ast.FunctionDef, ast.AsyncFunctionDef))
        assert ast.get_docstring(fn) is None
        assert len(pair["x"].split()) >= 3


def test_unknown_split_raises():
    with pytest.raises(ValueError, match="Unknown split"):
        next(corpus.iter_code_pairs("dev"))


# --- bad input: every rule skips or cuts by its stated limit, and counts ---

_GOOD = b'def double(x):\n    """Return twice the value of x."""\n    return 2 * x\n'


def test_source_file_rules_skip_and_count_bad_files():
    sources = [
        ("good", _GOOD),
        ("latin", b'# -*- coding: latin-1 -*-\ndef f(x):\n    """Caf\xe9 returns x plus one."""\n    return x + 1\n'),
        ("huge", b"x = 1\n" * (corpus.MAX_SOURCE_BYTES // 6 + 1)),  # 2 MiB and a bit
        ("ten_mb", b"#" * 10_000_000),
        ("bad_utf8", b'def f(x):\n    """Doc with a \xff byte."""\n    return x\n'),
        ("bad_cookie", b"# -*- coding: no-such-codec -*-\nx = 1\n"),
        ("syntax", b"def f(:\n    return 1\n"),
        ("null_byte", b"x = 1\x00\n"),
        ("nested", b"x = " + b"[" * 100_000 + b"]" * 100_000 + b"\n"),
        ("deep", b"x = " + b"-" * 100_000 + b"1\n"),  # the parser's stack overflows (MemoryError)
    ]
    skipped: collections.Counter[str] = collections.Counter()
    pairs = dict(corpus.code_pairs_from_sources(sources, skipped))
    assert set(pairs) == {"good:double:1", "latin:f:2"}
    assert pairs["latin:f:2"]["x"] == "Café returns x plus one."
    assert skipped == {"file_too_large": 2, "invalid_utf8": 2, "unparsable_source": 4}
    assert set(skipped) <= set(corpus.BUILD_RULES)


def test_iter_sources_counts_unreadable_files_and_reads_no_more_than_the_limit(tmp_path, monkeypatch):
    (tmp_path / "good.py").write_bytes(_GOOD)
    (tmp_path / "huge.py").write_bytes(b"#" * (corpus.MAX_SOURCE_BYTES + 10_000))
    (tmp_path / "folder.py").mkdir()  # open() fails: an OSError like a permission or I/O error
    files = [(p.stem, p) for p in sorted(tmp_path.iterdir())]
    monkeypatch.setattr(corpus, "iter_module_files", lambda: iter(files))
    monkeypatch.setattr(corpus, "module_split", lambda name, seed=0: "train")
    skipped: collections.Counter[str] = collections.Counter()
    read = dict(corpus.iter_sources("train", skipped=skipped))
    assert skipped == {"unreadable_file": 1}
    assert read["good"] == _GOOD and len(read["huge"]) == corpus.MAX_SOURCE_BYTES + 1
    assert [k for k, _ in corpus.code_pairs_from_sources(read.items(), skipped)] == ["good:double:1"]
    assert skipped == {"unreadable_file": 1, "file_too_large": 1}


def test_pair_rules_drop_empty_unencodable_oversized_and_duplicate_pairs():
    def pair(x, y="def f(): return 1"):
        return {"x": x, "y": y, "module": "m"}

    long = "word " * (corpus.MAX_TEXT_CHARS // 5 + 1)
    pairs = [
        ("a", pair("Return one, always.")),
        ("b", pair("   \n\t ")),
        ("c", pair("Fine docstring here.", "  ")),
        ("d", pair("A lone \ud800 surrogate.")),
        ("e", pair(long)),
        ("a", pair("Same key as the first pair.")),
        ("f", pair("Return one, always.")),  # same (x, y) as "a" under another key
        ("g", pair("Return one, always.", "def g(): return 1")),  # same x, other y: kept
    ]
    skipped: collections.Counter[str] = collections.Counter()
    kept = [k for k, _ in corpus.checked_pairs(pairs, skipped)]
    assert kept == ["a", "g"]
    assert skipped == {
        "empty": 2, "unencodable_text": 1, "text_too_long": 1, "duplicate_key": 1, "duplicate_pair": 1
    }


def test_bad_docstrings_in_sources_are_counted_on_the_real_path():
    source = textwrap.dedent(
        '''
        def blank():
            """   """
            return 1

        def surrogate():
            """Has a \\ud800 lone surrogate escape."""
            return 2

        def copy_one(x):
            """Return x unchanged, as is."""
            return x

        class A:
            def copy_one(x):
                """Return x unchanged, as is."""
                return x
        '''
    ).encode()
    skipped: collections.Counter[str] = collections.Counter()
    pairs = dict(corpus.code_pairs_from_sources([("m", source)], skipped))
    assert list(pairs) == ["m:copy_one:10"]  # the method's source differs only by its indentation: same pair
    assert skipped == {"empty": 1, "unencodable_text": 1, "duplicate_pair": 1}


def test_form_feeds_do_not_misalign_the_extracted_code():
    source = b'x = 1\n\x0c\ndef f(x):\n    """Return x plus one, really."""\n    return x + 1\n'
    pairs = dict(corpus.code_pairs_from_sources([("m", source)]))
    assert pairs["m:f:3"]["y"] == "def f(x):\n    return x + 1\n"
