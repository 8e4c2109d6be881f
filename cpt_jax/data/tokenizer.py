"""The run's tokenizer: a Hugging Face `tokenizers` model plus the paper's per-side delimiters.

Every text is encoded as ``prefix + [SOS]_side + content + [EOS]_side + suffix``, right-padded,
where prefix and suffix are the model's own special tokens ([CLS] and [SEP] for BERT, nothing
for GPT-2, Qwen2 or a from-scratch vocabulary). Truncation drops content only, so the EOS the
encoder pools on is always present.

Two sources, one encoder:
* ``Tokenizer.train``: a SentencePiece unigram vocabulary learned on the run's texts
  (sentencepiece_model.py), encoded through its exact `tokenizers` form.
* ``Tokenizer.from_pretrained(hf_dir)``: a Hugging Face model's tokenizer.json; the four
  delimiters become new special tokens whose embedding rows start as copies of the model's
  own start/end rows (``init_rows``), so an imported model encodes like the original.

Content is encoded with special-token matching off, so a docstring that literally contains
"[EOS]_x" or "[CLS]" stays text and cannot inject the id the encoder pools on. The exported
tokenizer (``save_for_transformers``) renders the delimiters as strings through a chat
template, so there such literal text would match; that is the one documented difference.

With ``shared_delimiters`` both sides use the x pair ([SOS]_x .. [EOS]_x), the paper's
ablation of side-specific delimiters; the flag is saved with the tokenizer, so training,
evaluation, embedding and the exported chat template all encode the same way.

A run directory keeps its tokenizer in ``<run_dir>/tokenizer/`` (tokenizer.json and
cpt_tokenizer.json), so checkpoints are self-contained.

A saved tokenizer directory is written whole or not at all (``atomic.staged_dir``: filled as a
temporary sibling, renamed into place when complete), with ``checksums.json``: size and SHA-256
of each of its files, in the style of the checkpoint manifests. ``load`` verifies it first and
raises TokenizerIntegrityError naming any missing, truncated or edited file; a directory without
one (saved before checksums existed) loads with an UnverifiedTokenizerWarning. ``fingerprint()``
identifies the encoding (tokenizer.json and cpt_tokenizer.json), so a checkpoint can record the
vocabulary it was trained with and refuse another.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
from collections.abc import Sequence
from typing import Any, Literal

import numpy as np
import tokenizers

from cpt_jax import atomic
from cpt_jax.data import sentencepiece_model
from cpt_jax.data.sentencepiece_model import DELIMITERS
from cpt_jax.data.tokenizer_files import (
    MANIFEST_FILE,
    TokenizerIntegrityError,
    read_bytes,
    read_json,
    unparsable,
    verify,
    write_manifest,
)

Side = Literal["x", "y"]
RUN_DIR_NAME = "tokenizer"
_BACKEND_FILE = "tokenizer.json"
_META_FILE = "cpt_tokenizer.json"
_SENTENCEPIECE_FILE = "sentencepiece.model"
# The files that decide how a text is encoded: what fingerprint() hashes.
FINGERPRINT_FILES = (_BACKEND_FILE, _META_FILE)
# tokenizer_config.json keys whose rows seed the new delimiter rows, in order of preference.
_START_TOKENS = ("cls_token", "bos_token", "eos_token")
_END_TOKENS = ("sep_token", "eos_token", "bos_token")


def _fingerprint_of(files: dict[str, bytes]) -> str:
    """SHA-256 over the encoding files, each framed by its name and length."""
    digest = hashlib.sha256()
    for name in FINGERPRINT_FILES:
        data = files[name]
        digest.update(f"{name}\0{len(data)}\0".encode())
        digest.update(data)
    return digest.hexdigest()


def _check_side(side: str) -> None:
    if side not in ("x", "y"):
        raise ValueError(f"side must be 'x' or 'y', got {side!r}.")


class Tokenizer:
    """Batch encoding to fixed length with per-side delimiters.

    Args:
      backend: a `tokenizers.Tokenizer` that already holds the four DELIMITERS as tokens.
      prefix_ids / suffix_ids: the model's special tokens around every text.
      pad_id: id written after the last real token (masked out, so only cosmetic).
      init_rows: delimiter id -> the embedding row it starts as (None: the mean row); only
        meaningful for a pretrained model whose table has no rows for the delimiters yet.
      shared_delimiters: both sides use [SOS]_x / [EOS]_x (the y pair stays in the vocabulary, unused).
    """

    def __init__(
        self,
        backend: tokenizers.Tokenizer,
        prefix_ids: Sequence[int] = (),
        suffix_ids: Sequence[int] = (),
        pad_id: int = 0,
        init_rows: dict[int, int | None] | None = None,
        shared_delimiters: bool = False,
    ) -> None:
        missing = [d for d in DELIMITERS if backend.token_to_id(d) is None]
        if missing:
            raise ValueError(f"Tokenizer has no delimiter tokens {missing}; build it with Tokenizer.train or from_pretrained.")
        # A copy so the caller's object keeps its padding, truncation and special-token matching.
        self._backend = tokenizers.Tokenizer.from_str(backend.to_str())
        self._backend.no_padding()
        self._backend.no_truncation()
        self._backend.encode_special_tokens = True  # literal "[SOS]_x" in text stays text
        self._ids = {d: backend.token_to_id(d) for d in DELIMITERS}
        self.prefix_ids = [int(i) for i in prefix_ids]
        self.suffix_ids = [int(i) for i in suffix_ids]
        self.pad_id = int(pad_id)
        self.init_rows = dict(init_rows or {})
        self.shared_delimiters = bool(shared_delimiters)
        # (fingerprint of the state at load, fingerprint of the loaded files' bytes); see fingerprint().
        self._loaded: tuple[str, str] | None = None

    # ------------------------------------------------------------------ construction

    @classmethod
    def train(cls, texts: Any, vocab_size: int, out_dir: str, **kwargs: Any) -> Tokenizer:
        """Learns a SentencePiece unigram vocabulary and saves the tokenizer to ``out_dir``.

        kwargs go to ``sentencepiece_model.train`` (max_texts, seed, num_threads).
        """
        proto = sentencepiece_model.train(texts, vocab_size, **kwargs)
        tokenizer = cls.from_sentencepiece(proto)
        # sentencepiece.model is kept for provenance; the run encodes through tokenizer.json.
        tokenizer._save(out_dir, {_SENTENCEPIECE_FILE: proto})
        return tokenizer

    @classmethod
    def from_sentencepiece(cls, model_proto: bytes) -> Tokenizer:
        return cls(sentencepiece_model.to_tokenizers(model_proto), pad_id=sentencepiece_model.PAD_ID)

    @classmethod
    def from_pretrained(cls, model_dir: str) -> Tokenizer:
        """A Hugging Face model's fast tokenizer (tokenizer.json) with the delimiters added."""
        path = os.path.join(model_dir, _BACKEND_FILE)
        if not os.path.exists(path):
            raise FileNotFoundError(
                f"No {_BACKEND_FILE} in {model_dir}; cpt-jax reads fast tokenizers only. Write one with "
                "transformers.AutoTokenizer.from_pretrained(DIR).save_pretrained(DIR)."
            )
        backend = _parse_backend(path, read_bytes(path))
        backend.no_padding()
        backend.no_truncation()
        prefix, suffix = _special_affixes(backend)
        config = read_json(os.path.join(model_dir, "tokenizer_config.json"))
        special = {k: _token_id(backend, config.get(k)) for k in {*_START_TOKENS, *_END_TOKENS, "pad_token"}}
        backend.add_special_tokens([tokenizers.AddedToken(d, special=True, normalized=False) for d in DELIMITERS])
        start = next((special[k] for k in _START_TOKENS if special[k] is not None), None)
        end = next((special[k] for k in _END_TOKENS if special[k] is not None), None)
        init_rows = {backend.token_to_id(d): start if d.startswith("[SOS]") else end for d in DELIMITERS}
        pad = special["pad_token"] if special["pad_token"] is not None else (end or 0)
        return cls(backend, prefix, suffix, pad, init_rows)

    @classmethod
    def load(cls, path: str) -> Tokenizer:
        """A tokenizer saved by ``save``/``train``, a SentencePiece .model written by cpt-jax,
        or a Hugging Face model directory (delimiters added).

        A cpt-jax directory is checked against its checksums.json first (TokenizerIntegrityError
        naming each missing, truncated or edited file); without one it loads with an
        UnverifiedTokenizerWarning. A tokenizer.json that does not parse (half-written) raises
        TokenizerIntegrityError naming the file and the fix."""
        if os.path.isfile(os.path.join(path, _META_FILE)):
            verify(path)
            files = {name: read_bytes(os.path.join(path, name)) for name in FINGERPRINT_FILES}
            meta_path = os.path.join(path, _META_FILE)
            try:
                meta = json.loads(files[_META_FILE])
                init_rows = {int(k): v for k, v in meta["init_rows"].items()}
                affixes = meta["prefix_ids"], meta["suffix_ids"], meta["pad_id"]
            except (ValueError, KeyError, TypeError, AttributeError) as e:
                raise TokenizerIntegrityError(unparsable(meta_path, e)) from e
            backend = _parse_backend(os.path.join(path, _BACKEND_FILE), files[_BACKEND_FILE])
            tokenizer = cls(
                backend, *affixes, init_rows,
                shared_delimiters=meta.get("shared_delimiters", False),  # absent in tokenizers saved before the option
            )
            tokenizer._loaded = (_fingerprint_of(tokenizer._files()), _fingerprint_of(files))
            return tokenizer
        if os.path.isfile(path) and path.endswith(".model"):
            with open(path, "rb") as f:
                return cls.from_sentencepiece(f.read())
        if os.path.isfile(os.path.join(path, _BACKEND_FILE)):
            return cls.from_pretrained(path)
        raise FileNotFoundError(
            f"No tokenizer at {path}: expected a cpt-jax tokenizer directory ({_META_FILE}), a "
            "SentencePiece .model file, or a Hugging Face model directory with tokenizer.json. "
            "Train one with Tokenizer.train(iter_training_texts(...), vocab_size, out_dir)."
        )

    def _files(self) -> dict[str, bytes]:
        """The bytes ``save`` writes for this tokenizer: tokenizer.json and cpt_tokenizer.json."""
        meta = {
            "prefix_ids": self.prefix_ids,
            "suffix_ids": self.suffix_ids,
            "pad_id": self.pad_id,
            "init_rows": {str(k): v for k, v in self.init_rows.items()},
            "shared_delimiters": self.shared_delimiters,
        }
        return {
            _BACKEND_FILE: self._export_backend().to_str(pretty=True).encode(),
            _META_FILE: json.dumps(meta, indent=2).encode(),
        }

    def fingerprint(self) -> str:
        """SHA-256 (hex) identifying how this tokenizer encodes: over tokenizer.json and
        cpt_tokenizer.json (not sentencepiece.model, not the manifest).

        A tokenizer loaded from a directory and not changed since has the fingerprint of the
        files' bytes (so upgrading the `tokenizers` library, which may serialise differently,
        does not change it); any other tokenizer has that of the files ``save`` would write, which
        is what ``Tokenizer.load`` of the saved directory then reports."""
        current = _fingerprint_of(self._files())
        loaded = self._loaded
        return loaded[1] if loaded is not None and loaded[0] == current else current

    def save(self, out_dir: str) -> None:
        """Writes tokenizer.json, cpt_tokenizer.json and checksums.json to ``out_dir``, all at
        once: the directory is filled as a temporary sibling and renamed into place, so a crash
        or a full disk leaves the previous ``out_dir`` (or none), never half a tokenizer. Other
        files already in ``out_dir`` (sentencepiece.model) are kept, and checksummed too."""
        self._save(out_dir, {})

    def _save(self, out_dir: str, extra: dict[str, bytes]) -> None:
        files = {**self._files(), **extra}
        with atomic.staged_dir(out_dir) as tmp:
            if os.path.isdir(out_dir):
                for name in sorted(os.listdir(out_dir)):
                    if name in files or name == MANIFEST_FILE:
                        continue
                    src, dst = os.path.join(out_dir, name), os.path.join(tmp, name)
                    if os.path.isdir(src) and not os.path.islink(src):
                        shutil.copytree(src, dst, symlinks=True)
                    else:
                        shutil.copy2(src, dst, follow_symlinks=False)
            for name, data in files.items():
                with open(os.path.join(tmp, name), "wb") as f:
                    f.write(data)
            write_manifest(tmp)

    # ------------------------------------------------------------------ encoding

    @property
    def vocab_size(self) -> int:
        """Rows the embedding table needs: every id this tokenizer can emit."""
        return self._backend.get_vocab_size(with_added_tokens=True)

    def _delimiter_side(self, side: Side) -> Side:
        _check_side(side)
        return "x" if self.shared_delimiters else side

    def sos_id(self, side: Side) -> int:
        """The start delimiter this tokenizer writes for ``side`` ([SOS]_x for both when shared)."""
        return self._ids[f"[SOS]_{self._delimiter_side(side)}"]

    def eos_id(self, side: Side) -> int:
        """The end delimiter this tokenizer writes for ``side`` ([EOS]_x for both when shared)."""
        return self._ids[f"[EOS]_{self._delimiter_side(side)}"]

    def fixed_tokens(self, side: Side) -> tuple[list[int], list[int]]:
        """(ids before the content, ids after it) for one side."""
        return self.prefix_ids + [self.sos_id(side)], [self.eos_id(side)] + self.suffix_ids

    def encode(self, texts: Sequence[str], side: Side, max_len: int) -> tuple[np.ndarray, np.ndarray]:
        """Encodes ``texts`` as ``prefix [SOS]_side content [EOS]_side suffix``, right-padded.

        Returns:
          tokens: int32 [batch, max_len], ``pad_id`` after the last real token.
          mask: int32 [batch, max_len], 1 on real tokens, 0 on padding.
        """
        head, tail = self.fixed_tokens(side)
        room = max_len - len(head) - len(tail)
        if room < 0:
            raise ValueError(
                f"max_len={max_len} cannot hold the {len(head) + len(tail)} fixed tokens "
                f"(special tokens and delimiters) of side {side!r}; use >= {len(head) + len(tail)}."
            )
        tokens = np.full((len(texts), max_len), self.pad_id, np.int32)
        mask = np.zeros((len(texts), max_len), np.int32)
        for row, encoding in enumerate(self._backend.encode_batch(list(texts), add_special_tokens=False)):
            ids = head + encoding.ids[:room] + tail
            tokens[row, : len(ids)] = ids
            mask[row, : len(ids)] = 1
        return tokens, mask

    def decode(self, ids: Sequence[int] | np.ndarray) -> str:
        """Decodes one id sequence; pad, special and delimiter ids decode to nothing."""
        return self._backend.decode([int(i) for i in ids], skip_special_tokens=True)

    # ------------------------------------------------------------------ export

    def chat_template(self) -> str:
        """Jinja template that renders a text as this tokenizer encodes it, by task.

        sentence-transformers passes ``task`` ("query" -> x side, anything else -> y side),
        so ``encode_query`` / ``encode_document`` carry the side delimiters. It passes a prompt
        (an exported run's instruction) as a system message before the text; the template puts
        its content right before the text, inside the delimiters, as training did.
        """

        def render(side: Side) -> str:
            head, tail = self.fixed_tokens(side)
            as_text = lambda ids: "".join(self._backend.id_to_token(i) for i in ids)  # noqa: E731
            return as_text(head) + "{{ ns.prompt }}{{ message['content'] }}" + as_text(tail)

        return (
            "{%- set ns = namespace(prompt='') %}"
            "{%- for message in messages %}"
            "{%- if message['role'] == 'system' %}{%- set ns.prompt = ns.prompt + message['content'] %}"
            "{%- elif message['role'] == 'user' %}"
            "{%- if task == 'query' %}" + render("x") + "{%- else %}" + render("y") + "{%- endif %}"
            "{%- endif %}{%- endfor %}"
        )

    def save_for_transformers(self, out_dir: str, model_max_length: int) -> None:
        """tokenizer.json, tokenizer_config.json and chat_template.jinja for transformers."""
        from transformers import PreTrainedTokenizerFast

        fast = PreTrainedTokenizerFast(
            tokenizer_object=self._export_backend(),
            pad_token=self._backend.id_to_token(self.pad_id),
            model_max_length=model_max_length,
        )
        fast.chat_template = self.chat_template()
        fast.save_pretrained(out_dir)

    def _export_backend(self) -> tokenizers.Tokenizer:
        backend = tokenizers.Tokenizer.from_str(self._backend.to_str())
        backend.encode_special_tokens = False
        return backend


def load_run_tokenizer(run_dir: str) -> Tokenizer:
    """The tokenizer a training run saved (``<run_dir>/tokenizer/``; older runs: tokenizer.model)."""
    legacy = os.path.join(run_dir, "tokenizer.model")
    path = os.path.join(run_dir, RUN_DIR_NAME)
    return Tokenizer.load(legacy if os.path.exists(legacy) and not os.path.exists(path) else path)


def _parse_backend(path: str, data: bytes) -> tokenizers.Tokenizer:
    try:
        return tokenizers.Tokenizer.from_str(data.decode("utf-8"))
    except Exception as e:  # tokenizers raises a bare Exception ("EOF while parsing a string at line ...")
        raise TokenizerIntegrityError(unparsable(path, e)) from e


def _special_affixes(backend: tokenizers.Tokenizer) -> tuple[list[int], list[int]]:
    """The ids the tokenizer's post-processor puts before and after a single text."""
    probe = "a"
    bare = backend.encode(probe, add_special_tokens=False).ids
    full = backend.encode(probe, add_special_tokens=True).ids
    for start in range(len(full) - len(bare) + 1):
        if full[start : start + len(bare)] == bare:
            return full[:start], full[start + len(bare) :]
    raise ValueError("The tokenizer's post-processor rewrites the text itself; cpt-jax cannot wrap it with delimiters.")


def _token_id(backend: tokenizers.Tokenizer, token: Any) -> int | None:
    if isinstance(token, dict):  # {"content": "[CLS]", ...} in newer tokenizer_config files
        token = token.get("content")
    return backend.token_to_id(token) if isinstance(token, str) else None


