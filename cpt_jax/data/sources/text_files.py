"""cpt-text span pairs from local text files: plain text, Markdown or JSONL (each maybe .gz).

One shard per file: `shards()` is the sorted list of files the globs match. What a
document is depends on `format`:

  text      documents="file": the whole file is one document, streamed (never read whole;
            only its first max_document_chars characters are used). documents="blank_line":
            every block of lines between blank lines is a document (one-paragraph-per-document
            corpora); an empty file then has no documents and counts nothing.
  markdown  as text, after removing a leading front matter block (YAML `---` or TOML `+++`
            fenced, at most 100 lines, else kept as text) and fenced code blocks (``` or ~~~,
            dropped with their fence lines: code is not prose). Headings, lists and inline
            markup stay as written.
  jsonl     every line is a JSON object and its `field` (a string) is one document. Lines over
            max_line_chars are skipped; a document is cut at max_document_chars.

Span pairs follow `spans.py` (document id: "<shard path>#<document index>", so span lengths
depend on the path as matched). Drop rules: those of `spans.py` and `files.py`, plus
  malformed_record  a JSONL `field` value that is not a string.
invalid_utf8 is counted per line (text, markdown: per piece of at most 64K characters).
"""

from __future__ import annotations

import dataclasses
import functools
import itertools
from collections.abc import Iterator
from typing import ClassVar

from cpt_jax.data.sources import files
from cpt_jax.data.sources.base import Record, RuleCounter, ShardedSource, as_str_tuple
from cpt_jax.data.sources.spans import SpanConfig, SpanPairer, span_pairs
from cpt_jax.typecheck import Bound, at_least

FORMATS = ("text", "markdown", "jsonl")
DOCUMENTS = ("file", "blank_line")
_FRONT_MATTER_MAX_LINES = 100
_FRONT_MATTER_MARKERS = ("---", "+++")


@dataclasses.dataclass(frozen=True, kw_only=True)
class TextFilesSource(SpanConfig):
    """Span pairs from files matched by `paths` (globs; `**` recurses; .gz read transparently)."""

    paths: tuple[str, ...]
    format: str = "text"  # one of FORMATS
    field: str = "text"  # jsonl: the document's field
    documents: str = "file"  # text/markdown: one of DOCUMENTS
    max_line_chars: int = 4_000_000  # jsonl: longer lines are skipped
    name: str = "text_files"

    BOUNDS: ClassVar[dict[str, Bound]] = {"max_line_chars": at_least(1, "longer jsonl lines are skipped")}

    def __post_init__(self) -> None:
        super().__post_init__()  # types and BOUNDS (SpanConfig's and these)
        object.__setattr__(self, "paths", as_str_tuple(self, "paths", self.paths))
        if not self.paths:
            raise ValueError("TextFilesSource.paths is empty; give at least one glob.")
        if self.format not in FORMATS:
            raise ValueError(f"TextFilesSource.format={self.format!r}; expected one of {FORMATS}.")
        if self.documents not in DOCUMENTS:
            raise ValueError(f"TextFilesSource.documents={self.documents!r}; expected one of {DOCUMENTS}.")

    def build(self) -> ShardedSource:
        """The source over the files matched now (ValueError if a glob matches nothing)."""
        shard_ids = files.expand_globs(self.paths, "TextFilesSource.paths")
        reader = _read_jsonl if self.format == "jsonl" else _read_text
        return ShardedSource(self.name, shard_ids, functools.partial(reader, self))


def _read_jsonl(config: TextFilesSource, path: str, stats: RuleCounter) -> Iterator[Record]:
    objects = files.iter_jsonl(path, (config.field,), config.max_line_chars, stats)
    for index, obj in enumerate(objects):
        text = obj[config.field]
        if not isinstance(text, str):
            stats.count("malformed_record")
            continue
        text, repaired = files.repair_surrogates(text)
        if repaired:
            stats.count("invalid_utf8")
        yield from span_pairs(text, f"{path}#{index}", config, stats)


def _read_text(config: TextFilesSource, path: str, stats: RuleCounter) -> Iterator[Record]:
    pieces = files.iter_pieces(path, stats)
    if config.format == "markdown":
        pieces = _strip_markdown(pieces)
    per_block = config.documents == "blank_line"
    index = 0
    pairer = None if per_block else SpanPairer(config, f"{path}#0", stats)
    line_start = True
    for piece in pieces:
        starts_line, line_start = line_start, piece.endswith("\n")
        if per_block and starts_line and not piece.strip():  # a blank line ends the block
            if pairer is not None:
                yield from pairer.finish()
                pairer = None
            continue
        if pairer is None:
            pairer = SpanPairer(config, f"{path}#{index}", stats)
            index += 1
        if pairer.full:
            if per_block:
                continue  # skip to the end of this block
            break  # the file's one document is complete: stop reading
        piece, repaired = files.repair_surrogates(piece)
        if repaired:
            stats.count("invalid_utf8")
        yield from pairer.feed(piece)
    if pairer is not None:
        yield from pairer.finish()


def _fence(line: str) -> tuple[str, str] | None:
    """(fence run, info string) if `line` opens or closes a Markdown code fence."""
    text = line.lstrip(" ")
    if len(line) - len(text) > 3 or text[:3] not in ("```", "~~~"):
        return None
    run = len(text) - len(text.lstrip(text[0]))
    return text[:run], text[run:].strip()


def _strip_markdown(pieces: Iterator[str]) -> Iterator[str]:
    """`pieces` (text split at newlines or 64K characters) without the front matter and
    fenced code blocks described in the module docstring."""
    pieces = iter(pieces)
    head: list[str] = []
    first = next(pieces, None)
    if first is None:
        return
    head.append(first)
    if first.rstrip("\n") in _FRONT_MATTER_MARKERS and first.endswith("\n"):
        for piece in pieces:
            head.append(piece)
            if piece.rstrip("\n") == first.rstrip("\n") and head[-2].endswith("\n"):
                head = []  # a closed front matter block: drop it
                break
            if len(head) > _FRONT_MATTER_MAX_LINES:
                break
    open_fence: str | None = None
    line_start = True
    for piece in itertools.chain(head, pieces):
        starts_line, line_start = line_start, piece.endswith("\n")
        fence = _fence(piece) if starts_line else None
        if open_fence is None and fence is not None:
            open_fence = fence[0]
            continue
        if open_fence is not None:
            closes = (
                fence is not None
                and fence[0][0] == open_fence[0]
                and len(fence[0]) >= len(open_fence)
                and not fence[1]
            )
            if closes:
                open_fence = None
            continue
        yield piece
