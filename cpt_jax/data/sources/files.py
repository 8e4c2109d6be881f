"""Local file access shared by the file sources: globs, gzip, bounded line reads, JSONL.

Nothing here reads a whole file: text is read in bounded pieces (`readline(limit)`), so a
multi-GB file, or one with no newline at all, never sits in memory.

Drop rules counted here:
  invalid_utf8     bytes that are not UTF-8 (or JSON "\\udXXX" escapes that make lone
                   surrogates); they are replaced by U+FFFD, the text is KEPT, and the rule
                   counts the affected pieces (lines or documents, as the caller decides).
  corrupt_gzip     a `.gz` file that is truncated or not gzip; the shard ends at the damage.
  line_too_long    a JSONL line over `max_line_chars`; skipped (it cannot be parsed in bounded memory).
  malformed_json   a JSONL line that is not a JSON object; skipped. Blank lines are ignored.
  missing_field    a JSONL object without a required field; skipped.
"""

from __future__ import annotations

import glob
import gzip
import io
import json
import os
import re
import zlib
from collections.abc import Iterator, Sequence
from typing import TextIO

from cpt_jax.data.sources.base import RuleCounter

PIECE_CHARS = 1 << 16  # text is read in pieces of at most this many characters
# A required JSONL field absent from this many leading objects is a configuration error.
_FIELD_CHECK_OBJECTS = 100
# Undecodable bytes arrive as lone surrogates (errors="surrogateescape"), as do JSON "\udXXX"
# escapes; neither can be encoded as UTF-8 later, so both are replaced.
_SURROGATE = re.compile("[\ud800-\udfff]")
_CORRUPT_GZIP = (gzip.BadGzipFile, EOFError, zlib.error)


def expand_globs(patterns: Sequence[str], what: str) -> list[str]:
    """Sorted, de-duplicated regular files matched by `patterns` (`**` recurses).

    Raises ValueError naming each pattern that matches no file, since a typo in one glob
    would otherwise silently shrink the corpus. `what` names the config in the message.
    """
    matched: set[str] = set()
    for pattern in patterns:
        files = [p for p in glob.glob(os.path.expanduser(pattern), recursive=True) if os.path.isfile(p)]
        if not files:
            raise ValueError(
                f"{what}: the glob {pattern!r} matches no file (relative globs are resolved from "
                f"{os.getcwd()!r}); fix the path or remove it."
            )
        matched.update(files)
    return sorted(matched)


def open_text(path: str) -> TextIO:
    """`path` as UTF-8 text (gunzipped when it ends in .gz), universal newlines, a leading
    BOM dropped; undecodable bytes become lone surrogates for `repair_surrogates`."""
    raw = gzip.open(path, "rb") if path.endswith(".gz") else open(path, "rb")
    return io.TextIOWrapper(raw, encoding="utf-8-sig", errors="surrogateescape", newline=None)


def repair_surrogates(text: str) -> tuple[str, bool]:
    """(text with every lone surrogate replaced by U+FFFD, whether there was any)."""
    if _SURROGATE.search(text) is None:
        return text, False
    return _SURROGATE.sub("\ufffd", text), True


def iter_pieces(path: str, stats: RuleCounter) -> Iterator[str]:
    """The text of `path` as consecutive pieces of at most PIECE_CHARS characters, each
    ending at a newline or at the size limit; surrogates are left for the caller."""
    with open_text(path) as f:
        try:
            while piece := f.readline(PIECE_CHARS):
                yield piece
        except _CORRUPT_GZIP:
            stats.count("corrupt_gzip")


def iter_lines(path: str, max_line_chars: int, stats: RuleCounter) -> Iterator[str]:
    """Whole lines of `path` (newline stripped, surrogates repaired and counted per line);
    longer lines are skipped piece by piece and counted as line_too_long."""
    with open_text(path) as f:
        try:
            while line := f.readline(max_line_chars + 1):
                if len(line) > max_line_chars and not line.endswith("\n"):
                    stats.count("line_too_long")
                    while (rest := f.readline(PIECE_CHARS)) and not rest.endswith("\n"):
                        pass
                    continue
                line, repaired = repair_surrogates(line.rstrip("\n"))
                if repaired:
                    stats.count("invalid_utf8")
                yield line
        except _CORRUPT_GZIP:
            stats.count("corrupt_gzip")


def iter_jsonl(
    path: str, required: Sequence[str], max_line_chars: int, stats: RuleCounter
) -> Iterator[dict]:
    """The JSON objects of `path`, one per non-blank line, that have every `required` field.

    Raises ValueError when none of the first 100 objects (or of all, if fewer) has the
    required fields: the field name is then almost surely misconfigured.
    """
    objects = with_fields = 0
    first_keys: list[str] = []
    for line in iter_lines(path, max_line_chars, stats):
        if not line.strip():
            continue
        try:
            obj = json.loads(line)
        except json.JSONDecodeError:
            obj = None
        if not isinstance(obj, dict):
            stats.count("malformed_json")
            continue
        objects += 1
        if objects == 1:
            first_keys = sorted(obj)
        if all(field in obj for field in required):
            with_fields += 1
            yield obj
        else:
            stats.count("missing_field")
        if objects == _FIELD_CHECK_OBJECTS and not with_fields:
            break
    if objects and not with_fields:
        raise ValueError(
            f"{path}: none of the first {objects} JSON objects has the field(s) {list(required)}; "
            f"the first object has keys {first_keys}. Set the field name(s) to one of those."
        )
