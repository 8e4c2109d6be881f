"""TrainConfig: everything one training run is told, built by gin at the edge (cpt_jax/cli/flags.py)."""

from __future__ import annotations

import dataclasses
from typing import ClassVar

import jax

from cpt_jax.data.config import DataConfig, check_stream_layout, require_sources
from cpt_jax.loss import LossConfig
from cpt_jax.model import LoraConfig, ModelConfig
from cpt_jax.parallel.mesh import MESH_AXES, MeshConfig
from cpt_jax.train.evaluation import EvalConfig
from cpt_jax.train.optimizer import OptimizerConfig
from cpt_jax.train.state import TemperatureConfig
from cpt_jax.typecheck import SEED, Bound, at_least, check_field_types


@dataclasses.dataclass(frozen=True, kw_only=True)
class TrainConfig:
    """One training run.

    output_dir: where the tokenizer, operative config, TensorBoard events and checkpoints go.
    global_batch_size: pairs per step over all processes (the N of the N x N logits).
    init_from: a Hugging Face model directory (config.json, safetensors, tokenizer.json) of a
      GPT-2, Llama, Qwen2 or BERT model to start from, as the paper starts from GPT-3/Codex.
      Its tokenizer is used (delimiters added) and its architecture replaces ModelConfig's
      shape fields, which must be left unset or agree; dropout, dtype, scan_layers, scan_unroll and
      remat still come from ModelConfig. The imported weights are saved as checkpoint 0.
      pkg://PACKAGE/SUBDIR names a directory inside an installed package.
    tokenizer_path: an existing tokenizer (a cpt-jax tokenizer directory, a SentencePiece .model
      written by cpt-jax, or a Hugging Face model directory; pkg:// as for init_from), or None to
      train one on the train split; either way it is saved in <output_dir>/tokenizer/.
    shared_delimiters: both sides get [SOS]_x .. [EOS]_x instead of their own pair (the paper's
      ablation); saved with the run's tokenizer, so evaluation, embedding and export follow.
    loss: false-negative masking and Matryoshka terms in the contrastive loss (loss/config.LossConfig;
      off by default).
    evaluation: held-out scores every K steps and the best checkpoint kept (train/evaluation.EvalConfig;
      off by default).
    lora: low-rank adapters on the projections, the base frozen (model/lora.LoraConfig; rank 0, the
      default, trains every weight). The base is init_from's model, or without it the encoder of
      `seed`; checkpoints hold the adapters and name that base.
    sharding_rules: logical-axis -> mesh-axis pairs; None for parallel.rules.DEFAULT_RULES.
    grad_cache_chunk_size: 0 for the plain step; else GradCache with chunks of this many pairs
      (over all devices): activation memory is that of one chunk, the gradient is unchanged.
    pack_sequences: place several x (and y) sequences in each row instead of padding every one
      to its max_len (data/packing.py): the encoder computes about as many positions as there are
      real tokens, with the same embeddings. Hard negatives stay one to a row. With dropout > 0
      the masks fall on the packed rows, which depend on the batch shards and the data seen since
      the (re)start: such runs agree across layouts and restarts in distribution, not exactly.
    max_consecutive_nonfinite: steps with a NaN/inf loss or gradient are skipped (no update);
      after this many in a row the run saves the last good state and stops. Checked at each
      log step, so the stop can come up to log_every - 1 steps later.
    resume_overrides: settings a resumed run may change although its checkpoints were written
      with other values, each named as in the refusal that lists them (e.g. "ModelConfig.pooling",
      "OptimizerConfig", "tokenizer"). Without it, resuming with settings that change what the
      saved weights or optimizer state mean is refused before anything is read or moved. Naming
      "OptimizerConfig" restores the parameters and starts a fresh optimizer state.
    """

    output_dir: str
    model: ModelConfig
    data: DataConfig
    num_steps: int
    global_batch_size: int
    mesh: MeshConfig = MeshConfig()
    optimizer: OptimizerConfig = OptimizerConfig()
    temperature: TemperatureConfig = TemperatureConfig()
    loss: LossConfig = LossConfig()
    evaluation: EvalConfig = EvalConfig()
    lora: LoraConfig = LoraConfig()
    sharding_rules: tuple | None = None
    seed: int = 0
    log_every: int = 50
    checkpoint_every: int = 1000
    keep_checkpoints: int = 3
    init_from: str | None = None
    tokenizer_path: str | None = None
    tokenizer_max_texts: int = 50_000
    grad_cache_chunk_size: int = 0
    pack_sequences: bool = False
    max_consecutive_nonfinite: int = 20
    shared_delimiters: bool = False
    resume_overrides: tuple = ()

    BOUNDS: ClassVar[dict[str, Bound]] = {
        "num_steps": at_least(1, "optimizer steps of the run"),
        "global_batch_size": at_least(1, "pairs per step over all processes"),
        "seed": SEED,
        "log_every": at_least(1, "steps between logged metrics"),
        "checkpoint_every": at_least(1, "steps between checkpoints; the last step is saved either way"),
        "keep_checkpoints": at_least(1, "checkpoints kept on disk; 0 would keep none, not even the last"),
        "tokenizer_max_texts": at_least(1, "texts a new tokenizer is trained on"),
        "grad_cache_chunk_size": at_least(0, "pairs per GradCache chunk; 0 for the plain step"),
        "max_consecutive_nonfinite": at_least(1, "NaN/inf steps in a row before the run stops"),
    }

    def __post_init__(self) -> None:
        check_field_types(self)  # types (the nested configs' too), then the BOUNDS above


def validate(config: TrainConfig, num_devices: int, reads_data: bool = True) -> None:
    """Fail before any data preparation or compile, naming the bad value and the fix. reads_data:
    the run reads DataConfig.sources (False for a run whose batches its caller makes)."""
    if reads_data:
        require_sources(config.data)
    config.mesh.resolve(num_devices)
    for side in ("x", "y"):
        length = getattr(config.data, f"max_len_{side}")
        if length > config.model.max_len:
            raise ValueError(
                f"DataConfig.max_len_{side}={length} exceeds ModelConfig.max_len={config.model.max_len}; "
                f"lower the data length or raise the model's."
            )
    dims = config.loss.matryoshka_dims
    if dims and dims[0] > config.model.d_model:
        raise ValueError(
            f"LossConfig.matryoshka_dims={dims} starts above the embedding size ModelConfig.d_model="
            f"{config.model.d_model}; list dimensions up to {config.model.d_model} (largest first)."
        )
    if config.init_from and config.tokenizer_path:
        raise ValueError(
            "TrainConfig.init_from brings its own tokenizer; unset TrainConfig.tokenizer_path."
        )
    chunk = config.grad_cache_chunk_size
    if chunk and config.global_batch_size % chunk:
        raise ValueError(
            f"TrainConfig.global_batch_size={config.global_batch_size} must be a multiple of "
            f"TrainConfig.grad_cache_chunk_size={chunk} (0 disables gradient caching)."
        )
    data, fsdp, _ = config.mesh.resolve(num_devices)
    shards = data * fsdp
    for name in ("global_batch_size", "grad_cache_chunk_size"):
        rows = getattr(config, name)
        if rows % shards:  # 0 (no GradCache) passes
            raise ValueError(
                f"TrainConfig.{name}={rows} is not divisible by the {shards} batch shards "
                f"(mesh data x fsdp = {data} x {fsdp}); use a multiple of {shards}."
            )
    groups = shards * (config.global_batch_size // chunk if chunk else 1)
    if config.pack_sequences and groups % jax.process_count():
        raise ValueError(
            f"TrainConfig.pack_sequences needs the {groups} batch shards x GradCache chunks to split evenly "
            f"over the {jax.process_count()} processes; give each process whole batch shards (mesh data x fsdp)."
        )
    _check_sharding_rules(config.sharding_rules)
    if config.global_batch_size % jax.process_count():
        raise ValueError(
            f"TrainConfig.global_batch_size={config.global_batch_size} must be divisible by the "
            f"{jax.process_count()} processes."
        )
    check_stream_layout(config.data, config.global_batch_size, jax.process_count())


def _check_sharding_rules(rules: tuple | None) -> None:
    """ValueError unless TrainConfig.sharding_rules is None or (logical_name, mesh_axes) pairs whose
    mesh_axes are None, a mesh axis, or a tuple of mesh axes."""
    if rules is None:
        return
    example = "e.g. (('embed', 'fsdp'), ('act_batch', ('data', 'fsdp')))"
    if not isinstance(rules, (tuple, list)):
        raise ValueError(
            f"TrainConfig.sharding_rules={rules!r} must be a tuple of (logical_name, mesh_axes) pairs, {example}."
        )
    for rule in rules:
        if not isinstance(rule, (tuple, list)) or len(rule) != 2 or not isinstance(rule[0], str):
            raise ValueError(
                f"TrainConfig.sharding_rules: {rule!r} is not a (logical_name, mesh_axes) pair; {example}."
            )
        axes = rule[1]
        named = () if axes is None else (axes,) if isinstance(axes, str) else axes
        if not isinstance(named, (tuple, list)) or any(a not in MESH_AXES for a in named):
            raise ValueError(
                f"TrainConfig.sharding_rules: {rule!r} maps {rule[0]!r} to {axes!r}; give None, one of the "
                f"mesh axes {MESH_AXES}, or a tuple of them."
            )
