"""Function candidates of the tree-sitter languages (every one of code_languages.LANGUAGES but
Python, which code_pairs.py parses with `ast`): for every function or method, in source order
(nested ones included), its documentation (code_languages.py says where each language keeps it,
cleaned) and its source: the whole definition as written (JavaScript: the `const f = ...`,
`a.b = function ...` or `export ...` statement that names it), dedented to the definition's own
column. JavaScript function expressions not bound by a declaration or assignment (callbacks) are
not functions here. code_pairs.py turns candidates into pairs under its drop rules.
"""

from __future__ import annotations

import bisect
from collections.abc import Iterator

import tree_sitter

from cpt_jax.data.sources import code_languages
from cpt_jax.data.sources.base import RuleCounter
from cpt_jax.data.sources.code_languages import LanguageSpec

# Function expressions count as functions only inside these (the statement that names them).
_JS_BINDINGS = {"variable_declarator", "assignment_expression"}
_BLOCKS = {"block", "statement_block", "constructor_body", "compound_statement", "body_statement"}


def candidates(source: bytes, spec: LanguageSpec, max_error_fraction: float, stats: RuleCounter) -> Iterator[tuple]:
    """(name, line, doc | None, code, placeholder body, parse error) of every function of one
    UTF-8 file, in source order; counts unparsable_source when ERROR nodes cover more than
    max_error_fraction of the file (then nothing is yielded)."""
    tree = spec.parser().parse(source)
    if source and _error_bytes(tree.root_node) > max_error_fraction * len(source):
        stats.count("unparsable_source")
        return
    captures = tree_sitter.QueryCursor(spec.query).captures(tree.root_node)
    comments = sorted(captures.get("comment", []), key=lambda n: n.start_byte)
    comment_ends = [c.end_byte for c in comments]
    for fn in sorted(captures.get("fn", []), key=lambda n: n.start_byte):
        anchor = _anchor(fn, spec)
        if anchor is None:
            continue
        line = anchor.start_point[0] + 1
        if fn.has_error:
            yield "", line, None, None, False, True
            continue
        doc = _doc(source, anchor, spec, comments, comment_ends)
        body = fn.child_by_field_name("body")
        empty = body is None or (
            body.type in _BLOCKS and not any(c.type not in spec.comments for c in body.named_children)
        )
        yield "", line, doc, _code(source, anchor), empty, False


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
    if spec.name == "javascript" and fn.type in ("function_expression", "generator_function", "arrow_function"):
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


def _code(source: bytes, anchor: tree_sitter.Node) -> str:
    """The anchor's text, dedented by the anchor line's indentation."""
    start, end = anchor.start_byte, anchor.end_byte
    text = source[start:end]
    indent = source[_line_start(source, start) : start].decode("utf-8")
    lines = text.decode("utf-8").split("\n")
    if indent and not indent.strip():  # the definition starts its line: strip that indentation
        lines = [lines[0]] + [line.removeprefix(indent) for line in lines[1:]]
    return "\n".join(lines).rstrip() + "\n"


def _doc(
    source: bytes, anchor: tree_sitter.Node, spec: LanguageSpec, comments: list[tree_sitter.Node], comment_ends: list[int]
) -> str | None:
    """The doc comments right above the anchor, cleaned; None without any."""
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
    return code_languages.clean_comments(spec, texts) if texts else None
