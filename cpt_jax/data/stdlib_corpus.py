"""Paired examples mined from the running interpreter's standard library: the sources, their
splits, the skip rules, and the code pairs.

Two pair kinds, both plain Python with no downloads:

* code pairs (here): (docstring, function source without its docstring), the
  cpt-code text->code setting;
* text pairs (stdlib_text_pairs.py): neighbouring spans of one document (long
  module/class docstrings and the ``pydoc_data`` help topics), the cpt-text setting.

Splits are assigned per top-level package (or per pydoc topic) by a stable
hash, so one package never contributes to two splits and held-out retrieval
never sees code from a package seen in training. Every pair carries its
``module``, and ``module_split(pair["module"])`` is always the pair's split.

Code pairs come from the one code miner (sources/code_pairs.py), text spans from the one span
pairer (sources/spans.py). Bad or extreme input never crashes a build or reaches a batch: every
file, document or pair left out (or cut) is counted under one of ``BUILD_RULES`` (described in
sources/base.DROP_RULES). The miners take ``(module name, file
bytes)`` sources, so tests feed crafted files through the same code as the
real stdlib walk.
"""

from __future__ import annotations

import ast
import collections
import dataclasses
import hashlib
import os
import pathlib
import sysconfig
from collections.abc import Iterable, Iterator
from typing import Literal

from cpt_jax.data import parallel
from cpt_jax.data.sources import code_pairs
from cpt_jax.data.sources.base import CounterSink

Split = Literal["train", "validation", "test"]
SPLITS: tuple[Split, ...] = ("train", "validation", "test")
Pair = dict[str, str]
SourceFile = tuple[str, bytes]  # (dotted module name, the file's bytes)

# Directories that hold tests, third-party code or Python-2 era fixtures.
_SKIP_DIRS = frozenset({"site-packages", "test", "tests", "idlelib", "lib2to3", "__pycache__"})
MIN_DOC_WORDS = 3
# Neighbouring spans whose word sets overlap more than this are near-identical (stdlib_text_pairs).
MAX_SPAN_JACCARD = 0.8

# Limits far above every real input (largest stdlib file ~0.75 MB, pydoc topic ~63K chars, pair
# side ~11K chars; models see at most 2048 tokens): they only stop pathological inputs.
MAX_SOURCE_BYTES = 2 * 1024 * 1024
MAX_DOCUMENT_CHARS = 200_000
MAX_TEXT_CHARS = 32_768

# The drop rules the stdlib builders apply (names and meanings: sources/base.DROP_RULES); every
# one is in a prepared dataset's drop counts, 0 when it never applied. The limits are those above,
# MIN_DOC_WORDS, and the span recipe of stdlib_text_pairs.SPANS.
BUILD_RULES: tuple[str, ...] = (
    "unreadable_file", "file_too_large", "invalid_utf8", "unparsable_source", "no_docstring", "empty",
    "short_docstring", "empty_body", "inline_docstring", "too_long_document_truncated", "near_duplicate",
    "unencodable_text", "text_too_long", "duplicate_key", "duplicate_pair",
)


def module_split(module: str, seed: int = 0) -> Split:
    """Assigns ``module`` to a split (~80/10/10) by hashing its top-level package.

    Uses sha256 rather than ``hash`` so the assignment is stable across
    processes and interpreter runs (``PYTHONHASHSEED``).
    """
    top = module.split(".", 1)[0]
    digest = hashlib.sha256(f"{seed}:{top}".encode()).digest()
    bucket = int.from_bytes(digest[:8], "big") % 10
    return "train" if bucket < 8 else ("validation" if bucket == 8 else "test")


def check_split(split: str) -> None:
    if split not in SPLITS:
        raise ValueError(f"Unknown split {split!r}; expected one of {SPLITS}.")


@dataclasses.dataclass(frozen=True)
class StdlibModule:
    """One parsed standard-library source file."""

    name: str  # dotted module name, e.g. "json.decoder"
    source: str
    tree: ast.Module


def stdlib_root() -> pathlib.Path:
    """Directory of the running interpreter's pure-Python standard library."""
    return pathlib.Path(sysconfig.get_paths()["stdlib"])


def _module_name(relative: pathlib.Path) -> str:
    parts = list(relative.with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def iter_module_files() -> Iterator[tuple[str, pathlib.Path]]:
    """Yields ``(dotted module name, path)`` for stdlib ``.py`` files, sorted."""
    root = stdlib_root()
    relatives = []
    for directory, subdirs, files in os.walk(root):
        subdirs[:] = [d for d in subdirs if d not in _SKIP_DIRS]  # prune, don't walk them
        base = pathlib.Path(directory).relative_to(root)
        relatives.extend(base / f for f in files if f.endswith(".py"))
    for relative in sorted(relatives):
        if all(part.isidentifier() for part in relative.with_suffix("").parts):
            # Non-identifier paths (e.g. config-3.11-x86_64-linux-gnu) are not importable.
            yield _module_name(relative), root / relative


def iter_sources(
    split: str, seed: int = 0, skipped: collections.Counter[str] | None = None
) -> Iterator[SourceFile]:
    """Yields ``(module name, bytes)`` of the stdlib files of ``split``, in path order.

    At most ``MAX_SOURCE_BYTES + 1`` bytes are read, enough for :func:`parse_source` to
    reject an oversized file without holding it; unreadable files are counted.
    """
    check_split(split)
    skipped = collections.Counter() if skipped is None else skipped
    for name, path in iter_module_files():
        if module_split(name, seed) != split:
            continue
        try:
            with open(path, "rb") as f:
                data = f.read(MAX_SOURCE_BYTES + 1)
        except OSError:
            skipped["unreadable_file"] += 1
            continue
        yield name, data


def parse_source(name: str, data: bytes, skipped: collections.Counter[str]) -> StdlibModule | None:
    """The parsed module, or None (counted) for an oversized, undecodable or unparsable file."""
    if len(data) > MAX_SOURCE_BYTES:
        skipped["file_too_large"] += 1
        return None
    parsed = code_pairs.parse_python(data, CounterSink(skipped))
    return None if parsed is None else StdlibModule(name, parsed[1], parsed[0])


def _encodable(*texts: str) -> bool:
    try:
        for text in texts:
            text.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


def checked_pairs(
    pairs: Iterable[tuple[str, Pair]], skipped: collections.Counter[str] | None = None
) -> Iterator[tuple[str, Pair]]:
    """The pairs of one split that are safe to write, each other one counted under its rule.

    Applied to every pair a builder writes: an empty side would train on delimiters alone,
    a lone surrogate or a repeated key fails the TFDS build, and a duplicate pair is both a
    repeated example and a false negative among its own batch's columns.
    """
    skipped = collections.Counter() if skipped is None else skipped
    keys: set[str] = set()
    contents: set[bytes] = set()
    for key, pair in pairs:
        x, y = pair["x"], pair["y"]
        if not x.strip() or not y.strip():
            rule = "empty"
        elif not _encodable(key, x, y, pair["module"]):
            rule = "unencodable_text"
        elif max(len(x), len(y)) > MAX_TEXT_CHARS:
            rule = "text_too_long"
        elif key in keys:
            rule = "duplicate_key"
        else:
            digest = hashlib.sha256(f"{len(x)}:{x}{y}".encode()).digest()
            if digest in contents:
                rule = "duplicate_pair"
            else:
                keys.add(key)
                contents.add(digest)
                yield key, pair
                continue
        skipped[rule] += 1


def code_pairs_from_sources(
    sources: Iterable[SourceFile], skipped: collections.Counter[str] | None = None
) -> Iterator[tuple[str, Pair]]:
    """The :func:`checked_pairs` among the pairs the one code miner (sources/code_pairs.py) finds
    in the sources. Keys are ``"<module>:<qualname>:<def line>"``; pairs carry their module."""
    skipped = collections.Counter() if skipped is None else skipped

    def mined() -> Iterator[tuple[str, Pair]]:
        for pairs, counts in parallel.ordered_map(_mine_code_source, sources):
            skipped.update(counts)
            yield from pairs

    return checked_pairs(mined(), skipped)


def _mine_code_source(source: SourceFile) -> tuple[list[tuple[str, Pair]], collections.Counter[str]]:
    """One source's keyed code pairs and what it left out (run in a build worker: parallel.py)."""
    name, data = source
    skipped: collections.Counter[str] = collections.Counter()
    pairs = code_pairs.mine(data, "python", CounterSink(skipped), min_doc_words=MIN_DOC_WORDS,
                            max_file_bytes=MAX_SOURCE_BYTES)
    return [(f"{name}:{pair.name}:{pair.line}", {"x": pair.x, "y": pair.y, "module": name}) for pair in pairs], skipped


def iter_code_pairs(
    split: str, seed: int = 0, skipped: collections.Counter[str] | None = None
) -> Iterator[tuple[str, Pair]]:
    """Yields the code pairs of every stdlib module in ``split``, in path order."""
    check_split(split)
    skipped = collections.Counter() if skipped is None else skipped
    return code_pairs_from_sources(iter_sources(split, seed, skipped), skipped)
