"""One run assembled: mesh, sharding rules, optimizer, state, compiled step, batch layout and data.

`build_run(config)` is the one place a run is put together; the loop (train/loop.py), bench/ and
the tests all call it, so what they time or check is what trains. It builds nothing of the data
stack until `Run.open_data` is called (the accelerator benchmarks run without TensorFlow or
grain), and it restores from a checkpointer when given one.
"""

from __future__ import annotations

import dataclasses
import math
import os
from collections.abc import Callable
from typing import Any

import jax
import numpy as np
import optax
from jax.experimental import multihost_utils
from jax.sharding import Mesh, NamedSharding

from cpt_jax.batch import PairBatch
from cpt_jax.checkpoint import Checkpointer
from cpt_jax.data.packing import BatchPacker
from cpt_jax.data.tokenizer import RUN_DIR_NAME, Tokenizer
from cpt_jax.interop import pretrained
from cpt_jax.parallel import runtime
from cpt_jax.parallel.mesh import BATCH_AXES, batch_size_per_shard, make_mesh
from cpt_jax.parallel.rules import Rules, batch_sharding, rules_from_config
from cpt_jax.train.config import TrainConfig, validate
from cpt_jax.train.optimizer import learning_rate, make_optimizer
from cpt_jax.train.restore import restore_or_init, run_meta
from cpt_jax.train.state import TrainState, create_train_state, train_state_from_params
from cpt_jax.train.step import StepContext, make_train_step

Step = Callable[[TrainState, PairBatch], tuple[TrainState, dict[str, jax.Array]]]


@dataclasses.dataclass
class Run:
    """A run ready to step. `state` is the state to start from (donated by the first step: keep the
    one `step` returns). `context` is what the step closes over (train/step.py). `layout` turns a process-local batch into the form the step was built for
    (packed with TrainConfig.pack_sequences: a stateful packer whose rows only grow)."""

    config: TrainConfig
    mesh: Mesh
    rules: Rules
    tx: optax.GradientTransformation
    state: TrainState
    shardings: TrainState
    context: StepContext
    step: Step
    layout: Callable[[PairBatch], PairBatch]
    meta: dict[str, Any] | None = None  # with a checkpointer: what its checkpoints record (restore.run_meta)

    @property
    def grad_cache_chunks(self) -> int:
        return self.context.grad_cache_chunks

    @property
    def batch_sharding(self) -> NamedSharding:
        """Every leaf of a global batch: rows (or packing groups) split over the data axes."""
        return batch_sharding(self.mesh, BATCH_AXES)

    @property
    def start_step(self) -> int:
        return int(jax.device_get(self.state.step))

    def learning_rate(self, step: Any) -> Any:
        return learning_rate(self.config.optimizer, self.config.num_steps, step)

    def to_global(self, local: PairBatch) -> PairBatch:
        """This process's rows (numpy) -> the global batch, laid out for the step."""
        sharding = self.batch_sharding
        return jax.tree.map(lambda v: jax.make_array_from_process_local_data(sharding, v), self.layout(local))

    def open_data(self, tokenizer: Tokenizer) -> Any:
        """This process's batches of the run's data (data/pipeline.Batches)."""
        from cpt_jax.data.pipeline import Batches  # the data stack loads only when data is read

        cfg = self.config
        return Batches(cfg.data, tokenizer, cfg.global_batch_size, jax.process_index(), jax.process_count())


def build_run(
    config: TrainConfig,
    *,
    checkpointer: Checkpointer | None = None,
    init_params: Any = None,
    devices: list | None = None,
    tokenizer_sha256: str | None = None,
) -> Run:
    """The run of `config` on `devices` (default: all): restored from the latest readable
    checkpoint of `checkpointer` when it has one (train/restore.py: `Run.meta`, what this run's
    checkpoints record about their arrays, is compared with the saved one's), else from
    `init_params` (a host encoder tree), else freshly initialised from TrainConfig.seed."""
    validate(config, len(devices) if devices is not None else jax.device_count(), reads_data=False)
    mesh = make_mesh(config.mesh, devices)
    batch_size_per_shard(mesh, config.global_batch_size)
    if config.grad_cache_chunk_size:
        batch_size_per_shard(mesh, config.grad_cache_chunk_size)  # every chunk splits over the shards
    ctx = step_context(config, mesh)
    rules, tx, chunks = ctx.rules, ctx.tx, ctx.grad_cache_chunks
    meta = None
    if checkpointer is not None:
        meta = run_meta(config, tx, tokenizer_sha256)
        state, shardings = restore_or_init(config, checkpointer, tx, mesh, rules, init_params, meta)
    elif init_params is not None:
        state, shardings = train_state_from_params(
            init_params, config.model, config.temperature, tx, mesh, rules, config.lora, config.seed
        )
    else:
        state, shardings = create_train_state(config.model, config.temperature, tx, mesh, rules, config.seed, config.lora)
    step = make_train_step(ctx, shardings, lambda s: learning_rate(config.optimizer, config.num_steps, s))
    layout = packer(mesh, chunks) if config.pack_sequences else (lambda local: local)
    return Run(config, mesh, rules, tx, state, shardings, ctx, step, layout, meta)


def step_context(config: TrainConfig, mesh: Mesh) -> StepContext:
    """What the step of `config` on `mesh` closes over (rules, optimizer, GradCache chunks, loss);
    build_run's, and the planner's (cpt_jax/plan compiles this step for a target mesh)."""
    chunks = config.global_batch_size // config.grad_cache_chunk_size if config.grad_cache_chunk_size else 1
    tx = make_optimizer(config.optimizer, config.num_steps)
    return StepContext(
        config.model, config.temperature, tx, mesh, rules_from_config(config.sharding_rules), config.seed,
        grad_cache_chunks=chunks, loss=config.loss, lora=config.lora,
    )


def packer(mesh: Mesh, chunks: int) -> BatchPacker:
    """Packs this process's rows in groups of one batch shard and GradCache chunk each, so a
    device packs, encodes and pools its own pairs and a chunk is a set of groups."""
    groups = math.prod(mesh.shape[a] for a in BATCH_AXES) * chunks
    if groups % jax.process_count():
        raise ValueError(
            f"TrainConfig.pack_sequences needs the {groups} batch shards x GradCache chunks to split evenly "
            f"over the {jax.process_count()} processes; give each process whole batch shards (mesh data x fsdp)."
        )

    def agree(need: np.ndarray) -> np.ndarray:  # the largest need of any process
        if jax.process_count() == 1:
            return need
        return np.asarray(multihost_utils.process_allgather(need)).max(axis=0)

    return BatchPacker(groups // jax.process_count(), agree)


def with_pretrained_shape(config: TrainConfig) -> TrainConfig:
    """With TrainConfig.init_from, the config whose ModelConfig has the pretrained model's shape
    (and init_from resolved to a directory); else `config` itself."""
    if not config.init_from:
        return config
    init_from = pretrained.resolve(config.init_from)
    return dataclasses.replace(config, init_from=init_from, model=pretrained.model_config(init_from, config.model))


def prepare_tokenizer(config: TrainConfig) -> Tokenizer:
    """The run's tokenizer: saved in the run directory by process 0 (trained on the run's data,
    or copied from tokenizer_path / init_from) so the directory alone reloads the model."""
    path = os.path.join(config.output_dir, RUN_DIR_NAME)
    if not os.path.exists(path) and jax.process_index() == 0:
        source = config.init_from or (config.tokenizer_path and pretrained.resolve(config.tokenizer_path))
        if source:
            tokenizer = Tokenizer.load(source)
        else:
            from cpt_jax.data.pipeline import training_texts

            tokenizer = Tokenizer.train(
                training_texts(config.data, config.tokenizer_max_texts), config.model.vocab_size, path
            )
        tokenizer.shared_delimiters = config.shared_delimiters
        tokenizer.save(path)
    runtime.barrier("tokenizer")
    tokenizer = Tokenizer.load(path)
    if tokenizer.shared_delimiters != config.shared_delimiters:
        raise ValueError(
            f"The run's tokenizer {path} has shared_delimiters={tokenizer.shared_delimiters} but "
            f"TrainConfig.shared_delimiters={config.shared_delimiters}; set it back, or train into a new "
            "TrainConfig.output_dir."
        )
    if tokenizer.vocab_size > config.model.vocab_size:
        raise ValueError(
            f"Tokenizer {path} emits {tokenizer.vocab_size} ids but ModelConfig.vocab_size="
            f"{config.model.vocab_size}; raise it (or delete the tokenizer to retrain it)."
        )
    return tokenizer
