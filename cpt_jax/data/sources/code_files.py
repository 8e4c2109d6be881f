"""cpt-code pairs (documentation, function) from source trees, parsed with tree-sitter.

One shard per file: `shards()` is the sorted list of matched files whose extension belongs
to a selected language (code_languages.EXTENSIONS). For every function or method, in
source order (nested ones included), the pair is

  x  its documentation (code_languages.py says where each language keeps it), cleaned;
  y  its source: the whole definition as written (Python: with decorators; JavaScript: the
     `const f = ...`, `a.b = function ...` or `export ...` statement that names it), minus
     a Python docstring's lines, dedented to the definition's own column.

JavaScript function expressions that are not bound by a declaration or assignment (e.g.
callbacks) are not functions here and count nothing. Drop rules:
  file_too_large        the file has more than max_file_bytes bytes (generated or minified code).
  invalid_utf8          the file is not UTF-8; skipped whole.
  unparsable_source     tree-sitter ERROR nodes cover more than max_error_fraction of the file.
  function_parse_error  a function containing a parse error (the rest of the file is used).
  no_docstring          a function without documentation.
  short_docstring       documentation of fewer than min_doc_words words.
  inline_docstring      a Python docstring sharing a line with other code (not removable).
  empty_body            nothing left but a placeholder: no body (abstract/interface), or only
                        comments; Python: only pass, `...`, strings or raise NotImplementedError.
  duplicate_pair        an (x, y) pair already seen in the same file. Dedup is per shard only:
                        copies in other files are kept.
"""

from __future__ import annotations

import bisect
import dataclasses
import functools
import hashlib
import os
from collections.abc import Iterator

import tree_sitter

from cpt_jax.data.sources import code_languages, files
from cpt_jax.data.sources.base import Record, RuleCounter, ShardedSource, as_str_tuple
from cpt_jax.data.sources.code_languages import LANGUAGES, LanguageSpec
from cpt_jax.typecheck import check_field_types

# Function expressions count as functions only inside these (the statement that names them).
_JS_BINDINGS = {"variable_declarator", "assignment_expression"}
_BLOCKS = {"block", "statement_block", "constructor_body", "compound_statement", "body_statement"}


@dataclasses.dataclass(frozen=True, kw_only=True)
class CodeFilesSource:
    """(doc, function) pairs from files matched by `paths` (globs; `**` recurses)."""

    paths: tuple[str, ...]
    languages: tuple[str, ...] = tuple(LANGUAGES)
    min_doc_words: int = 3
    max_error_fraction: float = 0.05  # of a file's bytes inside tree-sitter ERROR nodes
    max_file_bytes: int = 1_000_000
    name: str = "code_files"

    def __post_init__(self) -> None:
        check_field_types(self)
        object.__setattr__(self, "paths", as_str_tuple(self, "paths", self.paths))
        object.__setattr__(self, "languages", as_str_tuple(self, "languages", self.languages))
        if not self.paths:
            raise ValueError("CodeFilesSource.paths is empty; give at least one glob.")
        unknown = [lang for lang in self.languages if lang not in LANGUAGES]
        if unknown or not self.languages:
            raise ValueError(
                f"CodeFilesSource.languages={self.languages!r}: unknown {unknown}; choose from {tuple(LANGUAGES)}."
            )
        if self.min_doc_words < 1:
            raise ValueError(f"CodeFilesSource.min_doc_words={self.min_doc_words} must be >= 1.")
        if not 0.0 <= self.max_error_fraction <= 1.0:
            raise ValueError(f"CodeFilesSource.max_error_fraction={self.max_error_fraction} must be in [0, 1].")
        if self.max_file_bytes < 1:
            raise ValueError(f"CodeFilesSource.max_file_bytes={self.max_file_bytes} must be >= 1.")

    def build(self) -> ShardedSource:
        """The source over the matched files of the selected languages."""
        matched = files.expand_globs(self.paths, "CodeFilesSource.paths")
        shard_ids = [p for p in matched if code_languages.EXTENSIONS.get(_extension(p)) in self.languages]
        if not shard_ids:
            extensions = sorted(e for lang in self.languages for e in LANGUAGES[lang].extensions)
            raise ValueError(
                f"CodeFilesSource: {len(matched)} files match {list(self.paths)}, none with an extension "
                f"of {list(self.languages)} ({', '.join(extensions)}); fix the globs or the languages."
            )
        return ShardedSource(self.name, shard_ids, functools.partial(_read_file, self))


def _extension(path: str) -> str:
    return os.path.splitext(path)[1].lower()


def _read_file(config: CodeFilesSource, path: str, stats: RuleCounter) -> Iterator[Record]:
    if os.path.getsize(path) > config.max_file_bytes:
        stats.count("file_too_large")
        return
    with open(path, "rb") as f:
        source = f.read().removeprefix(b"\xef\xbb\xbf")  # a BOM would shift every byte offset
    spec = LANGUAGES[code_languages.EXTENSIONS[_extension(path)]]
    yield from code_pairs(source, spec, config.min_doc_words, config.max_error_fraction, stats)


def code_pairs(
    source: bytes, spec: LanguageSpec, min_doc_words: int, max_error_fraction: float, stats: RuleCounter
) -> Iterator[Record]:
    """The {"x": doc, "y": code} pairs of one file's bytes, in source order (module docstring)."""
    try:
        source.decode("utf-8")
    except UnicodeDecodeError:
        stats.count("invalid_utf8")
        return
    tree = spec.parser().parse(source)
    if source and _error_bytes(tree.root_node) > max_error_fraction * len(source):
        stats.count("unparsable_source")
        return
    captures = tree_sitter.QueryCursor(spec.query).captures(tree.root_node)
    comments = sorted(captures.get("comment", []), key=lambda n: n.start_byte)
    comment_ends = [c.end_byte for c in comments]
    seen: set[bytes] = set()
    for fn in sorted(captures.get("fn", []), key=lambda n: n.start_byte):
        anchor = _anchor(fn, spec)
        if anchor is None:
            continue
        if fn.has_error:
            stats.count("function_parse_error")
            continue
        if spec.doc_style == "docstring":
            pair = _python_pair(source, fn, anchor, stats)
        else:
            pair = _commented_pair(source, fn, anchor, spec, comments, comment_ends, stats)
        if pair is None:
            continue
        if len(pair["x"].split()) < min_doc_words:
            stats.count("short_docstring")
            continue
        key = hashlib.blake2b(f"{pair['x']}\0{pair['y']}".encode(), digest_size=16).digest()
        if key in seen:
            stats.count("duplicate_pair")
            continue
        seen.add(key)
        yield pair


def _error_bytes(root: tree_sitter.Node) -> int:
    """Bytes inside outermost ERROR nodes (descending only into subtrees that have errors)."""
    total, stack = 0, [root]
    while stack:
        node = stack.pop()
        if node.is_error:
            total += node.end_byte - node.start_byte
        else:
            stack.extend(child for child in node.children if child.has_error)
    return total


def _anchor(fn: tree_sitter.Node, spec: LanguageSpec) -> tree_sitter.Node | None:
    """The node whose text is the function's code and whose preceding comments are its doc;
    None for an unnamed JavaScript function expression."""
    node = fn
    if spec.name == "python" and fn.parent is not None and fn.parent.type == "decorated_definition":
        node = fn.parent
    elif spec.name == "javascript" and fn.type in ("function_expression", "generator_function", "arrow_function"):
        binding = fn.parent
        if binding is None or binding.type not in _JS_BINDINGS or binding.parent is None:
            return None
        statement = binding.parent  # lexical/variable declaration, or expression statement
        if binding.type == "variable_declarator" and statement.named_child_count != 1:
            return None  # `var a = 1, f = () => 2`: the doc cannot be told apart
        if binding.type == "assignment_expression" and statement.type != "expression_statement":
            return None
        node = statement
    if spec.name == "javascript" and node.parent is not None and node.parent.type == "export_statement":
        node = node.parent
    return node


def _line_start(source: bytes, offset: int) -> int:
    return source.rfind(b"\n", 0, offset) + 1


def _line_end(source: bytes, offset: int) -> int:
    end = source.find(b"\n", offset)
    return len(source) if end < 0 else end


def _code(source: bytes, anchor: tree_sitter.Node, cut: tuple[int, int] | None = None) -> str:
    """The anchor's text, minus bytes [cut), dedented by the anchor line's indentation."""
    start, end = anchor.start_byte, anchor.end_byte
    text = source[start:end] if cut is None else source[start : cut[0]] + source[cut[1] : end]
    indent = source[_line_start(source, start) : start].decode("utf-8")
    lines = text.decode("utf-8").split("\n")
    if indent and not indent.strip():  # the definition starts its line: strip that indentation
        lines = [lines[0]] + [line.removeprefix(indent) for line in lines[1:]]
    return "\n".join(lines).rstrip() + "\n"


def _python_pair(
    source: bytes, fn: tree_sitter.Node, anchor: tree_sitter.Node, stats: RuleCounter
) -> Record | None:
    body = fn.child_by_field_name("body")
    statements = [] if body is None else [s for s in body.named_children if s.type != "comment"]
    first = statements[0] if statements else None
    doc = None
    if first is not None and first.type == "expression_statement" and first.named_child_count == 1:
        literal = first.named_children[0]
        if literal.type == "string":
            doc = code_languages.python_docstring(literal.text.decode("utf-8"))
    if doc is None:
        stats.count("no_docstring")
        return None
    if all(_is_python_placeholder(s) for s in statements[1:]):
        stats.count("empty_body")
        return None
    line_start, line_end = _line_start(source, first.start_byte), _line_end(source, first.end_byte)
    after = source[first.end_byte : line_end].strip()
    if source[line_start : first.start_byte].strip() or not (after == b"" or after.startswith(b"#")):
        stats.count("inline_docstring")
        return None
    return {"x": doc, "y": _code(source, anchor, (line_start, min(line_end + 1, len(source))))}


def _is_python_placeholder(statement: tree_sitter.Node) -> bool:
    if statement.type == "pass_statement":
        return True
    children = statement.named_children
    if statement.type == "expression_statement":
        return len(children) == 1 and children[0].type in ("ellipsis", "string")
    if statement.type == "raise_statement" and children:
        exc = children[0]
        if exc.type == "call":
            exc = exc.child_by_field_name("function")
        return exc is not None and exc.type == "identifier" and exc.text == b"NotImplementedError"
    return False


def _commented_pair(
    source: bytes,
    fn: tree_sitter.Node,
    anchor: tree_sitter.Node,
    spec: LanguageSpec,
    comments: list[tree_sitter.Node],
    comment_ends: list[int],
    stats: RuleCounter,
) -> Record | None:
    texts: list[str] = []
    limit = anchor.start_byte  # the doc must end right above this offset
    i = bisect.bisect_right(comment_ends, limit) - 1
    while i >= 0:
        comment = comments[i]
        gap = source[comment.end_byte : limit]
        text = comment.text.decode("utf-8")
        own_line = not source[_line_start(source, comment.start_byte) : comment.start_byte].strip()
        if gap.strip() or gap.count(b"\n") > 1 or not own_line or not code_languages.is_doc_comment(spec, text):
            break
        texts.insert(0, text)
        if spec.doc_style == "block":
            break  # one /** ... */ block
        limit, i = comment.start_byte, i - 1
    if not texts:
        stats.count("no_docstring")
        return None
    body = fn.child_by_field_name("body")
    if body is None or (body.type in _BLOCKS and not any(c.type not in spec.comments for c in body.named_children)):
        stats.count("empty_body")
        return None
    return {"x": code_languages.clean_comments(spec, texts), "y": _code(source, anchor)}
