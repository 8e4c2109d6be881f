"""Paired examples mined from everything Python on this machine: the installed packages
(site-packages) and the standard library. Nothing is downloaded; the builders ``site_code`` and
``site_text`` (data/builders/site_pairs.py) write them once.

* code pairs: (docstring, function) of every ``.py`` file, through the one code miner
  (sources/code_pairs.py) and the stdlib builder's pair checks (stdlib_corpus.code_pairs_from_sources);
* text pairs: neighbouring paragraph spans (stdlib_text_pairs.SPANS, sources/spans.py) of
  - module and class docstrings of the same ``.py`` files (kind "docstring"),
  - each distribution's long description, the body of its ``*.dist-info/METADATA`` read through
    ``importlib.metadata`` (kind "metadata", module ``"<top>.metadata:<distribution>"``),
  - ``.md`` and ``.rst`` files inside packages, and ``.txt`` files in a doc-like directory
    (DOC_DIRS) (kind "doc_file", module ``"<top>.file:<path inside the package>"``); license
    files (LICENSE*, LICENCE*, COPYING*, NOTICE*) are not prose and are not read,
  - the pydoc help topics, when the roots include the running interpreter's stdlib (kind
    "pydoc_topic", as stdlib_text).

Roots (:func:`environment_roots`): the stdlib (``sysconfig``), then every site-packages directory
(``site.getsitepackages()``, the user site, ``sysconfig`` purelib/platlib), real paths, each once.
A top-level package is a directory of a root whose name is an identifier, or a top-level ``.py``
module. Walks are sorted, symlinks (files or directories) are never followed, and directories
named in SKIP_DIRS (tests, vendored copies, caches; for the stdlib also idlelib, lib2to3,
site-packages) or whose name is not an identifier are pruned, so only files under the roots are
read, one at a time, at most MAX_SOURCE_BYTES + 1 bytes each.

Caps, which bound a build's time and memory whatever is installed (bench/corpus.py measures both;
the per-file mining runs over the CPUs through data/parallel.py):
  MAX_FILES_PER_PACKAGE = 200      .py files per top-level package, the first in sorted path order;
  MAX_DOC_FILES_PER_PACKAGE = 40   doc files per top-level package, likewise;
each file beyond them is counted under ``package_file_cap``. MAX_SOURCE_BYTES (2 MiB, files over it
``file_too_large``), MAX_DOCUMENT_CHARS and MAX_TEXT_CHARS are the stdlib builders'.

Splits: by top-level package through stdlib_corpus.module_split (stable sha256, ~80/10/10), and a
distribution's description goes with its top-level package (the one named like the distribution,
else the first in sorted order), so no package is in two splits and ``module_split(pair["module"])``
is always the pair's split. Then train pairs that repeat a validation/test pair's text, exactly or
nearly, are dropped from train (site_dedup.py). Every drop is counted under a name of
``BUILD_RULES`` (meanings: sources/base.DROP_RULES). Deterministic for a given environment.
"""

from __future__ import annotations

import collections
import dataclasses
import importlib.metadata
import os
import pathlib
import re
import site
import sysconfig
from collections.abc import Iterable, Iterator
from typing import Literal

from cpt_jax.data import site_dedup, stdlib_corpus, stdlib_text_pairs
from cpt_jax.data.sources.base import CounterSink
from cpt_jax.data.stdlib_corpus import MAX_SOURCE_BYTES, SPLITS, Pair, SourceFile, check_split, module_split

MAX_FILES_PER_PACKAGE = 200
MAX_DOC_FILES_PER_PACKAGE = 40
SKIP_DIRS = frozenset({"test", "tests", "testing", "_vendor", "vendor", "vendored", "_vendored",
                       "__pycache__", "site-packages", "dist-packages"})
STDLIB_SKIP_DIRS = SKIP_DIRS | {"idlelib", "lib2to3"}
DOC_SUFFIXES = (".md", ".rst")
DOC_DIRS = frozenset({"doc", "docs", "documentation", "_docs"})  # where .txt files are prose too
_LICENSE = re.compile(r"(licen[cs]e|copying|notice)", re.IGNORECASE)

BUILD_RULES: tuple[str, ...] = (
    *stdlib_corpus.BUILD_RULES, "package_file_cap", "cross_split_duplicate", "cross_split_near_duplicate",
)
Kind = Literal["code", "text"]
KINDS: tuple[Kind, ...] = ("code", "text")
SOURCE_KINDS = ("code", "docstring", "metadata", "doc_file", "pydoc_topic")


@dataclasses.dataclass(frozen=True)
class Root:
    """A directory whose top-level packages are mined; ``stdlib`` roots prune STDLIB_SKIP_DIRS."""

    path: pathlib.Path
    stdlib: bool = False


def environment_roots() -> tuple[Root, ...]:
    """The running environment's stdlib, then its site-packages directories (sorted), each once."""
    stdlib = pathlib.Path(os.path.realpath(stdlib_corpus.stdlib_root()))
    candidates = [*site.getsitepackages(), site.getusersitepackages(),
                  sysconfig.get_paths()["purelib"], sysconfig.get_paths()["platlib"]]
    sites = sorted({pathlib.Path(os.path.realpath(p)) for p in candidates if os.path.isdir(p)} - {stdlib})
    return (Root(stdlib, stdlib=True), *(Root(p) for p in sites))


@dataclasses.dataclass(frozen=True)
class PackageFile:
    top: str  # top-level package
    relative: str  # posix path inside the root, e.g. "numpy/linalg/linalg.py"
    path: pathlib.Path

    @property
    def module(self) -> str:
        parts = self.relative[: -len(".py")].split("/")
        return ".".join(parts[:-1] if parts[-1] == "__init__" and len(parts) > 1 else parts)


def _is_python(relative: str) -> bool:
    return relative.endswith(".py") and all(p.isidentifier() for p in relative[:-3].split("/"))


def _is_doc(relative: str) -> bool:
    parts = relative.split("/")
    if _LICENSE.match(parts[-1]):
        return False
    return relative.endswith(DOC_SUFFIXES) or (relative.endswith(".txt") and bool(DOC_DIRS & set(parts[1:-1])))


def _package_files(root: Root, top: str, directory: pathlib.Path) -> list[str]:
    """Sorted posix paths (relative to the root) of the regular files of one package."""
    skip = STDLIB_SKIP_DIRS if root.stdlib else SKIP_DIRS
    found = []
    for current, subdirs, files in os.walk(directory):  # never follows directory symlinks
        subdirs[:] = [d for d in subdirs if d not in skip and d.isidentifier()]
        base = pathlib.Path(current).relative_to(root.path).as_posix()
        found.extend(f"{base}/{f}" for f in files if not os.path.islink(os.path.join(current, f)))
    return sorted(found)


def iter_packages(roots: Iterable[Root]) -> Iterator[tuple[str, Root, list[str]]]:
    """(top-level package, root, its files' relative paths) for every package of the roots, sorted."""
    for root in roots:
        skip = STDLIB_SKIP_DIRS if root.stdlib else SKIP_DIRS
        with os.scandir(root.path) as scan:
            entries = sorted(scan, key=lambda e: e.name)
        for entry in entries:
            if entry.is_symlink():
                continue
            if entry.is_dir() and entry.name.isidentifier() and entry.name not in skip:
                yield entry.name, root, _package_files(root, entry.name, pathlib.Path(entry.path))
            elif entry.is_file() and _is_python(entry.name):
                yield entry.name[:-3], root, [entry.name]


def iter_files(
    split: str, select: str, roots: Iterable[Root], seed: int = 0, skipped: collections.Counter[str] | None = None
) -> Iterator[PackageFile]:
    """The ``select`` ("python" or "doc") files of ``split``'s packages, at most the package cap
    (MAX_FILES_PER_PACKAGE / MAX_DOC_FILES_PER_PACKAGE over all roots), the rest counted."""
    check_split(split)
    skipped = collections.Counter() if skipped is None else skipped
    keep, cap = (_is_python, MAX_FILES_PER_PACKAGE) if select == "python" else (_is_doc, MAX_DOC_FILES_PER_PACKAGE)
    taken: collections.Counter[str] = collections.Counter()
    for top, root, relatives in iter_packages(roots):
        if module_split(top, seed) != split:
            continue
        for relative in filter(keep, relatives):
            if taken[top] >= cap:
                skipped["package_file_cap"] += 1
                continue
            taken[top] += 1
            yield PackageFile(top, relative, root.path / relative)


def _read(path: pathlib.Path, skipped: collections.Counter[str]) -> bytes | None:
    try:
        with open(path, "rb") as f:
            return f.read(MAX_SOURCE_BYTES + 1)
    except OSError:
        skipped["unreadable_file"] += 1
        return None


def iter_sources(
    split: str, roots: Iterable[Root], seed: int = 0, skipped: collections.Counter[str] | None = None
) -> Iterator[SourceFile]:
    """``(module, bytes)`` of the split's capped ``.py`` files, one at a time (oversized files are
    read to MAX_SOURCE_BYTES + 1 bytes, for the miner to reject)."""
    skipped = collections.Counter() if skipped is None else skipped
    for file in iter_files(split, "python", roots, seed, skipped):
        data = _read(file.path, skipped)
        if data is not None:
            yield file.module, data


def iter_doc_files(
    split: str, roots: Iterable[Root], seed: int = 0, skipped: collections.Counter[str] | None = None
) -> Iterator[tuple[str, str]]:
    """``(module "<top>.file:<path in package>", text)`` of the split's capped doc files."""
    skipped = collections.Counter() if skipped is None else skipped
    for file in iter_files(split, "doc", roots, seed, skipped):
        data = _read(file.path, skipped)
        if data is None:
            continue
        if len(data) > MAX_SOURCE_BYTES:
            skipped["file_too_large"] += 1
            continue
        try:
            text = data.decode("utf-8")
        except UnicodeDecodeError:
            skipped["invalid_utf8"] += 1  # repaired and kept, as text sources do
            text = data.decode("utf-8", errors="replace")
        yield f"{file.top}.file:{file.relative.split('/', 1)[-1]}", text


def _normalized(name: str) -> str:
    return re.sub(r"[-_.]+", "_", name).lower()


def distribution_top(dist: importlib.metadata.Distribution) -> str:
    """The top-level package a distribution's description goes with (see the module docstring)."""
    name = dist.metadata.get("Name") or ""
    tops = {line.strip() for line in (dist.read_text("top_level.txt") or "").splitlines()}
    if not tops:
        for file in dist.files or ():  # RECORD: the first component of every installed path
            parts = file.parts
            if len(parts) > 1:
                tops.add(parts[0])
            elif parts and parts[0].endswith(".py"):
                tops.add(parts[0][: -len(".py")])
    tops = {t for t in tops if t.isidentifier()}
    if _normalized(name) in tops or not tops:
        return _normalized(name) or "unknown"
    return min(tops)


def distribution_description(dist: importlib.metadata.Distribution) -> str:
    """The long description: the METADATA body, else its ``Description`` field."""
    metadata = dist.metadata
    body = metadata.get_payload() if hasattr(metadata, "get_payload") else None
    if isinstance(body, str) and body.strip():
        return body
    description = metadata.get("Description") or ""
    return re.sub(r"\n {7}\|", "\n", re.sub(r"\n {8}", "\n", description))


def iter_descriptions(
    split: str, roots: Iterable[Root], seed: int = 0, skipped: collections.Counter[str] | None = None
) -> Iterator[tuple[str, str]]:
    """``(module "<top>.metadata:<distribution>", description)`` of the split's distributions in
    the site roots, sorted by name and version."""
    check_split(split)
    skipped = collections.Counter() if skipped is None else skipped
    paths = [os.fspath(root.path) for root in roots if not root.stdlib]
    dists = sorted(importlib.metadata.distributions(path=paths),
                   key=lambda d: (_normalized(d.metadata.get("Name") or ""), d.metadata.get("Version") or ""))
    for dist in dists:
        top = distribution_top(dist)
        if module_split(top, seed) != split:
            continue
        text = distribution_description(dist)
        if len(text) > MAX_SOURCE_BYTES:
            skipped["file_too_large"] += 1
            continue
        yield f"{top}.metadata:{dist.metadata.get('Name')}", text


def _pydoc_topics(split: str, roots: Iterable[Root], seed: int) -> Iterator[tuple[str, str]]:
    real = os.path.realpath(stdlib_corpus.stdlib_root())
    if not any(root.stdlib and os.path.realpath(root.path) == real for root in roots):
        return
    for topic, document in sorted(stdlib_text_pairs._pydoc_topics().items()):
        name = f"{stdlib_text_pairs.PYDOC_TOPIC_PREFIX}{topic}"
        if module_split(name, seed) == split:
            yield name, document


def iter_code_pairs(
    split: str, roots: Iterable[Root] | None = None, seed: int = 0, skipped: collections.Counter[str] | None = None
) -> Iterator[tuple[str, Pair]]:
    """The split's checked code pairs (before cross-split dedup), in path order."""
    roots = environment_roots() if roots is None else tuple(roots)
    skipped = collections.Counter() if skipped is None else skipped
    return stdlib_corpus.code_pairs_from_sources(iter_sources(split, roots, seed, skipped), skipped)


def iter_text_pairs(
    split: str, roots: Iterable[Root] | None = None, seed: int = 0, skipped: collections.Counter[str] | None = None
) -> Iterator[tuple[str, Pair]]:
    """The split's checked span pairs (before cross-split dedup): docstrings, then descriptions,
    then doc files, then pydoc topics."""
    roots = environment_roots() if roots is None else tuple(roots)
    skipped = collections.Counter() if skipped is None else skipped

    def documents() -> Iterator[tuple[str, str]]:
        yield from iter_descriptions(split, roots, seed, skipped)
        yield from iter_doc_files(split, roots, seed, skipped)
        yield from _pydoc_topics(split, roots, seed)

    return stdlib_text_pairs.text_pairs_from_sources(iter_sources(split, roots, seed, skipped), documents(), skipped)


_MINERS = {"code": iter_code_pairs, "text": iter_text_pairs}


class HeldOutPairs:
    """The validation and test pairs of one build, each split mined once: the train split's
    dedup index (:func:`held_out_index`) and the held-out splits' own generation read the same
    lists (with the drops their mining counted). Held-out splits are about a fifth of the pairs."""

    def __init__(self, kind: Kind, roots: Iterable[Root], seed: int = 0) -> None:
        self.kind, self.roots, self.seed = kind, tuple(roots), seed
        self._mined: dict[str, tuple[list[tuple[str, Pair]], collections.Counter[str]]] = {}

    def mined(self, split: str) -> tuple[list[tuple[str, Pair]], collections.Counter[str]]:
        """(the split's pairs, what its mining left out), mined on first use."""
        if split not in SPLITS[1:]:
            raise ValueError(f"{split!r} is not a held-out split; use one of {SPLITS[1:]}.")
        if split not in self._mined:
            skipped: collections.Counter[str] = collections.Counter()
            self._mined[split] = list(_MINERS[self.kind](split, self.roots, self.seed, skipped)), skipped
        return self._mined[split]

    def take(self, split: str) -> tuple[list[tuple[str, Pair]], collections.Counter[str]]:
        """:meth:`mined`, then forgotten: a split's own generation reads it last."""
        out = self.mined(split)
        del self._mined[split]
        return out


def held_out_index(
    kind: Kind, roots: Iterable[Root] | None = None, seed: int = 0, held_out: HeldOutPairs | None = None
) -> site_dedup.HeldOutIndex:
    """Every side of every validation and test pair of ``kind`` (their drops are counted by their
    own splits' builds); ``held_out``: the build's mined held-out pairs, else mined here."""
    roots = environment_roots() if roots is None else tuple(roots)
    held_out = HeldOutPairs(kind, roots, seed) if held_out is None else held_out
    index = site_dedup.HeldOutIndex()
    for split in SPLITS[1:]:
        for _, pair in held_out.mined(split)[0]:
            index.add(pair["x"])
            index.add(pair["y"])
    return index


def iter_pairs(
    kind: Kind, split: str, roots: Iterable[Root] | None = None, seed: int = 0,
    skipped: collections.Counter[str] | None = None, held_out: HeldOutPairs | None = None,
) -> Iterator[tuple[str, Pair]]:
    """The pairs a ``site_<kind>`` build writes for ``split``: for train, without those that
    repeat a held-out pair's text (site_dedup.py). ``held_out`` (of the same kind, roots and
    seed) shares the held-out splits' mining between the calls of one build."""
    check_split(split)
    roots = environment_roots() if roots is None else tuple(roots)
    skipped = collections.Counter() if skipped is None else skipped
    if held_out is not None and (held_out.kind, held_out.roots, held_out.seed) != (kind, roots, seed):
        raise ValueError(f"held_out mines {held_out.kind} pairs of {len(held_out.roots)} roots at seed {held_out.seed}; "
                         f"this call asks for {kind} pairs of {len(roots)} roots at seed {seed}: pass a HeldOutPairs "
                         "made with the same kind, roots and seed, or none.")
    if split != "train":
        if held_out is None:
            yield from _MINERS[kind](split, roots, seed, skipped)
            return
        pairs, counts = held_out.take(split)
        skipped.update(counts)
        yield from pairs
        return
    index = held_out_index(kind, roots, seed, held_out)
    yield from site_dedup.drop_held_out_matches(_MINERS[kind](split, roots, seed, skipped), index,
                                                CounterSink(skipped))


def source_kind(module: str, kind: Kind) -> str:
    """Which of SOURCE_KINDS a stored pair of a ``site_<kind>`` dataset came from, by its module."""
    if kind == "code":
        return "code"
    if module.startswith(stdlib_text_pairs.PYDOC_TOPIC_PREFIX):
        return "pydoc_topic"
    tail = module.split(".", 1)[-1]
    if tail.startswith("metadata:"):
        return "metadata"
    if tail.startswith("file:"):
        return "doc_file"
    return "docstring"
