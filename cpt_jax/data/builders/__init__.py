"""TFDS builders for the stdlib pair datasets; importing this registers them.

Registered names: ``stdlib_code`` and ``stdlib_text`` (DATASETS), and ``site_code`` and
``site_text`` (SITE_DATASETS: every installed package, data/site_corpus.py; minutes to build, so
kept out of DATASETS, which the test session prepares). All are written in the array_record
format so ``tfds.data_source`` gives random access for grain. What a build left out, by rule
(stdlib_corpus.BUILD_RULES; site_corpus.BUILD_RULES), is printed when it runs and kept in the
dataset's metadata: ``drop_counts(name, data_dir)``.
"""

from __future__ import annotations

import os

import tensorflow_datasets as tfds

from cpt_jax.data.builders import site_pairs, stdlib_code, stdlib_text
from cpt_jax.data.builders.pair_builder import DROP_COUNTS_KEY

DATASETS: tuple[str, ...] = (stdlib_code.StdlibCode.name, stdlib_text.StdlibText.name)
SITE_DATASETS: tuple[str, ...] = (site_pairs.SiteCode.name, site_pairs.SiteText.name)
BUILT_IN: tuple[str, ...] = DATASETS + SITE_DATASETS


def _check_name(name: str) -> None:
    if name not in BUILT_IN:
        raise ValueError(f"Unknown dataset {name!r}; cpt_jax.data.builders provides {BUILT_IN}.")


def prepare(name: str, data_dir: str) -> tfds.core.DatasetBuilder:
    """Builds dataset ``name`` under ``data_dir`` unless already built; returns its builder.

    Idempotent: a prepared dataset is reused, never regenerated. A build prints
    how many pairs each split kept and what was left out, by rule.
    """
    _check_name(name)
    builder = tfds.builder(name, data_dir=os.fspath(data_dir), file_format="array_record")
    if not builder.is_prepared():
        print(f"preparing {name} under {data_dir} (once) ...", flush=True)
        tfds.display_progress_bar(False)  # a global switch in TFDS; bars flood CI logs
        builder.download_and_prepare(file_format="array_record")
        print(_summary(builder), flush=True)
    return builder


def drop_counts(name: str, data_dir: str, split: str | None = None) -> dict[str, int]:
    """Rule -> number of files, functions, documents or pairs left out (or cut) when dataset
    ``name`` was built, for one split or summed over all. Every rule of the builder's
    BUILD_RULES (stdlib_corpus or site_corpus) is present (0 when it never applied)."""
    _check_name(name)
    builder = tfds.builder(name, data_dir=os.fspath(data_dir), file_format="array_record")
    if not builder.is_prepared():
        raise FileNotFoundError(
            f"{name} {builder.version} is not prepared under {data_dir}; run "
            f"cpt_jax.data.builders.prepare({name!r}, {os.fspath(data_dir)!r}) first."
        )
    per_split: dict[str, dict[str, int]] = builder.info.metadata[DROP_COUNTS_KEY]
    if split is not None:
        if split not in per_split:
            raise ValueError(f"Unknown split {split!r}; {name} has {tuple(per_split)}.")
        return dict(per_split[split])
    totals: dict[str, int] = {}
    for counts in per_split.values():
        for rule, n in counts.items():
            totals[rule] = totals.get(rule, 0) + n
    return totals


def _summary(builder: tfds.core.DatasetBuilder) -> str:
    """One log line per split: pairs kept, then every rule that applied with its count."""
    corpus = "site_corpus" if builder.name in SITE_DATASETS else "stdlib_corpus"
    lines = [f"{builder.name} {builder.version}: pairs kept, and inputs left out or cut by rule "
             f"(cpt_jax.data.{corpus}.BUILD_RULES, described in sources/base.DROP_RULES)"]
    kinds = builder.info.metadata.get(site_pairs.KIND_COUNTS_KEY, {})
    for split, counts in builder.info.metadata[DROP_COUNTS_KEY].items():
        applied = ", ".join(f"{rule}={n}" for rule, n in counts.items() if n) or "nothing"
        by_kind = " (" + ", ".join(f"{k}={n}" for k, n in kinds[split].items()) + ")" if kinds.get(split) else ""
        lines.append(f"  {split}: kept {builder.info.splits[split].num_examples}{by_kind}; {applied}")
    return "\n".join(lines)

