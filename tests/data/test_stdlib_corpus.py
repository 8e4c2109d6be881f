"""Tests for cpt_jax.data.stdlib_corpus."""

from __future__ import annotations

import ast
import collections
import textwrap

import pytest
from pydoc_data import topics as pydoc_topics

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
    pairs = dict(corpus.code_pairs(module, skipped))
    assert set(pairs) == {"pkg.mod:A.method:4", "pkg.mod:fetch:14"}
    assert skipped == {"trivial_body": 1, "short_docstring": 1, "inline_docstring": 1}
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


def test_split_spans_sizes_and_order():
    paragraphs = [" ".join(f"p{i}w{j}" for j in range(30)) for i in range(7)]
    long_paragraph = " ".join(f"long{j}" for j in range(300))
    spans = corpus.split_spans("\n\n".join(paragraphs + [long_paragraph]))
    words = [s.split() for s in spans]
    assert all(20 <= len(w) <= 120 for w in words)
    flat = [w for ws in words for w in ws]
    assert flat == " ".join(paragraphs + [long_paragraph]).split()  # order kept, nothing lost


def test_document_pairs_are_neighbours_and_drop_duplicates():
    paragraphs = [" ".join(f"p{i}w{j}" for j in range(50)) for i in range(4)]
    pairs = [p for _, p in corpus.document_pairs("doc", "m", "\n\n".join(paragraphs))]
    assert [(p["x"], p["y"]) for p in pairs] == list(zip(paragraphs, paragraphs[1:]))
    repeated = "\n\n".join([paragraphs[0]] * 3)
    assert list(corpus.document_pairs("doc", "m", repeated)) == []


def test_real_text_pairs_are_neighbouring_topic_spans():
    topics = pydoc_topics.topics
    pairs = [p for _, p in corpus.iter_text_pairs("test")]
    topic_pairs = [p for p in pairs if p["module"].startswith("pydoc-topic:")]
    assert topic_pairs and len(topic_pairs) < len(pairs)
    for pair in pairs:
        assert corpus.module_split(pair["module"]) == "test"
    for pair in topic_pairs:
        doc = " ".join(topics[pair["module"].removeprefix("pydoc-topic:")].split())
        x, y = " ".join(pair["x"].split()), " ".join(pair["y"].split())
        assert doc.index(x) + len(x) + 1 == doc.index(y)


def test_unknown_split_raises():
    with pytest.raises(ValueError, match="Unknown split"):
        next(corpus.iter_code_pairs("dev"))
