"""cpt-code pairs (documentation, function) from source trees.

One shard per file: `shards()` is the sorted list of matched files whose extension belongs
to a selected language (code_languages.EXTENSIONS). A file's pairs are those of the one code
miner (code_pairs.py: Python with `ast`, the other languages with tree-sitter; its docstring
lists the drop rules), in source order, plus
  duplicate_pair  an (x, y) pair already seen in the same file. Dedup is per shard only:
                  copies in other files are kept.
"""

from __future__ import annotations

import dataclasses
import functools
import hashlib
import os
from collections.abc import Iterator
from typing import ClassVar

from cpt_jax.data.sources import code_languages, code_pairs, files
from cpt_jax.data.sources.base import Record, RuleCounter, ShardedSource, as_str_tuple
from cpt_jax.data.sources.code_languages import LANGUAGES
from cpt_jax.typecheck import Bound, at_least, between, check_field_types


@dataclasses.dataclass(frozen=True, kw_only=True)
class CodeFilesSource:
    """(doc, function) pairs from files matched by `paths` (globs; `**` recurses)."""

    paths: tuple[str, ...]
    languages: tuple[str, ...] = tuple(LANGUAGES)
    min_doc_words: int = 3
    max_error_fraction: float = 0.05  # of a file's bytes inside tree-sitter ERROR nodes
    max_file_bytes: int = 1_000_000
    name: str = "code_files"

    BOUNDS: ClassVar[dict[str, Bound]] = {
        "min_doc_words": at_least(1, "functions with shorter docstrings are skipped"),
        "max_error_fraction": between(0.0, 1.0, "files with more of their bytes in parse errors are skipped"),
        "max_file_bytes": at_least(1, "larger files are skipped"),
    }

    def __post_init__(self) -> None:
        check_field_types(self)  # types, then the BOUNDS above
        object.__setattr__(self, "paths", as_str_tuple(self, "paths", self.paths))
        object.__setattr__(self, "languages", as_str_tuple(self, "languages", self.languages))
        if not self.paths:
            raise ValueError("CodeFilesSource.paths is empty; give at least one glob.")
        unknown = [lang for lang in self.languages if lang not in LANGUAGES]
        if unknown or not self.languages:
            raise ValueError(
                f"CodeFilesSource.languages={self.languages!r}: unknown {unknown}; choose from {tuple(LANGUAGES)}."
            )

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
        stats.count("file_too_large")  # known without reading the file
        return
    with open(path, "rb") as f:
        source = f.read().removeprefix(b"\xef\xbb\xbf")  # a BOM would shift every byte offset
    language = code_languages.EXTENSIONS[_extension(path)]
    yield from file_pairs(source, language, config, stats)


def file_pairs(source: bytes, language: str, config: CodeFilesSource, stats: RuleCounter) -> Iterator[Record]:
    """The {"x": doc, "y": code} pairs of one file's bytes (code_pairs.mine), minus repeats of an
    (x, y) earlier in the same file (duplicate_pair)."""
    seen: set[bytes] = set()
    pairs = code_pairs.mine(
        source, language, stats, min_doc_words=config.min_doc_words,
        max_file_bytes=config.max_file_bytes, max_error_fraction=config.max_error_fraction,
    )
    for pair in pairs:
        key = hashlib.blake2b(f"{pair.x}\0{pair.y}".encode(), digest_size=16).digest()
        if key in seen:
            stats.count("duplicate_pair")
            continue
        seen.add(key)
        yield {"x": pair.x, "y": pair.y}
