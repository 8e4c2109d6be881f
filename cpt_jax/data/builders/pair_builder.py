"""Shared TFDS builder for (x, y, module) text pairs mined from the stdlib."""

from __future__ import annotations

import abc
import collections
import inspect
import platform
from collections.abc import Iterator

import tensorflow_datasets as tfds
from etils import epath

from cpt_jax.data import stdlib_corpus

# Key of the per-split skip counts in the prepared dataset's metadata.json (DatasetInfo.metadata).
DROP_COUNTS_KEY = "drop_counts"


class PairBuilder(tfds.core.GeneratorBasedBuilder, skip_registration=True):
    """Abstract builder: subclasses implement ``_pairs(split, skipped)``.

    Every example is ``{"x": str, "y": str, "module": str}``. The content
    depends on the interpreter that builds it (its stdlib), recorded in the
    description; bump VERSION when the mining rules change. What each split
    left out, by rule (stdlib_corpus.BUILD_RULES), is stored in the dataset's
    metadata under DROP_COUNTS_KEY.
    """

    VERSION = tfds.core.Version("1.1.0")
    RELEASE_NOTES = {
        "1.0.0": "Initial release.",
        "1.1.0": "Bad inputs skipped or cut by stated rules and counted in metadata.json; duplicate "
        "pairs dropped; class-docstring keys carry the line number.",
    }
    PAIR_DESCRIPTION = ""

    @tfds.core.utils.classproperty
    @classmethod
    def code_path(cls) -> epath.Path:
        """Path of the subclass's module.

        Overridden because TFDS's default resolves it through the optional
        ``importlib_resources`` package, which this project does not install;
        TFDS only uses it to look for a (here absent) download checksums file.
        """
        return epath.Path(inspect.getfile(cls))

    @abc.abstractmethod
    def _pairs(self, split: str, skipped: collections.Counter[str]) -> Iterator[tuple[str, stdlib_corpus.Pair]]:
        """Yields ``(unique key, {"x", "y", "module"})`` for ``split``, counting what it leaves out."""

    def _info(self) -> tfds.core.DatasetInfo:
        return self.dataset_info_from_configs(
            description=(
                f"{self.PAIR_DESCRIPTION} Mined from the Python "
                f"{platform.python_version()} standard library; splits by top-level package."
            ),
            features=tfds.features.FeaturesDict(
                {
                    "x": tfds.features.Text(),
                    "y": tfds.features.Text(),
                    "module": tfds.features.Text(),
                }
            ),
            supervised_keys=("x", "y"),
            metadata=tfds.core.MetadataDict(),
        )

    def _split_generators(self, dl_manager: tfds.download.DownloadManager):
        del dl_manager  # everything comes from the local interpreter
        return {split: self._generate_examples(split) for split in stdlib_corpus.SPLITS}

    def _generate_examples(self, split: str) -> Iterator[tuple[str, stdlib_corpus.Pair]]:
        """The split's pairs; once they are all written, its counts go into the metadata
        (TFDS writes metadata.json after every split is generated)."""
        skipped: collections.Counter[str] = collections.Counter()
        yield from self._pairs(split, skipped)
        counts = {**dict.fromkeys(stdlib_corpus.BUILD_RULES, 0), **skipped}
        self.info.metadata.setdefault(DROP_COUNTS_KEY, {})[split] = counts
