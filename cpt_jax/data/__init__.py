"""Data layer: pair sources, TFDS builders, tokenizer and input pipelines.

Modules (imported individually so that e.g. the tokenizer does not pull in
TensorFlow):

* ``stdlib_corpus``: the stdlib's sources, their splits, the skip rules, and (docstring, code) pairs.
* ``stdlib_text_pairs``: neighbouring-span pairs from the stdlib's docstrings and pydoc topics.
* ``builders``: TFDS ``stdlib_code`` / ``stdlib_text`` (array_record), ``prepare``, ``drop_counts``.
* ``sources``: pair sources (files, code trees, TFDS by name, pre-paired JSONL, prepared pair
  datasets), the one code miner (code_pairs), the one span pairer (spans), DROP_RULES (base).
* ``sentencepiece_model`` / ``tokenizer``: the run's ``Tokenizer`` with per-side delimiters.
* ``stream`` / ``mixture`` / ``prefetch``: readers, weighted mixtures, background production.
* ``pipeline``: ``DataConfig`` and ``Batches``, the one batcher of every source (prepared TFDS
  splits included, as ``PreparedPairsSource``): multi-host deterministic, exactly resumable.
* ``fingerprint``: order-free batch fingerprints and the run comparison CLI.
* ``probe_tasks``: built-in linear-probe tasks for evaluation (``stdlib_packages``), built once
  under ``<data_dir>/classification/``.
"""
