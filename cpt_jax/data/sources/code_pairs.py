"""THE (documentation, code) pair miner: one source file's bytes -> its function pairs, for every
consumer (CodeFilesSource and the stdlib_code builder).

Python is parsed with `ast` (its PEP 263 encoding honoured); the other languages with tree-sitter
(code_treesitter.py). Either parser only lists the file's functions, in source order (nested ones
included), each as a candidate: its qualified name (Python; "" otherwise), line, documentation
(Python: the docstring, `inspect.cleandoc`-ed; else the doc comments above it, cleaned) and code
(Python: signature and body without the docstring statement, decorators not included; else the
whole definition), dedented to the definition's column. One function, `_pair`, then applies the
one set of drop rules (names and meanings: sources/base.DROP_RULES), in this order:

  file_too_large        the file has more than max_file_bytes bytes: skipped.
  invalid_utf8          the bytes are not text in the file's encoding: skipped.
  unparsable_source     Python: any parse error; else tree-sitter ERROR nodes over
                        max_error_fraction of the file: skipped.
  function_parse_error  (tree-sitter) a function containing a parse error.
  no_docstring          a function without documentation.
  empty                 documentation that is whitespace only.
  short_docstring       documentation of fewer than min_doc_words words.
  empty_body            nothing left but a placeholder: no body, only comments; Python: only
                        pass, `...`, strings or raise NotImplementedError.
  inline_docstring      a Python docstring sharing a line with code (it cannot be cut out).

Duplicates are the caller's business (a source drops them per file, the builder per split).
"""

from __future__ import annotations

import ast
import io
import tokenize
from collections.abc import Iterator
from typing import NamedTuple

from cpt_jax.data.sources import code_treesitter
from cpt_jax.data.sources.base import RuleCounter
from cpt_jax.data.sources.code_languages import LANGUAGES

FunctionDef = ast.FunctionDef | ast.AsyncFunctionDef


class CodePair(NamedTuple):
    x: str  # documentation
    y: str  # code
    name: str  # qualified name (Python), else ""
    line: int  # first line of the definition (Python: of the `def`), 1-based


def mine(
    data: bytes,
    language: str,
    stats: RuleCounter,
    *,
    min_doc_words: int = 3,
    max_file_bytes: int = 1_000_000,
    max_error_fraction: float = 0.05,
) -> Iterator[CodePair]:
    """The pairs of one file's bytes in source order; what it leaves out goes to `stats`."""
    if len(data) > max_file_bytes:
        stats.count("file_too_large")
        return
    if language == "python":
        tree_and_source = parse_python(data, stats)
        found = () if tree_and_source is None else python_candidates(*tree_and_source)
    else:
        try:
            data.decode("utf-8")
        except UnicodeDecodeError:
            stats.count("invalid_utf8")
            return
        found = code_treesitter.candidates(data, LANGUAGES[language], max_error_fraction, stats)
    for candidate in found:
        pair = _pair(*candidate, min_doc_words, stats)
        if pair is not None:
            yield pair


def _pair(
    name: str, line: int, doc: str | None, code: str | None, placeholder: bool, parse_error: bool,
    min_doc_words: int, stats: RuleCounter,
) -> CodePair | None:
    """The pair of one candidate function, or None with the first rule that drops it counted."""
    if parse_error:
        rule = "function_parse_error"
    elif doc is None:
        rule = "no_docstring"
    elif not doc.strip():
        rule = "empty"
    elif len(doc.split()) < min_doc_words:
        rule = "short_docstring"
    elif placeholder:
        rule = "empty_body"
    elif code is None:
        rule = "inline_docstring"
    else:
        return CodePair(doc, code, name, line)
    stats.count(rule)
    return None


def parse_python(data: bytes, stats: RuleCounter) -> tuple[ast.Module, str] | None:
    """(tree, source) of a Python file, or None (counted) when it cannot be decoded or parsed."""
    try:
        encoding, _ = tokenize.detect_encoding(io.BytesIO(data).readline)  # PEP 263 cookie or BOM
        source = data.decode(encoding)
    except (SyntaxError, UnicodeDecodeError):  # SyntaxError: unknown cookie, bad bytes on lines 1-2
        stats.count("invalid_utf8")
        return None
    source = source.replace("\r\n", "\n").replace("\r", "\n")  # as text-mode reading would
    try:
        tree = ast.parse(source)
    # ValueError: null bytes (3.11); MemoryError / RecursionError: nesting too deep for the
    # parser (e.g. 10^5 unary minus signs), which it reports as such rather than a SyntaxError.
    except (SyntaxError, ValueError, MemoryError, RecursionError):
        stats.count("unparsable_source")
        return None
    return tree, source


def walk_defs(node: ast.AST, prefix: str = "") -> Iterator[tuple[str, FunctionDef | ast.ClassDef]]:
    """Yields ``(qualname, node)`` for every function/class, depth first in source order."""
    for child in ast.iter_child_nodes(node):
        if isinstance(child, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
            qualname = f"{prefix}{child.name}"
            yield qualname, child
            yield from walk_defs(child, f"{qualname}.")
        else:
            yield from walk_defs(child, prefix)


def python_candidates(tree: ast.Module, source: str) -> Iterator[tuple]:
    """Candidates (see `_pair`) of every function of a parsed Python module, in source order."""
    lines = [line + "\n" for line in source.split("\n")]  # as ast numbers them (not splitlines)
    for qualname, node in walk_defs(tree):
        if isinstance(node, ast.ClassDef):
            continue
        doc = ast.get_docstring(node, clean=True)
        placeholder = doc is not None and all(_is_trivial(stmt) for stmt in node.body[1:])
        code = None if doc is None else _code_without_docstring(lines, node)
        yield qualname, node.lineno, doc, code, placeholder, False


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


def _code_without_docstring(lines: list[str], node: FunctionDef) -> str | None:
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
