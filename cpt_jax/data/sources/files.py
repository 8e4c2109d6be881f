"""Local file access shared by the file sources: globs, gzip, bounded line reads, JSONL.

Nothing here reads a whole file: text is read in bounded pieces (`readline(limit)`), so a
multi-GB file, or one with no newline at all, never sits in memory.

Globs (`expand_globs`) are expanded by walking directories with os.scandir, matching what
`glob.glob(recursive=True)` matches on a tree without symlinks, but following a symlinked
directory at most once per real directory and listing each real file once; the walk is bounded
(MAX_SCANNED_ENTRIES, MAX_MATCHED_FILES).

Drop rules counted here:
  symlink_loop     a directory met again on its own path under `**` (a symlink loop): not
                   followed (glob.glob would repeat its files up to the symlink limit, or never end).
  duplicate_path   a matched path whose real file (or, under `**`, real directory) was already
                   matched through another link or glob: left out, the file listed once.
  invalid_utf8     bytes that are not UTF-8 (or JSON "\\udXXX" escapes that make lone
                   surrogates); they are replaced by U+FFFD, the text is KEPT, and the rule
                   counts the affected pieces (lines or documents, as the caller decides).
  corrupt_gzip     a `.gz` file that is truncated or not gzip; the shard ends at the damage.
  line_too_long    a JSONL line over `max_line_chars`; skipped (it cannot be parsed in bounded memory).
  malformed_json   a JSONL line that is not a JSON object; skipped. Blank lines are ignored.
  missing_field    a JSONL object without a required field; skipped.
"""

from __future__ import annotations

import dataclasses
import fnmatch
import glob
import gzip
import io
import json
import os
import re
import warnings
import zlib
from collections.abc import Iterator, Sequence
from typing import TextIO

from cpt_jax.data.sources.base import RuleCounter, check_rule

PIECE_CHARS = 1 << 16  # text is read in pieces of at most this many characters
# A required JSONL field absent from this many leading objects is a configuration error.
_FIELD_CHECK_OBJECTS = 100
# Undecodable bytes arrive as lone surrogates (errors="surrogateescape"), as do JSON "\udXXX"
# escapes; neither can be encoded as UTF-8 later, so both are replaced.
_SURROGATE = re.compile("[\ud800-\udfff]")
_CORRUPT_GZIP = (gzip.BadGzipFile, EOFError, zlib.error)
# Bounds on glob expansion (expand_globs): a glob such as "/**" fails with the glob named
# instead of walking a whole filesystem. Module constants, not config: a corpus this large
# belongs in fewer, larger files (or a narrower glob).
MAX_MATCHED_FILES = 1_000_000  # distinct files over all globs of one source (one shard each)
MAX_SCANNED_ENTRIES = 10_000_000  # directory entries listed over all globs of one source
_EXAMPLES = 5  # examples of each kind named in a GlobWarning


def expand_globs(patterns: Sequence[str], what: str, stats: RuleCounter | None = None) -> list[str]:
    """Sorted regular files matched by `patterns` (`**` recurses), one per real file.

    The matches are those of `glob.glob(pattern, recursive=True)` filtered by `os.path.isfile`
    (hidden names are matched only by a pattern component starting with "."), except where
    symlinks make glob repeat itself or never end:
      - under `**` a real directory is walked once per pattern position: a directory met again
        on its own path (a symlink loop) is not followed and counted as `symlink_loop`; one met
        again elsewhere (two links to it) is not walked again and counted as `duplicate_path`;
      - a real file matched through several paths (links, overlapping globs) is listed once,
        under the path that crosses the fewest symlinks (then the first met); every other path
        is counted as `duplicate_path` (the same path matched by two globs is not counted).
    Both are also reported in one `GlobWarning` naming examples. The counts go to `stats`
    when one is given.

    Raises ValueError naming each pattern that matches no file, since a typo in one glob
    would otherwise silently shrink the corpus, and naming the pattern that scans more than
    MAX_SCANNED_ENTRIES directory entries or matches more than MAX_MATCHED_FILES files.
    `what` names the config in the messages.
    """
    found = discover_files(patterns, what)
    for rule, n in found.drops().items():
        check_rule(rule)
        if stats is not None:
            stats.count(rule, n)
    if message := found.report(what):
        warnings.warn(message, GlobWarning, stacklevel=3)
    return found.files


class GlobWarning(UserWarning):
    """Symlink loops not followed, or duplicate paths dropped, while expanding a source's globs."""


@dataclasses.dataclass
class Discovery:
    """What `discover_files` found: the files (sorted) and what it left out, counted, with the
    first few examples of each kind."""

    files: list[str]
    loops: int = 0
    duplicates: int = 0
    loop_examples: list[str] = dataclasses.field(default_factory=list)
    duplicate_examples: list[str] = dataclasses.field(default_factory=list)

    def drops(self) -> dict[str, int]:
        """Non-zero counts by drop rule."""
        counts = {"symlink_loop": self.loops, "duplicate_path": self.duplicates}
        return {rule: n for rule, n in counts.items() if n}

    def report(self, what: str) -> str:
        """The warning text, or "" when nothing was left out."""
        lines = []
        if self.loops:
            lines.append(
                f"{what}: {self.loops} symlink loop(s) not followed (a directory met again on its own "
                f"path; counted as symlink_loop): " + "; ".join(self.loop_examples)
                + ("; ..." if self.loops > len(self.loop_examples) else "")
            )
        if self.duplicates:
            lines.append(
                f"{what}: {self.duplicates} path(s) resolve to a file or directory already matched "
                f"(through another link or glob) and are left out (counted as duplicate_path): "
                + "; ".join(self.duplicate_examples)
                + ("; ..." if self.duplicates > len(self.duplicate_examples) else "")
            )
        return "\n".join(lines)


def discover_files(patterns: Sequence[str], what: str) -> Discovery:
    """The files of `expand_globs` and what was left out, without warning or counting."""
    expansion = _Expansion(what)
    for pattern in patterns:
        if not expansion.expand(pattern):
            raise ValueError(
                f"{what}: the glob {pattern!r} matches no file (relative globs are resolved from "
                f"{os.getcwd()!r}); fix the path or remove it."
            )
    return Discovery(
        files=sorted(path for _, path in expansion.kept.values()),
        loops=expansion.loops,
        duplicates=expansion.duplicates,
        loop_examples=expansion.loop_examples,
        duplicate_examples=expansion.duplicate_examples,
    )


# A directory being walked: (path as matched, its real path, the (st_dev, st_ino) chain of the
# directories on its path, the last symlink crossed as (link, real target) or None, the index
# of the pattern component to match in it).
_Chain = tuple | None
_State = tuple[str, str, _Chain, tuple[str, str] | None, int]


def _on_chain(chain: _Chain, ident: tuple[int, int]) -> bool:
    while chain is not None:
        if chain[0] == ident:
            return True
        chain = chain[1]
    return False


class _Expansion:
    """Expands patterns one by one into `kept` (real path -> ((links, order), path)).

    A pattern is split at "/"; its leading components without magic are used as written (as
    glob does), the rest are matched by walking directories with os.scandir. Directories are
    walked in order of the number of symlinks crossed to reach them (all those reached without
    a link first), depth first in name order within that, so the first walk of a real
    directory is through the fewest links; a directory is walked at most once per (real
    directory, pattern component).
    """

    def __init__(self, what: str):
        self.what = what
        self.kept: dict[str, tuple[tuple[int, int], str]] = {}
        self.seen: set[str] = set()  # every path matched so far (by any pattern)
        self.order = 0
        self.scanned = 0
        self.loops = self.duplicates = 0
        self.loop_examples: list[str] = []
        self.duplicate_examples: list[str] = []

    def expand(self, pattern: str) -> int:
        """Adds the files `pattern` matches; returns how many paths it matched (0: none)."""
        self.pattern = pattern
        self.matched = 0
        path = os.path.expanduser(pattern)
        parts = path.split(os.sep)
        first_magic = next((n for n, part in enumerate(parts) if glob.has_magic(part)), len(parts))
        if first_magic == len(parts):
            if os.path.isfile(path):
                self._file(path, os.path.realpath(path), int(os.path.islink(path)))
            return self.matched
        prefix = os.sep.join(parts[:first_magic]) or (os.sep if first_magic else "")
        rest = parts[first_magic:]
        if rest[-1] == "":
            return 0  # a trailing separator matches directories only
        self.comps: list[str] = []
        for part in rest:
            if part and not (part == "**" and self.comps and self.comps[-1] == "**"):
                self.comps.append(part)
        self.matchers = [
            None if c == "**" or not glob.has_magic(c) else re.compile(fnmatch.translate(c)).match
            for c in self.comps
        ]
        start = prefix or os.curdir
        if not os.path.isdir(start):
            return 0
        self.visited: dict[tuple[tuple[int, int], int], str] = {}
        levels: list[list[_State]] = [[(prefix, os.path.realpath(start), None, None, 0)]]
        links = 0
        while links < len(levels):
            stack = levels[links]
            while stack:
                self._walk(stack.pop(), links, levels)
            links += 1
        return self.matched

    def _walk(self, state: _State, links: int, levels: list[list[_State]]) -> None:
        path, real, chain, via, i = state
        try:
            st = os.stat(path or os.curdir)
        except OSError:
            return
        ident = (st.st_dev, st.st_ino)
        if (ident, i) in self.visited:
            if self.visited[ident, i] == path:
                return  # the same path again (a pattern like "**/*/**" reaches a directory several ways)
            if _on_chain(chain, ident):
                self.loops += 1
                if len(self.loop_examples) < _EXAMPLES:
                    self.loop_examples.append(_describe_loop(path, real, via))
            else:
                self._duplicate(f"{path!r} is {real!r}, already walked as {self.visited[ident, i]!r}")
            return
        self.visited[ident, i] = path
        chain = (ident, chain)
        comps, recursive = self.comps, self.comps[i] == "**"
        j = i + 1 if recursive else i  # the component matched here ("**" matches zero directories)
        literal = j < len(comps) and self.matchers[j] is None
        entries = self._scan(path) if recursive or (j < len(comps) and not literal) else []
        children: list[tuple[os.DirEntry | str, int]] = []  # (entry or literal name, component index)
        if recursive:
            last = j == len(comps)
            for entry in entries:
                if entry.name.startswith("."):
                    continue
                if _is_dir(entry):
                    children.append((entry, i))
                elif last and _is_file(entry):
                    self._file(os.path.join(path, entry.name), _real(entry, real), links + entry.is_symlink())
        if j < len(comps):
            last = j == len(comps) - 1
            if literal:
                child = os.path.join(path, comps[j])
                if last:
                    if os.path.isfile(child):
                        self._file(child, os.path.realpath(child), links + os.path.islink(child))
                elif os.path.isdir(child):
                    children.append((comps[j], j + 1))
            else:
                match, hidden = self.matchers[j], comps[j].startswith(".")
                for entry in entries:
                    if (entry.name.startswith(".") and not hidden) or not match(entry.name):
                        continue
                    if last:
                        if _is_file(entry):
                            self._file(os.path.join(path, entry.name), _real(entry, real), links + entry.is_symlink())
                    elif _is_dir(entry):
                        children.append((entry, j + 1))
        for child, index in reversed(children):  # popped in name order
            if isinstance(child, str):
                child_path = os.path.join(path, child)
                is_link = os.path.islink(child_path)
                child_real = os.path.realpath(child_path)
            else:
                child_path = os.path.join(path, child.name)
                is_link = child.is_symlink()
                child_real = os.path.realpath(child_path) if is_link else os.path.join(real, child.name)
            child_via = (child_path, child_real) if is_link else via
            if links + is_link == len(levels):
                levels.append([])
            levels[links + is_link].append((child_path, child_real, chain, child_via, index))

    def _scan(self, path: str) -> list[os.DirEntry]:
        entries = []
        try:
            with os.scandir(path or os.curdir) as it:
                for entry in it:
                    entries.append(entry)
                    self.scanned += 1
                    if self.scanned > MAX_SCANNED_ENTRIES:
                        raise ValueError(
                            f"{self.what}: expanding the glob {self.pattern!r} scans more than "
                            f"{MAX_SCANNED_ENTRIES:,} directory entries (the limit "
                            f"cpt_jax.data.sources.files.MAX_SCANNED_ENTRIES), now in {path or os.curdir!r}; "
                            "narrow the glob (a longer fixed prefix, `*` or a fixed name instead of `**`)."
                        )
        except OSError:
            pass  # an unreadable directory lists what it gave (usually nothing), as in glob
        entries.sort(key=lambda e: e.name)
        return entries

    def _file(self, path: str, real: str, links: int) -> None:
        self.matched += 1
        if path in self.seen:
            return  # the same path matched by an earlier glob
        self.seen.add(path)
        rank = (links, self.order)
        self.order += 1
        previous = self.kept.get(real)
        if previous is None:
            if len(self.kept) >= MAX_MATCHED_FILES:
                raise ValueError(
                    f"{self.what}: the glob {self.pattern!r} brings the files matched to more than "
                    f"{MAX_MATCHED_FILES:,} (the limit cpt_jax.data.sources.files.MAX_MATCHED_FILES; "
                    "one shard per file); narrow the glob, or pack the corpus into fewer, larger files."
                )
            self.kept[real] = (rank, path)
            return
        kept, dropped = (path, previous[1]) if rank < previous[0] else (previous[1], path)
        if kept == path:
            self.kept[real] = (rank, path)
        self._duplicate(f"{dropped!r} is {kept!r} ({real!r})")

    def _duplicate(self, example: str) -> None:
        self.duplicates += 1
        if len(self.duplicate_examples) < _EXAMPLES:
            self.duplicate_examples.append(example)


def _describe_loop(path: str, real: str, via: tuple[str, str] | None) -> str:
    if via is not None and via[0] == path:
        try:
            target = os.readlink(path)
        except OSError:
            target = real
        return f"{path!r} -> {target!r} (= {real!r})"
    if via is not None:
        return f"{path!r} is {real!r}, reached through the link {via[0]!r} -> {via[1]!r}"
    return f"{path!r} is {real!r}"


def _real(entry: os.DirEntry, parent_real: str) -> str:
    return os.path.realpath(entry.path) if entry.is_symlink() else os.path.join(parent_real, entry.name)


def _is_dir(entry: os.DirEntry) -> bool:
    try:
        return entry.is_dir()
    except OSError:
        return False


def _is_file(entry: os.DirEntry) -> bool:
    try:
        return entry.is_file()
    except OSError:
        return False


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
