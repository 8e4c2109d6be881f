"""Data layer: stdlib pair corpora, TFDS builders, tokenizer and input pipeline.

Modules (imported individually so that e.g. the tokenizer does not pull in
TensorFlow):

* ``stdlib_corpus``: mines (docstring, code) and neighbouring-span pairs.
* ``builders``: TFDS ``stdlib_code`` / ``stdlib_text`` (array_record) and ``prepare``.
* ``tokenizer``: SentencePiece ``Tokenizer`` with per-side SOS/EOS delimiters.
* ``pipeline``: ``DataConfig``, ``PairBatches`` (grain, multi-host deterministic)
  and split readers for evaluation and tokenizer training.
"""
