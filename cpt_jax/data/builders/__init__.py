"""TFDS builders for the stdlib pair datasets; importing this registers them.

Registered names: ``stdlib_code`` and ``stdlib_text``. Both are written in the
array_record format so ``tfds.data_source`` gives random access for grain.
"""

from __future__ import annotations

import os

import tensorflow_datasets as tfds

from cpt_jax.data.builders import stdlib_code, stdlib_text

DATASETS: tuple[str, ...] = (stdlib_code.StdlibCode.name, stdlib_text.StdlibText.name)


def prepare(name: str, data_dir: str) -> tfds.core.DatasetBuilder:
    """Builds dataset ``name`` under ``data_dir`` unless already built; returns its builder.

    Idempotent: a prepared dataset is reused, never regenerated.
    """
    if name not in DATASETS:
        raise ValueError(f"Unknown dataset {name!r}; cpt_jax.data.builders provides {DATASETS}.")
    builder = tfds.builder(name, data_dir=os.fspath(data_dir), file_format="array_record")
    if not builder.is_prepared():
        print(f"preparing {name} under {data_dir} (once) ...", flush=True)
        tfds.display_progress_bar(False)  # a global switch in TFDS; bars flood CI logs
        builder.download_and_prepare(file_format="array_record")
    return builder
