"""SentencePiece tokeniser trained by the framework, with per-side delimiters.

Id layout (fixed, checked on load):

    0 pad, 1 unk, 2 [SOS]_x, 3 [EOS]_x, 4 [SOS]_y, 5 [EOS]_y, then 256 byte
    pieces (byte_fallback) and the learned pieces.

The four delimiters are SentencePiece *control* symbols, not user-defined
symbols: user-defined symbols are matched inside raw text, so a docstring that
literally contains "[EOS]_x" would inject the control id the encoder pools on.
Control symbols only reserve ids, so that text is tokenised as ordinary
characters; the framework adds the delimiters itself in ``encode``.

Normalisation is the identity and whitespace is preserved, so code
indentation and newlines survive an encode/decode round trip exactly.
"""

from __future__ import annotations

import io
import itertools
from collections.abc import Iterable, Sequence
from typing import Literal

import numpy as np
import sentencepiece as spm
from etils import epath

Side = Literal["x", "y"]
PAD_ID = 0
UNK_ID = 1
DELIMITERS: tuple[str, ...] = ("[SOS]_x", "[EOS]_x", "[SOS]_y", "[EOS]_y")
# Texts longer than this many bytes are ignored by the trainer (not truncated).
_MAX_SENTENCE_BYTES = 1 << 16


# A run directory keeps its tokenizer under this name, so checkpoints are self-contained.
RUN_DIR_FILE = "tokenizer.model"

def _check_side(side: str) -> None:
    if side not in ("x", "y"):
        raise ValueError(f"side must be 'x' or 'y', got {side!r}.")


class Tokenizer:
    """Wraps a trained ``SentencePieceProcessor`` with batch encoding to fixed length."""

    def __init__(self, processor: spm.SentencePieceProcessor):
        for offset, piece in enumerate(DELIMITERS, start=2):
            if processor.id_to_piece(offset) != piece or not processor.is_control(offset):
                raise ValueError(
                    f"SentencePiece model has no control symbol {piece!r} at id {offset}; "
                    "it was not trained by Tokenizer.train. Retrain it with Tokenizer.train."
                )
        self._sp = processor

    @classmethod
    def train(
        cls,
        texts: Iterable[str],
        vocab_size: int,
        path: str,
        *,
        max_texts: int = 200_000,
        seed: int = 0,
        num_threads: int = 2,
    ) -> Tokenizer:
        """Trains a unigram model on at most ``max_texts`` texts and writes it to ``path``.

        Deterministic for a given input sequence, ``vocab_size`` and ``seed``.
        ``vocab_size`` counts the 6 reserved ids and 256 byte pieces, so it
        must exceed 262; a ValueError is raised if the texts cannot fill it.
        """
        if vocab_size <= len(DELIMITERS) + 2 + 256:
            raise ValueError(
                f"vocab_size={vocab_size} leaves no room for learned pieces: "
                f"{len(DELIMITERS) + 2} reserved ids and 256 byte pieces; use at least 300."
            )
        spm.set_random_generator_seed(seed)
        model = io.BytesIO()
        try:
            cls._train_spm(texts, vocab_size, model, max_texts, num_threads)
        except RuntimeError as e:
            if "Vocabulary size too high" not in str(e):
                raise
            raise ValueError(
                f"The training texts are too small/repetitive for vocab_size={vocab_size} "
                f"({e}); lower vocab_size or train on more text (max_texts={max_texts})."
            ) from e
        path_ = epath.Path(path)
        path_.parent.mkdir(parents=True, exist_ok=True)
        path_.write_bytes(model.getvalue())
        return cls(spm.SentencePieceProcessor(model_proto=model.getvalue()))

    @staticmethod
    def _train_spm(
        texts: Iterable[str], vocab_size: int, model: io.BytesIO, max_texts: int, num_threads: int
    ) -> None:
        spm.SentencePieceTrainer.train(
            sentence_iterator=itertools.islice(texts, max_texts),
            model_writer=model,
            vocab_size=vocab_size,
            model_type="unigram",
            pad_id=PAD_ID,
            unk_id=UNK_ID,
            bos_id=-1,
            eos_id=-1,
            control_symbols=list(DELIMITERS),
            normalization_rule_name="identity",
            remove_extra_whitespaces=False,
            allow_whitespace_only_pieces=True,
            split_digits=True,
            byte_fallback=True,
            max_sentence_length=_MAX_SENTENCE_BYTES,
            input_sentence_size=max_texts,
            shuffle_input_sentence=True,
            num_threads=num_threads,
            minloglevel=2,
        )

    @classmethod
    def load(cls, path: str) -> Tokenizer:
        """Loads a model written by ``train``."""
        path_ = epath.Path(path)
        if not path_.exists():
            raise FileNotFoundError(
                f"No SentencePiece model at {path}; train one with "
                "Tokenizer.train(iter_training_texts(...), vocab_size, path)."
            )
        return cls(spm.SentencePieceProcessor(model_proto=path_.read_bytes()))

    @property
    def vocab_size(self) -> int:
        return self._sp.get_piece_size()

    @property
    def pad_id(self) -> int:
        return PAD_ID

    def sos_id(self, side: Side) -> int:
        _check_side(side)
        return 2 if side == "x" else 4

    def eos_id(self, side: Side) -> int:
        _check_side(side)
        return 3 if side == "x" else 5

    def encode(
        self, texts: Sequence[str], side: Side, max_len: int
    ) -> tuple[np.ndarray, np.ndarray]:
        """Encodes ``texts`` as ``[SOS]_side + ids + [EOS]_side``, right-padded.

        Content is truncated to ``max_len - 2`` ids so the EOS token, whose
        final hidden state is the embedding, is always present.

        Returns:
          tokens: int32 [batch, max_len], ``pad_id`` after the EOS.
          mask: int32 [batch, max_len], 1 on SOS/content/EOS, 0 on padding.
        """
        if max_len < 2:
            raise ValueError(f"max_len={max_len} cannot hold the SOS and EOS delimiters; use >= 2.")
        sos, eos = self.sos_id(side), self.eos_id(side)
        tokens = np.full((len(texts), max_len), PAD_ID, np.int32)
        mask = np.zeros((len(texts), max_len), np.int32)
        for row, ids in enumerate(self._sp.encode(list(texts), out_type=int)):
            content = ids[: max_len - 2]
            end = len(content) + 1
            tokens[row, 0] = sos
            tokens[row, 1:end] = content
            tokens[row, end] = eos
            mask[row, : end + 1] = 1
        return tokens, mask

    def decode(self, ids: Sequence[int] | np.ndarray) -> str:
        """Decodes one id sequence; pad and delimiter (control) ids decode to nothing."""
        return self._sp.decode([int(i) for i in ids])
