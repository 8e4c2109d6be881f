"""SentencePiece unigram training for from-scratch runs, and its `tokenizers` form.

SentencePiece learns the vocabulary; encoding at run time goes through the Hugging Face
`tokenizers` Unigram model built from the same pieces and scores (``to_tokenizers``). One
encoder for training, embedding and the exported PyTorch model means the three can never
disagree: SentencePiece's own Viterbi breaks exact ties (e.g. a run of 19 spaces as 7+12 or
12+7) by float32 rounding, which no other implementation reproduces.

Id layout (fixed, checked on conversion):

    0 pad, 1 unk, 2 [SOS]_x, 3 [EOS]_x, 4 [SOS]_y, 5 [EOS]_y, then 256 byte
    pieces (byte_fallback) and the learned pieces.

Normalisation is the identity and whitespace is preserved, so code indentation and newlines
survive an encode/decode round trip exactly.
"""

from __future__ import annotations

import io
import itertools
from collections.abc import Iterable

import sentencepiece as spm
import tokenizers
from sentencepiece import sentencepiece_model_pb2

PAD_ID = 0
UNK_ID = 1
DELIMITERS: tuple[str, ...] = ("[SOS]_x", "[EOS]_x", "[SOS]_y", "[EOS]_y")
# Texts longer than this many bytes are ignored by the trainer (not truncated).
_MAX_SENTENCE_BYTES = 1 << 16
_SPACE = "\u2581"
_NORMAL = 1  # sentencepiece_model.proto ModelProto.SentencePiece.Type
_NEVER = -1e9


def train(
    texts: Iterable[str], vocab_size: int, *, max_texts: int = 200_000, seed: int = 0, num_threads: int = 2
) -> bytes:
    """A serialised unigram ModelProto trained on at most ``max_texts`` texts.

    Deterministic for a given input sequence, ``vocab_size`` and ``seed``. ``vocab_size``
    counts the 6 reserved ids and 256 byte pieces, so it must exceed 262; a ValueError is
    raised if the texts cannot fill it.
    """
    if vocab_size <= len(DELIMITERS) + 2 + 256:
        raise ValueError(
            f"vocab_size={vocab_size} leaves no room for learned pieces: "
            f"{len(DELIMITERS) + 2} reserved ids and 256 byte pieces; use at least 300."
        )
    spm.set_random_generator_seed(seed)
    model = io.BytesIO()
    try:
        spm.SentencePieceTrainer.train(
            sentence_iterator=itertools.islice(texts, max_texts),
            model_writer=model,
            vocab_size=vocab_size,
            model_type="unigram",
            pad_id=PAD_ID,
            unk_id=UNK_ID,
            bos_id=-1,
            eos_id=-1,
            # Control symbols reserve ids without being matched in text: a docstring that
            # literally contains "[EOS]_x" cannot inject the id the encoder pools on.
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
    except RuntimeError as e:
        if "Vocabulary size too high" not in str(e):
            raise
        raise ValueError(
            f"The training texts are too small/repetitive for vocab_size={vocab_size} "
            f"({e}); lower vocab_size or train on more text (max_texts={max_texts})."
        ) from e
    return model.getvalue()


def to_tokenizers(model_proto: bytes) -> tokenizers.Tokenizer:
    """The `tokenizers` Unigram equivalent of a model written by ``train``.

    Learned pieces keep their scores; byte and reserved pieces are reachable by id only. The
    delimiters are
    registered as special added tokens (the form transformers and sentence-transformers read).
    """
    proto = sentencepiece_model_pb2.ModelProto()
    proto.ParseFromString(model_proto)
    for offset, piece in enumerate(DELIMITERS, start=2):
        if len(proto.pieces) <= offset or proto.pieces[offset].piece != piece:
            raise ValueError(
                f"SentencePiece model has no control symbol {piece!r} at id {offset}; it was not "
                "trained by cpt-jax. Retrain it with Tokenizer.train."
            )
    # Byte and reserved pieces keep their names (byte fallback and the added tokens look them
    # up by name) but score so low that Viterbi never matches them in text.
    vocab = [(p.piece, p.score if p.type == _NORMAL else _NEVER) for p in proto.pieces]
    backend = tokenizers.Tokenizer(tokenizers.models.Unigram(vocab, unk_id=UNK_ID, byte_fallback=True))
    # SentencePiece's dummy prefix and whitespace escaping, applied per text segment.
    backend.normalizer = tokenizers.normalizers.Sequence(
        [tokenizers.normalizers.Prepend(_SPACE), tokenizers.normalizers.Replace(" ", _SPACE)]
    )
    backend.decoder = tokenizers.decoders.Sequence(
        [
            tokenizers.decoders.Replace(_SPACE, " "),
            tokenizers.decoders.ByteFallback(),
            tokenizers.decoders.Fuse(),
            tokenizers.decoders.Strip(" ", 1, 0),
        ]
    )
    backend.add_special_tokens(
        [tokenizers.AddedToken(t, special=True, normalized=False) for t in ("<pad>", "<unk>", *DELIMITERS)]
    )
    return backend
