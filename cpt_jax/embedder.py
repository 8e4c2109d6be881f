"""Embedder: a trained (or freshly initialised) encoder plus its tokenizer, as `encode(texts)`.

Texts are tokenised with the side's delimiters, sorted by length and padded to bucket lengths
about 1.25x apart (multiples of 16), so a handful of compiled shapes serve any input and padding
adds at most about a quarter; on CPU a batch holds at most CPU_BATCH_TOKENS tokens (fewer rows
for longer buckets); batches are split over all local devices and dispatched up to 8 ahead of
fetching their results. `encode` has the shape MTEB expects: a list of strings in,
float32 [n, d] out.
"""

from __future__ import annotations

import collections
import copy
import difflib
import hashlib
import os
from collections.abc import Iterator, Sequence
from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
from jax.sharding import Mesh, NamedSharding
from jax.sharding import PartitionSpec as P

from cpt_jax import checkpoint
from cpt_jax.data.tokenizer import RUN_DIR_NAME, Tokenizer, load_run_tokenizer
from cpt_jax.data.tokenizer_files import check_fingerprint
from cpt_jax.interop import pretrained
from cpt_jax.model import LoraConfig, ModelConfig, embed, init_boxed_adapters, init_params
from cpt_jax.model.lora import merge
from cpt_jax.model.pooling import nested_prefix

SIDES = {"query": "x", "document": "y", "x": "x", "y": "y"}
_RECENT_BYTES = 64 << 20
# Tokens per encoding batch on CPU. XLA:CPU takes each buffer of a call from the host malloc, and
# glibc maps a buffer past its mmap threshold (at most 32 MiB) afresh on every call, faulting in
# every page: long, wide batches spend much of their time there. Batches this small keep the
# buffers reused and in cache (bench/encode_batching.py; its numbers are in bench/README.md).
CPU_BATCH_TOKENS = 2048


def bucket_lengths(max_len: int, smallest: int = 16, growth: float = 1.25, multiple: int = 16) -> list[int]:
    """Padded lengths from `smallest` up to max_len (always included), each about `growth` x the
    previous, rounded up to a multiple of `multiple`: O(log max_len) compiled shapes, and a text
    is padded by at most about growth x."""
    lengths, n = [], smallest
    while n < max_len:
        lengths.append(n)
        n = max(n + multiple, -(-int(n * growth) // multiple) * multiple)
    return lengths + [max_len]


def padded_length(length: int, buckets: Sequence[int]) -> int:
    """The smallest bucket that holds `length` tokens (buckets ascending, as bucket_lengths gives them)."""
    return next(b for b in buckets if b >= length)


def batch_rows(width: int, rows: int, max_tokens: int | None, multiple: int = 1) -> int:
    """Rows of a batch padded to `width` tokens: `rows`, or fewer so that rows * width stays within
    max_tokens (None: no bound), rounded down to a multiple of `multiple` (the devices the rows
    are split over) and never below it."""
    if max_tokens is not None:
        rows = min(rows, max_tokens // width)
    return max(multiple, rows - rows % multiple)


def padded_batches(
    tokens: np.ndarray, mask: np.ndarray, max_len: int, rows: int,
    max_tokens: int | None = None, multiple: int = 1,
) -> Iterator[tuple[np.ndarray, np.ndarray, np.ndarray]]:
    """Tokenised texts [n, max_len] as batches, longest first, each padded to its bucket length:
    (indices into the texts, tokens, mask) [r, width], r = batch_rows(width, rows, max_tokens,
    multiple), one row count per bucket, so the compiled shapes stay one per bucket; rows past the
    texts get one token so pooling stays finite."""
    lengths = mask.sum(axis=1)
    order = np.argsort(-lengths, kind="stable")
    buckets = bucket_lengths(max_len)
    start = 0
    while start < len(tokens):
        # Sorted longest first: the batch's first text sets its width, and so its row count.
        width = padded_length(lengths[order[start]], buckets)
        r = batch_rows(width, rows, max_tokens, multiple)
        idx = order[start : start + r]
        start += r
        t = np.zeros((r, width), np.int32)
        m = np.zeros((r, width), np.int32)
        t[: len(idx)], m[: len(idx)] = tokens[idx, :width], mask[idx, :width]
        m[len(idx) :, 0] = 1
        yield idx, t, m


def default_batch_tokens() -> int | None:
    """The bound on tokens per encoding batch for the default backend: CPU_BATCH_TOKENS on CPU,
    none on accelerators (larger batches keep them busy)."""
    return CPU_BATCH_TOKENS if jax.default_backend() == "cpu" else None


def run_instructions(data_config: dict) -> dict[str, tuple[str, str]]:
    """Source name -> (x_prefix, y_prefix) of a run's DataConfig as its checkpoints store it
    (none for a run without instructions, or written before they existed)."""
    pairs = data_config.get("instructions") or ()
    names = [source.get("name", "") if isinstance(source, dict) else "" for source in data_config.get("sources", ())]
    return {name: (x, y) for name, (x, y) in zip(names, pairs) if name}


def common_instruction(instructions: dict[str, tuple[str, str]]) -> tuple[str, str]:
    """The one (x_prefix, y_prefix) every source shares, else ("", "")."""
    distinct = set(instructions.values())
    return distinct.pop() if len(distinct) == 1 else ("", "")


class Embedder:
    """Encodes texts into L2-normalised float32 embeddings with one model."""

    def __init__(
        self,
        model: ModelConfig,
        params: Any,
        tokenizer: Tokenizer,
        max_len: dict[str, int],
        instructions: dict[str, tuple[str, str]] | None = None,
    ) -> None:
        self.model = model
        self.tokenizer = tokenizer
        self.max_len = max_len  # per side ("x", "y"): the lengths the model was trained with
        # Source name -> (x_prefix, y_prefix) the run trained with (DataConfig.instructions).
        self.instructions = dict(instructions or {})
        # What encode puts before every text of a side: the run's one instruction if all its
        # sources share it, else none until with_instruction / for_task picks a source's.
        self.prefix = dict(zip("xy", common_instruction(self.instructions)))
        self.truncate_dim: int | None = None  # with_dim: Matryoshka prefix of the embedding
        self.batch_tokens = default_batch_tokens()  # with_batch_tokens: the bound on a batch's tokens
        # The last full-width results, shared by every copy (with_dim of one model re-encodes nothing).
        self._recent: collections.OrderedDict = collections.OrderedDict()
        self._mesh = Mesh(np.array(jax.local_devices()), ("batch",))
        self.params = jax.device_put(params, NamedSharding(self._mesh, P()))
        self._embed = jax.jit(
            lambda p, t, m: embed(p, model, t, m),
            in_shardings=(NamedSharding(self._mesh, P()),) + (NamedSharding(self._mesh, P("batch")),) * 2,
        )

    @classmethod
    def load(
        cls, run_dir: str, step: int | None = None, dtype: str | None = None, *, allow_tokenizer_change: bool = False
    ) -> Embedder:
        """The encoder of a training run's latest (or given) checkpoint, with its tokenizer.

        dtype: the compute dtype to encode in (default: the run's ModelConfig.dtype). "bfloat16"
        encodes faster on hardware with bfloat16 dot instructions (e.g. AVX512_BF16; bench/README.md
        measures it); parameters stay float32 and embeddings come out float32.

        The run's tokenizer is checked against its checksums (TokenizerIntegrityError) and, when the
        checkpoint's meta records one ("tokenizer_sha256"), against the fingerprint of the tokenizer
        it was trained with: a different one raises TokenizerMismatchError before any parameter is
        read. ``allow_tokenizer_change=True`` encodes with the current tokenizer anyway (an
        experiment on purpose; its embeddings are not the trained model's). Checkpoints written
        before fingerprints have no such key and load as before.
        """
        step, meta = checkpoint.read_meta(run_dir, step)
        tokenizer = load_run_tokenizer(run_dir)
        if not allow_tokenizer_change:
            check_fingerprint(
                tokenizer, meta.get("tokenizer_sha256"),
                f"Checkpoint {step} of {run_dir} (tokenizer {os.path.join(run_dir, RUN_DIR_NAME)})",
                override="or pass allow_tokenizer_change=True to Embedder.load to encode with the current one anyway",
            )
        model = ModelConfig(**{**meta["model_config"], **({"dtype": dtype} if dtype else {})})
        if meta.get("lora"):  # adapters on a frozen base: merged into one encoder tree
            params = _merged_lora_params(run_dir, step, meta, model, tokenizer)
        else:
            params = _restore(run_dir, step, "encoder", jax.eval_shape(lambda: init_params(model, jax.random.key(0))))
        data = meta["data_config"]
        return cls(model, params, tokenizer, {"x": data["max_len_x"], "y": data["max_len_y"]}, run_instructions(data))

    @classmethod
    def lora_base(cls, run_dir: str, dtype: str | None = None) -> Embedder | None:
        """The frozen base a LoRA run adapts (its checkpoints name it; the imported model or the
        seed's random encoder), or None for a run that trained every weight."""
        _, meta = checkpoint.read_meta(run_dir, None)
        if not meta.get("lora"):
            return None
        model = ModelConfig(**{**meta["model_config"], **({"dtype": dtype} if dtype else {})})
        tokenizer = load_run_tokenizer(run_dir)
        data = meta["data_config"]
        return cls(model, lora_base_params(run_dir, meta, model, tokenizer), tokenizer,
                   {"x": data["max_len_x"], "y": data["max_len_y"]}, run_instructions(data))

    @classmethod
    def pretrained_start(cls, run_dir: str, dtype: str | None = None) -> Embedder | None:
        """The model a run started from (its TrainConfig.init_from) as the run imported it: the
        weights of its checkpoint 0, rebuilt from the pretrained directory with the run's tokenizer,
        so the run need not keep checkpoint 0. None for a run that did not start from one (or was
        written before checkpoints recorded ``init_from``)."""
        _, meta = checkpoint.read_meta(run_dir, None)
        source = meta.get("init_from")
        if not source:
            return None
        model_dir = pretrained.resolve(source)
        if not os.path.isdir(model_dir):
            raise FileNotFoundError(
                f"{run_dir} started from {source!r}, which is not a directory here ({model_dir}); install or copy "
                "that model to score the start, or leave the start out (evaluate --no_baselines)."
            )
        model = ModelConfig(**{**meta["model_config"], **({"dtype": dtype} if dtype else {})})
        tokenizer = load_run_tokenizer(run_dir)
        data = meta["data_config"]
        params = pretrained.encoder_params(model_dir, model, tokenizer)
        return cls(model, params, tokenizer, {"x": data["max_len_x"], "y": data["max_len_y"]}, run_instructions(data))

    @classmethod
    def random_init(
        cls, model: ModelConfig, tokenizer: Tokenizer, max_len: dict[str, int],
        instructions: dict[str, tuple[str, str]] | None = None, seed: int = 0,
    ) -> Embedder:
        """The same architecture at initialisation: the floor any training must beat (reading the
        same instructions as the run it is compared with)."""
        return cls(model, init_params(model, jax.random.key(seed)), tokenizer, max_len, instructions)

    def with_max_len(self, max_len: int) -> Embedder:
        """The same model encoding both sides at up to ``max_len`` tokens (delimiters included)
        instead of the lengths it was trained with: a model trained on truncated pairs may read
        longer texts, up to its position table (ModelConfig.max_len). Shares the parameters."""
        if not 3 <= max_len <= self.model.max_len:
            raise ValueError(
                f"max_len={max_len}: an embedder of this model reads 3 to {self.model.max_len} tokens "
                f"(ModelConfig.max_len, its position table); pass a length in that range."
            )
        other = copy.copy(self)  # the same parameters, mesh and compiled encode
        other.max_len = {"x": max_len, "y": max_len}
        return other

    def with_dim(self, dim: int) -> Embedder:
        """The same model's embeddings cut to their first ``dim`` values and L2-normalised again: the
        nested embeddings of a run trained with LossConfig.matryoshka_dims (any run may be cut; one
        trained for it loses less). Shares the parameters, and the encodings of its copies."""
        if not 1 <= dim <= self.model.d_model:
            raise ValueError(
                f"dim={dim}: this model's embeddings have {self.model.d_model} values (ModelConfig.d_model); "
                f"pass a dimension from 1 to {self.model.d_model}."
            )
        other = copy.copy(self)
        other.truncate_dim = None if dim == self.model.d_model else dim
        return other

    def with_batch_tokens(self, batch_tokens: int | None) -> Embedder:
        """The same model encoding batches of at most ``batch_tokens`` tokens (rows x padded width;
        at least one row per device), or of ``batch_size`` rows whatever their length (None). The
        default is default_batch_tokens(). Shares the parameters."""
        if batch_tokens is not None and batch_tokens < 1:
            raise ValueError(f"batch_tokens={batch_tokens}: pass a positive number of tokens per batch, or None for no bound.")
        other = copy.copy(self)
        other.batch_tokens = batch_tokens
        return other

    def with_instruction(self, source: str) -> Embedder:
        """The same model putting source ``source``'s instruction (DataConfig.instructions of the
        run) before every text, as training did. Shares the parameters."""
        if source not in self.instructions:
            known = sorted(self.instructions)
            hint = difflib.get_close_matches(source, known, n=1)
            raise ValueError(
                f"no instruction for source {source!r}: this run's sources with instructions are {known or 'none'}"
                + (f"; did you mean {hint[0]!r}?" if hint else ".")
            )
        other = copy.copy(self)
        other.prefix = dict(zip("xy", self.instructions[source]))
        return other

    def for_task(self, name: str) -> Embedder:
        """The encoder evaluation uses for a task named ``name``: with the instruction of the run's
        source of that name (e.g. task site_code, source site_code), else this one."""
        return self.with_instruction(name) if name in self.instructions else self

    @property
    def dim(self) -> int:
        return self.truncate_dim or self.model.d_model

    def encode(
        self,
        texts: Sequence[str],
        side: str | None = None,
        batch_size: int = 64,
        prompt_type: Any = None,
        **_: Any,
    ) -> np.ndarray:
        """texts -> float32 [len(texts), d_model]. side: "query"/"x" or "document"/"y" (default).

        MTEB calls encode(texts, task_name=..., prompt_type=PromptType.query | .document, ...):
        without an explicit side, a query prompt_type selects the query side; other kwargs are ignored.
        """
        if side is None:
            side = "query" if str(getattr(prompt_type, "value", prompt_type)) == "query" else "document"
        if side not in SIDES:
            raise ValueError(f"side={side!r}; use 'query' (x side) or 'document' (y side).")
        s = SIDES[side]
        full = self._encode_full(texts, s, batch_size)
        return full if self.truncate_dim is None else nested_prefix(full, self.truncate_dim)

    def _encode_full(self, texts: Sequence[str], s: str, batch_size: int) -> np.ndarray:
        """float32 [len(texts), d_model] of side s ("x" / "y"); the last 4 results up to 64 MiB each are
        kept (keyed by everything that shapes them), so copies that differ only in truncate_dim encode once."""
        digest = hashlib.sha256("\0".join(texts).encode("utf-8", "surrogatepass")).hexdigest()
        key = (s, self.prefix[s], self.max_len[s], len(texts), digest)
        if key in self._recent:
            self._recent.move_to_end(key)
            return self._recent[key].copy()  # a copy: callers may write into what encode returns
        out = self._encode_batches(texts, s, batch_size)
        if out.nbytes <= _RECENT_BYTES:
            self._recent[key] = out.copy()
            while len(self._recent) > 4:
                self._recent.popitem(last=False)
        return out

    def _encode_batches(self, texts: Sequence[str], s: str, batch_size: int) -> np.ndarray:
        n_dev = len(jax.local_devices())
        batch_size = max(n_dev, batch_size - batch_size % n_dev)
        prefix = self.prefix[s]
        texts = [prefix + t for t in texts] if prefix else list(texts)
        tokens, mask = self.tokenizer.encode(texts, s, self.max_len[s])
        out = np.zeros((len(texts), self.model.d_model), np.float32)
        pending: list[tuple[np.ndarray, jax.Array]] = []  # dispatched, not yet fetched (at most 8)
        for idx, t, m in padded_batches(tokens, mask, self.max_len[s], batch_size, self.batch_tokens, n_dev):
            pending.append((idx, self._embed(self.params, t, m)))
            if len(pending) > 8:  # bounded: device results never hold more than 8 batches
                rows, result = pending.pop(0)
                out[rows] = np.asarray(result)[: len(rows)]
        for rows, result in pending:
            out[rows] = np.asarray(result)[: len(rows)]
        return out


def _restore(run_dir: str, step: int, name: str, abstract: Any) -> Any:
    """params[name] of checkpoint `step` onto the first local device (abstract: its shapes)."""
    single = jax.sharding.SingleDeviceSharding(jax.local_devices()[0])
    target = {
        name: checkpoint.abstract_like(abstract, jax.tree.map(lambda _: single, abstract)),
        "log_temperature": jax.ShapeDtypeStruct((), jnp.float32, sharding=single),
    }
    return checkpoint.restore_params(run_dir, step, target)[name]


def lora_config(meta: dict[str, Any]) -> LoraConfig:
    """The LoraConfig a checkpoint's meta records (train/restore.lora_meta)."""
    return LoraConfig(**{k: meta["lora"][k] for k in ("rank", "alpha", "dropout", "targets")})


def lora_base_params(run_dir: str, meta: dict[str, Any], model: ModelConfig, tokenizer: Tokenizer) -> Any:
    """Host encoder tree of the base a LoRA run's checkpoints name: the imported model, checked
    against the weights' SHA-256 the run recorded, or the random encoder of the run's seed."""
    base = meta["lora"]["base"]
    if "seed" in base:
        return jax.tree.map(np.asarray, init_params(model, jax.random.key(base["seed"])))
    source = meta.get("init_from", "")
    model_dir = pretrained.resolve(source)
    if not os.path.isdir(model_dir):
        raise FileNotFoundError(
            f"{run_dir} is a LoRA run whose adapters belong to {source!r}, which is not a directory here "
            f"({model_dir}); install or copy that model to load the run."
        )
    found = pretrained.weights_sha256(model_dir)
    if found != base["weights_sha256"]:
        raise ValueError(
            f"{run_dir} is a LoRA run trained on the weights of {source!r} (SHA-256 {base['weights_sha256'][:16]}...), "
            f"but {model_dir} now holds other weights ({found[:16]}...), on which its adapters mean nothing. "
            "Restore the model the run was trained on (e.g. reinstall the same package version)."
        )
    return pretrained.encoder_params(model_dir, model, tokenizer)


def load_lora_adapters(run_dir: str, step: int | None = None) -> tuple[LoraConfig, Any]:
    """(LoraConfig, host adapter tree) of a LoRA run's checkpoint (latest or `step`)."""
    step, meta = checkpoint.read_meta(run_dir, step)
    if not meta.get("lora"):
        raise ValueError(f"{run_dir} trained every weight (TrainConfig.lora was off): it has no adapters to write; "
                         "export it without --peft.")
    model, lora = ModelConfig(**meta["model_config"]), lora_config(meta)
    abstract = jax.eval_shape(lambda: nn.meta.unbox(init_boxed_adapters(model, lora, jax.random.key(0))))
    return lora, jax.tree.map(np.asarray, jax.device_get(_restore(run_dir, step, "lora", abstract)))


def _merged_lora_params(run_dir: str, step: int, meta: dict[str, Any], model: ModelConfig, tokenizer: Tokenizer) -> Any:
    """A LoRA checkpoint's adapters merged into its base (model/lora.merge): one plain encoder tree."""
    lora, adapters = load_lora_adapters(run_dir, step)
    return merge(lora_base_params(run_dir, meta, model, tokenizer), adapters, lora)
