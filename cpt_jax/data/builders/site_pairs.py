"""TFDS builders ``site_code`` and ``site_text``: pairs mined from the installed packages and the
standard library of the environment that builds them (data/site_corpus.py; nothing downloaded).

Same examples ({"x", "y", "module"}), format (array_record) and drop-count metadata as the stdlib
builders (pair_builder.PairBuilder); the drop rules are site_corpus.BUILD_RULES. The metadata also
keeps the pairs per source kind (``kind_counts``, site_corpus.SOURCE_KINDS) and the environment
(``environment``: Python version and the sorted distribution==version list's sha256, with their
count): the content depends on what is installed, and a prepared dataset is reused as it is, so
rebuild it (a fresh data_dir) after installing or removing packages.
"""

from __future__ import annotations

import collections
import hashlib
import importlib.metadata
import os
import platform
from collections.abc import Iterator

import tensorflow_datasets as tfds

from cpt_jax.data import site_corpus, stdlib_corpus
from cpt_jax.data.builders.pair_builder import DROP_COUNTS_KEY, PairBuilder

KIND_COUNTS_KEY = "kind_counts"
ENVIRONMENT_KEY = "environment"


def environment(roots: tuple[site_corpus.Root, ...]) -> dict[str, object]:
    """What the content depends on: the Python version and the installed distributions."""
    paths = [os.fspath(root.path) for root in roots if not root.stdlib]
    dists = sorted(f"{d.metadata.get('Name')}=={d.metadata.get('Version')}"
                   for d in importlib.metadata.distributions(path=paths))
    return {"python": platform.python_version(), "distributions": len(dists),
            "distributions_sha256": hashlib.sha256("\n".join(dists).encode()).hexdigest(),
            "roots": [os.fspath(root.path) for root in roots]}


class SitePairBuilder(PairBuilder, skip_registration=True):
    """A site_corpus dataset of pairs of ``KIND`` ("code" or "text")."""

    VERSION = tfds.core.Version("1.0.0")
    RELEASE_NOTES = {"1.0.0": "Initial release: site-packages and the stdlib, capped per package, "
                              "split by top-level package, cross-split duplicates dropped from train."}
    KIND: site_corpus.Kind = "code"

    def _info(self) -> tfds.core.DatasetInfo:
        return self.dataset_info_from_configs(
            description=(
                f"{self.PAIR_DESCRIPTION} Mined from the installed packages and the standard library "
                f"of a Python {platform.python_version()} environment (cpt_jax.data.site_corpus); "
                "splits by top-level package; train pairs repeating held-out text dropped."
            ),
            features=tfds.features.FeaturesDict(
                {"x": tfds.features.Text(), "y": tfds.features.Text(), "module": tfds.features.Text()}
            ),
            supervised_keys=("x", "y"),
            metadata=tfds.core.MetadataDict(),
        )

    def _pairs(self, split: str, skipped: collections.Counter[str]) -> Iterator[tuple[str, stdlib_corpus.Pair]]:
        # One HeldOutPairs per build: train's dedup index and the held-out splits mine them once.
        if not hasattr(self, "_held_out"):
            self._held_out = site_corpus.HeldOutPairs(self.KIND, self._roots())
        return site_corpus.iter_pairs(self.KIND, split, self._roots(), skipped=skipped, held_out=self._held_out)

    def _roots(self) -> tuple[site_corpus.Root, ...]:
        if not hasattr(self, "_site_roots"):
            self._site_roots = site_corpus.environment_roots()
        return self._site_roots

    def _generate_examples(self, split: str) -> Iterator[tuple[str, stdlib_corpus.Pair]]:
        skipped: collections.Counter[str] = collections.Counter()
        kinds: collections.Counter[str] = collections.Counter()
        for key, pair in self._pairs(split, skipped):
            kinds[site_corpus.source_kind(pair["module"], self.KIND)] += 1
            yield key, pair
        metadata = self.info.metadata
        metadata.setdefault(DROP_COUNTS_KEY, {})[split] = {**dict.fromkeys(site_corpus.BUILD_RULES, 0), **skipped}
        metadata.setdefault(KIND_COUNTS_KEY, {})[split] = {k: kinds[k] for k in site_corpus.SOURCE_KINDS if kinds[k]}
        metadata[ENVIRONMENT_KEY] = environment(self._roots())


class SiteCode(SitePairBuilder):
    """x: cleaned docstring; y: the function's source without its docstring."""

    PAIR_DESCRIPTION = "Docstring -> function code pairs (cpt-code style)."
    KIND = "code"


class SiteText(SitePairBuilder):
    """x, y: neighbouring spans of a docstring, package description, doc file or pydoc topic."""

    PAIR_DESCRIPTION = "Neighbouring-span pairs from docstrings, package descriptions, doc files and pydoc topics."
    KIND = "text"
