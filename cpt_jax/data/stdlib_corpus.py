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

Bad or extreme input never crashes a build or reaches a batch: every file,
document or pair left out (or cut) is counted under one of ``SKIP_RULES``,
whose descriptions state the rule. The miners take ``(module name, file
bytes)`` sources, so tests feed crafted files through the same code as the
real stdlib walk.
"""

from __future__ import annotations

import ast
import collections
import dataclasses
import hashlib
import io
import os
import pathlib
import sysconfig
import tokenize
from collections.abc import Iterable, Iterator
from typing import Literal

Split = Literal["train", "validation", "test"]
SPLITS: tuple[Split, ...] = ("train", "validation", "test")
Pair = dict[str, str]
SourceFile = tuple[str, bytes]  # (dotted module name, the file's bytes)

# Directories that hold tests, third-party code or Python-2 era fixtures.
_SKIP_DIRS = frozenset({"site-packages", "test", "tests", "idlelib", "lib2to3", "__pycache__"})
_MIN_DOC_WORDS = 3
# Neighbouring spans whose word sets overlap more than this are near-identical (stdlib_text_pairs).
MAX_SPAN_JACCARD = 0.8

# Limits far above every real input (largest stdlib file ~0.75 MB, pydoc topic ~63K chars, pair
# side ~11K chars; models see at most 2048 tokens): they only stop pathological inputs.
MAX_SOURCE_BYTES = 2 * 1024 * 1024
MAX_DOCUMENT_CHARS = 200_000
MAX_TEXT_CHARS = 32_768

SKIP_RULES: dict[str, str] = {
    "unreadable_file": "source file cannot be read (OSError): file skipped",
    "file_too_large": f"source file over {MAX_SOURCE_BYTES} bytes: file skipped (never read further)",
    "invalid_encoding": "source bytes invalid in the file's encoding (PEP 263 cookie, else UTF-8), or an "
    "unknown cookie: file skipped",
    "unparsable_source": "source does not parse (SyntaxError, null bytes, nesting too deep): file skipped",
    "empty_text": "docstring or pair side empty or whitespace only: skipped",
    "short_docstring": f"docstring of fewer than {_MIN_DOC_WORDS} words: function skipped",
    "trivial_body": "function body only pass / ... / raise NotImplementedError: function skipped",
    "inline_docstring": "docstring shares a line with code: function skipped",
    "truncated_document": f"document over {MAX_DOCUMENT_CHARS} characters: cut at the last whitespace "
    "before that length, then split into spans (kept, counted)",
    "near_identical_spans": f"neighbouring spans with word-set Jaccard > {MAX_SPAN_JACCARD}: pair dropped",
    "unencodable_text": "text not encodable as UTF-8 (a lone surrogate, e.g. from a \\ud800 escape): pair dropped",
    "text_too_long": f"x or y over {MAX_TEXT_CHARS} characters: pair dropped",
    "duplicate_key": "key already used in the split (two sources with one module name): pair dropped",
    "duplicate_pair": "(x, y) identical to an earlier pair of the same split: pair dropped",
}


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
    try:
        encoding, _ = tokenize.detect_encoding(io.BytesIO(data).readline)  # PEP 263 cookie or BOM
        source = data.decode(encoding)
    except (SyntaxError, UnicodeDecodeError):  # SyntaxError: unknown cookie, bad bytes on lines 1-2
        skipped["invalid_encoding"] += 1
        return None
    source = source.replace("\r\n", "\n").replace("\r", "\n")  # as text-mode reading would
    try:
        tree = ast.parse(source, filename=name)
    # ValueError: null bytes (3.11); MemoryError / RecursionError: nesting too deep for the
    # parser (e.g. 10^5 unary minus signs), which it reports as such rather than a SyntaxError.
    except (SyntaxError, ValueError, MemoryError, RecursionError):
        skipped["unparsable_source"] += 1
        return None
    return StdlibModule(name, source, tree)


def parse_sources(sources: Iterable[SourceFile], skipped: collections.Counter[str]) -> Iterator[StdlibModule]:
    """The modules of the sources that :func:`parse_source` accepts, in order."""
    for name, data in sources:
        module = parse_source(name, data, skipped)
        if module is not None:
            yield module


def _source_lines(source: str) -> list[str]:
    """Lines as ast numbers them: split at "\\n" only. str.splitlines also splits at form
    feeds and other separators, which would misalign every line after one."""
    return [line + "\n" for line in source.split("\n")]


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
            rule = "empty_text"
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


def walk_defs(
    node: ast.AST, prefix: str = ""
) -> Iterator[tuple[str, ast.FunctionDef | ast.AsyncFunctionDef | ast.ClassDef]]:
    """Yields ``(qualname, node)`` for every function/class, depth first in source order."""
    for child in ast.iter_child_nodes(node):
        if isinstance(child, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
            qualname = f"{prefix}{child.name}"
            yield qualname, child
            yield from walk_defs(child, f"{qualname}.")
        else:
            yield from walk_defs(child, prefix)


def _is_trivial(stmt: ast.stmt) -> bool:
    """True for placeholder statements: ``pass``, ``...`` and ``raise NotImplementedError``."""
    if isinstance(stmt, ast.Pass):
        return True
    if isinstance(stmt, ast.Expr) and isinstance(stmt.value, ast.Constant):
        return True  # `...` or a stray string literal
    if isinstance(stmt, ast.Raise) and stmt.exc is not None:
        exc = stmt.exc.func if isinstance(stmt.exc, ast.Call) else stmt.exc
        return isinstance(exc, ast.Name) and exc.id == "NotImplementedError"
    return False


def _code_without_docstring(
    lines: list[str], node: ast.FunctionDef | ast.AsyncFunctionDef
) -> str | None:
    """Function source minus its docstring statement, dedented to the ``def`` column.

    Returns None when the docstring shares a line with other code (e.g.
    ``def f(): "doc"; return 1``): removing whole lines would then cut code.
    A trailing comment on the docstring's last line is dropped with it.
    """
    doc = node.body[0]
    assert doc.end_lineno is not None and doc.end_col_offset is not None
    assert node.end_lineno is not None
    before = lines[doc.lineno - 1][: doc.col_offset].strip()
    after = lines[doc.end_lineno - 1][doc.end_col_offset :].strip()
    if before or not (after == "" or after.startswith("#")):
        return None
    kept = lines[node.lineno - 1 : doc.lineno - 1] + lines[doc.end_lineno : node.end_lineno]
    indent = node.col_offset
    # Strip the def's own indentation only; lines inside multi-line strings that
    # are indented less than the def are left untouched.
    dedented = [line[indent:] if not line[:indent].strip() else line for line in kept]
    return "".join(dedented).rstrip() + "\n"


def code_pairs(
    module: StdlibModule, skipped: collections.Counter[str] | None = None
) -> Iterator[tuple[str, Pair]]:
    """Yields ``(key, {"x": docstring, "y": code, "module": name})`` for one module.

    ``x`` is the ``inspect.cleandoc``-ed docstring, ``y`` the function's source
    (signature and body, dedented) with the docstring statement removed.
    Functions whose remaining body is a placeholder or whose docstring has fewer
    than three words are skipped and counted in ``skipped``.
    """
    skipped = collections.Counter() if skipped is None else skipped
    lines = _source_lines(module.source)
    for qualname, node in walk_defs(module.tree):
        if isinstance(node, ast.ClassDef):
            continue
        docstring = ast.get_docstring(node, clean=True)
        if docstring is None:
            continue
        if not docstring.strip():
            skipped["empty_text"] += 1
            continue
        if len(docstring.split()) < _MIN_DOC_WORDS:
            skipped["short_docstring"] += 1
            continue
        if all(_is_trivial(stmt) for stmt in node.body[1:]):
            skipped["trivial_body"] += 1
            continue
        code = _code_without_docstring(lines, node)
        if code is None:
            skipped["inline_docstring"] += 1
            continue
        key = f"{module.name}:{qualname}:{node.lineno}"
        yield key, {"x": docstring, "y": code, "module": module.name}


def code_pairs_from_sources(
    sources: Iterable[SourceFile], skipped: collections.Counter[str] | None = None
) -> Iterator[tuple[str, Pair]]:
    """The :func:`checked_pairs` among the :func:`code_pairs` of the sources that parse."""
    skipped = collections.Counter() if skipped is None else skipped
    mined = (item for module in parse_sources(sources, skipped) for item in code_pairs(module, skipped))
    return checked_pairs(mined, skipped)


def iter_code_pairs(
    split: str, seed: int = 0, skipped: collections.Counter[str] | None = None
) -> Iterator[tuple[str, Pair]]:
    """Yields the code pairs of every stdlib module in ``split``, in path order."""
    check_split(split)
    skipped = collections.Counter() if skipped is None else skipped
    return code_pairs_from_sources(iter_sources(split, seed, skipped), skipped)
