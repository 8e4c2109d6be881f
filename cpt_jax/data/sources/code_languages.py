"""The six code languages: tree-sitter grammars, function node types and doc comment cleaning.

Where each language keeps a function's documentation (x of a cpt-code pair):
  python      the docstring: the function body's first statement when it is a plain string
              literal (`inspect.cleandoc`-ed).
  go, ruby    the run of line comments (`//`, `#`) directly above the function, each on its
              own line, with no blank line inside the run or before the function. Go directive
              lines (`//go:generate ...`, `//nolint:...`: no space after `//`, a colon in the
              first word) are not documentation and are removed.
  java, javascript, php
              the `/** ... */` block (Javadoc, JSDoc, PHPDoc) directly above the function (no
              blank line between); `/* ... */` and `//` comments are not documentation.
Comment markers (`//`, `#`, `/**`, `*/`, leading ` * `) are stripped and the text dedented.
"""

from __future__ import annotations

import ast
import dataclasses
import functools
import importlib
import inspect

import tree_sitter


@dataclasses.dataclass(frozen=True)
class LanguageSpec:
    """How to parse one language and where its functions and their docs are."""

    name: str
    extensions: tuple[str, ...]
    module: str  # the tree-sitter grammar package
    attribute: str  # its function returning the grammar
    functions: tuple[str, ...]  # node types of functions and methods
    comments: tuple[str, ...]  # node types of comments
    doc_style: str  # "docstring", "line" (marker per line) or "block" (/** ... */)
    line_marker: str = ""  # "line" style: the comment marker

    @functools.cached_property
    def language(self) -> tree_sitter.Language:
        return tree_sitter.Language(getattr(importlib.import_module(self.module), self.attribute)())

    @functools.cached_property
    def query(self) -> tree_sitter.Query:
        """Captures `fn` (functions) and `comment` (comments) of a tree."""
        functions = " ".join(f"({t})" for t in self.functions)
        comments = " ".join(f"({t})" for t in self.comments)
        return tree_sitter.Query(self.language, f"[{functions}] @fn [{comments}] @comment")

    def parser(self) -> tree_sitter.Parser:
        """A new parser (parsers hold state: one per shard read, never shared by threads)."""
        return tree_sitter.Parser(self.language)


LANGUAGES: dict[str, LanguageSpec] = {
    spec.name: spec
    for spec in (
        LanguageSpec(
            "python", (".py",), "tree_sitter_python", "language",
            ("function_definition",), ("comment",), "docstring",
        ),
        LanguageSpec(
            "go", (".go",), "tree_sitter_go", "language",
            ("function_declaration", "method_declaration"), ("comment",), "line", "//",
        ),
        LanguageSpec(
            "java", (".java",), "tree_sitter_java", "language",
            ("method_declaration", "constructor_declaration"), ("line_comment", "block_comment"), "block",
        ),
        LanguageSpec(
            "javascript", (".js", ".mjs", ".cjs", ".jsx"), "tree_sitter_javascript", "language",
            (
                "function_declaration", "generator_function_declaration", "method_definition",
                "function_expression", "generator_function", "arrow_function",
            ),
            ("comment",), "block",
        ),
        LanguageSpec(
            "ruby", (".rb",), "tree_sitter_ruby", "language",
            ("method", "singleton_method"), ("comment",), "line", "#",
        ),
        LanguageSpec(
            "php", (".php",), "tree_sitter_php", "language_php",
            ("function_definition", "method_declaration"), ("comment",), "block",
        ),
    )
}  # fmt: skip

EXTENSIONS: dict[str, str] = {ext: spec.name for spec in LANGUAGES.values() for ext in spec.extensions}


def python_docstring(literal: str) -> str | None:
    """The cleaned value of a Python string literal's source, or None if it is not a plain
    str literal (f-string, bytes)."""
    try:
        value = ast.literal_eval(literal)
    except (ValueError, SyntaxError):
        return None
    return inspect.cleandoc(value) if isinstance(value, str) else None


def is_doc_comment(spec: LanguageSpec, text: str) -> bool:
    """Whether one comment node's text can be (part of) documentation in `spec`'s style."""
    if spec.doc_style == "block":
        return text.startswith("/**") and text != "/**/"
    return text.startswith(spec.line_marker)


def clean_comments(spec: LanguageSpec, texts: list[str]) -> str:
    """Documentation text from the doc comment(s) above a function, markers stripped."""
    if spec.doc_style == "block":
        lines = texts[-1].removeprefix("/**").removesuffix("*/").splitlines()
        # Javadoc continuation lines start with "*"; drop it and the one space after it.
        body = [line.lstrip() for line in lines]
        lines = [b[1:].removeprefix(" ") if b.startswith("*") else line for b, line in zip(body, lines)]
    else:
        lines = [t.removeprefix(spec.line_marker).lstrip(spec.line_marker[0]) for t in texts]
        if spec.name == "go":
            lines = [line for line in lines if not _is_go_directive(line)]
    return inspect.cleandoc("\n".join(line.rstrip() for line in lines))


def _is_go_directive(line: str) -> bool:
    """`//go:generate x`, `//nolint:errcheck`: no space after the marker, ':' in the first word."""
    return bool(line) and not line[0].isspace() and ":" in line.split(maxsplit=1)[0]
