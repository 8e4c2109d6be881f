"""The training loop: config checks, data, sharded state, the step, metrics, checkpoints.

Read top to bottom, it is the whole run (big_vision style): everything it composes lives in
its own module, and everything it is told comes from one TrainConfig built by gin at the edge.
"""

from __future__ import annotations

import dataclasses
import json
import math
import os
import time
from collections.abc import Callable
from typing import Any

import jax
import numpy as np
import optax
from jax.experimental import multihost_utils
from jax.sharding import Mesh

from cpt_jax.checkpoint import Checkpointer, abstract_like, model_meta, shape_mismatches
from cpt_jax.data import builders
from cpt_jax.data.fingerprint import fingerprint, row_hashes
from cpt_jax.data.packing import BatchPacker
from cpt_jax.data.pipeline import (
    STREAM_META_KEY,
    DataConfig,
    PairBatches,
    StreamBatches,
    StreamPosition,
    check_stream_layout,
    iter_source_texts,
    iter_training_texts,
    make_batches,
    merge_counts,
)
from cpt_jax.data.tokenizer import RUN_DIR_NAME, Tokenizer
from cpt_jax.interop import pretrained
from cpt_jax.model import ModelConfig
from cpt_jax.parallel import runtime
from cpt_jax.parallel.mesh import BATCH_AXES, MeshConfig, batch_size_per_shard, make_mesh
from cpt_jax.parallel.rules import Rules, batch_sharding, rules_from_config
from cpt_jax.train.metrics import MetricsWriter
from cpt_jax.train.optimizer import OptimizerConfig, learning_rate, make_optimizer
from cpt_jax.train.preemption import PreemptionGuard
from cpt_jax.train.state import (
    TemperatureConfig,
    TrainState,
    abstract_train_state,
    create_train_state,
    state_shardings,
    train_state_from_params,
)
from cpt_jax.train.config import TrainConfig
from cpt_jax.train.step import StepContext, make_train_step
from cpt_jax.typecheck import check_field_types

OPERATIVE_CONFIG_FILE = "config.gin"
DATA_STATS_FILE = "data_stats.json"  # drop-rule counts per source, rewritten at each log step
FINGERPRINTS_FILE = "batch_fingerprints.jsonl"  # with DataConfig.log_fingerprints


def validate(config: TrainConfig, num_devices: int) -> None:
    """Fail before any data preparation or compile, naming the bad value and the fix."""
    config.mesh.resolve(num_devices)
    for side in ("x", "y"):
        length = getattr(config.data, f"max_len_{side}")
        if length > config.model.max_len:
            raise ValueError(
                f"DataConfig.max_len_{side}={length} exceeds ModelConfig.max_len={config.model.max_len}; "
                f"lower the data length or raise the model's."
            )
    if config.num_steps <= 0 or config.global_batch_size <= 0:
        raise ValueError("TrainConfig.num_steps and TrainConfig.global_batch_size must be positive.")
    if config.init_from and config.tokenizer_path:
        raise ValueError(
            "TrainConfig.init_from brings its own tokenizer; unset TrainConfig.tokenizer_path."
        )
    chunk = config.grad_cache_chunk_size
    if chunk < 0 or (chunk and config.global_batch_size % chunk):
        raise ValueError(
            f"TrainConfig.global_batch_size={config.global_batch_size} must be a multiple of "
            f"TrainConfig.grad_cache_chunk_size={chunk} (0 disables gradient caching)."
        )
    if config.global_batch_size % jax.process_count():
        raise ValueError(
            f"TrainConfig.global_batch_size={config.global_batch_size} must be divisible by the "
            f"{jax.process_count()} processes."
        )
    if config.data.sources:
        check_stream_layout(config.data, config.global_batch_size, jax.process_count())


def prepare_tokenizer(config: TrainConfig) -> Tokenizer:
    """The run's tokenizer: saved in the run directory by process 0 (trained on the train split,
    or copied from tokenizer_path / init_from) so the directory alone reloads the model."""
    path = os.path.join(config.output_dir, RUN_DIR_NAME)
    if not os.path.exists(path) and jax.process_index() == 0:
        source = config.init_from or (config.tokenizer_path and pretrained.resolve(config.tokenizer_path))
        if source:
            tokenizer = Tokenizer.load(source)
        else:
            if config.data.sources:
                texts = iter_source_texts([c.build() for c in config.data.sources], config.tokenizer_max_texts)
            else:
                texts = iter_training_texts(
                    config.data.data_dir, datasets=(config.data.dataset,), max_texts=config.tokenizer_max_texts
                )
            tokenizer = Tokenizer.train(texts, config.model.vocab_size, path)
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


def _restore_or_init(
    config: TrainConfig,
    ckpt: Checkpointer,
    tx: optax.GradientTransformation,
    mesh: Mesh,
    rules: Rules,
    init_params: Any = None,
) -> tuple[TrainState, TrainState]:
    """The latest checkpoint that restores, onto this run's mesh (any earlier mesh or process
    count), else a fresh state (from init_params, the host encoder tree, when given). Restoring never materialises a fresh state first. An unreadable
    checkpoint is moved aside and the previous one tried."""
    steps = ckpt.all_steps()
    if not steps and init_params is not None:
        return train_state_from_params(init_params, config.model, config.temperature, tx, mesh, rules)
    if not steps:
        return create_train_state(config.model, config.temperature, tx, mesh, rules, config.seed)
    shardings = state_shardings(config.model, config.temperature, tx, mesh, rules)
    abstract = abstract_train_state(config.model, config.temperature, tx)
    params_target = abstract_like(abstract.params, shardings.params)
    opt_target = abstract_like(abstract.opt_state, shardings.opt_state)
    failures = []
    for step in sorted(steps, reverse=True):
        try:
            saved = ModelConfig(**ckpt.read_meta(step)["model_config"])
        except Exception:  # noqa: BLE001 - unreadable metadata: handled with the arrays below
            saved = config.model
        mismatches = shape_mismatches(saved, config.model)
        if mismatches:
            # A readable checkpoint of another model: never move or overwrite it.
            raise ValueError(
                f"The checkpoint at step {step} in {config.output_dir} was written by a different model:\n  "
                + "\n  ".join(mismatches)
                + f"\nsaved: {saved}\nnow:   {config.model}\n"
                "Restore the old ModelConfig, or train into a new TrainConfig.output_dir."
            )
        try:
            params, opt_state, meta = ckpt.restore(step, params_target, opt_target)
        except Exception as e:  # noqa: BLE001 - any unreadable checkpoint: report it, try the previous one
            failures.append(f"step {step}: {type(e).__name__}: {str(e)[:300]}")
            runtime.barrier(f"restore attempt {step}")  # every process has tried before it moves
            moved = ckpt.quarantine(step)
            print(f"WARNING: checkpoint at step {step} cannot be restored ({type(e).__name__}: "
                  f"{str(e)[:200]}); moved it to {moved} and trying the previous one.", flush=True)
            continue
        print(f"restored checkpoint at step {step} from {config.output_dir}", flush=True)
        step_array = jax.device_put(np.int32(meta["step"]), shardings.step)
        return TrainState(step=step_array, params=params, opt_state=opt_state), shardings
    raise RuntimeError(
        f"None of the checkpoints in {config.output_dir}/checkpoints restores:\n  " + "\n  ".join(failures)
        + "\nThey were moved to <step>.unreadable; delete them to start afresh, or point "
        "TrainConfig.output_dir elsewhere. Nothing was deleted."
    )


def train(config: TrainConfig, operative_config: Callable[[], str] = lambda: "") -> dict[str, float]:
    """Runs (or resumes) training to config.num_steps; returns the last logged metrics."""
    t_train = time.perf_counter()
    if config.init_from:
        # The pretrained model's shape replaces ModelConfig's before anything is checked.
        init_from = pretrained.resolve(config.init_from)
        config = dataclasses.replace(config, init_from=init_from, model=pretrained.model_config(init_from, config.model))
    validate(config, jax.device_count())
    is_writer = jax.process_index() == 0
    if is_writer:
        os.makedirs(config.output_dir, exist_ok=True)
        if not config.data.sources:
            builders.prepare(config.data.dataset, config.data.data_dir)
    runtime.barrier("data prepared")
    tokenizer = prepare_tokenizer(config)

    mesh = make_mesh(config.mesh)
    batch_size_per_shard(mesh, config.global_batch_size)
    chunks = 1
    if config.grad_cache_chunk_size:
        batch_size_per_shard(mesh, config.grad_cache_chunk_size)  # every chunk splits over the shards
        chunks = config.global_batch_size // config.grad_cache_chunk_size
    rules = rules_from_config(config.sharding_rules)
    tx = make_optimizer(config.optimizer, config.num_steps)
    ckpt = Checkpointer(config.output_dir, save_every=config.checkpoint_every, keep=config.keep_checkpoints)
    init_params = None
    if config.init_from and not ckpt.all_steps():
        init_params = pretrained.encoder_params(config.init_from, config.model, tokenizer)
    state, shardings = _restore_or_init(config, ckpt, tx, mesh, rules, init_params)
    lr = lambda step: learning_rate(config.optimizer, config.num_steps, step)  # noqa: E731
    ctx = StepContext(config.model, config.temperature, tx, mesh, rules, config.seed, grad_cache_chunks=chunks)
    step_fn = make_train_step(ctx, shardings, lr)

    data = make_batches(config.data, tokenizer, config.global_batch_size, jax.process_index(), jax.process_count())
    layout = _packer(mesh, chunks) if config.pack_sequences else lambda local: local
    global_batch = batch_sharding(mesh, BATCH_AXES)
    start = int(jax.device_get(state.step))
    resume = _saved_stream(ckpt, start, config.output_dir) if isinstance(data, StreamBatches) else None
    position = DataPosition(data, resume)
    writer = MetricsWriter(config.output_dir, config.num_steps) if is_writer else None

    # The configs were built before this call, so gin's operative config is already complete.
    operative = operative_config()
    if writer:
        _write_operative_config(config.output_dir, operative)
    static_meta = {
        "model_config": model_meta(config.model),
        "data_config": dataclasses.asdict(config.data),
        "operative_config": operative,
    }
    if init_params is not None:
        # The imported model as checkpoint 0: the "before" of every comparison.
        ckpt.save(0, state.params, state.opt_state, {"step": 0, **static_meta}, force=True)

    guard = PreemptionGuard()
    pending: list[dict[str, jax.Array]] = []
    last: dict[str, float] = {}
    streak = 0  # consecutive non-finite (skipped) steps so far
    t_log, untimed = time.perf_counter(), 0
    produced = data.produce(start, resume)
    for step, item in zip(range(start, config.num_steps), produced):
        batch = {k: jax.make_array_from_process_local_data(global_batch, v) for k, v in layout(item.batch).items()}
        t_step = time.perf_counter()
        state, metrics = step_fn(state, batch)
        position.consume(item.position)  # the data position after this step: what a checkpoint keeps
        if config.data.log_fingerprints:
            _log_fingerprint(config.output_dir, step, item.batch, is_writer)
        pending.append(metrics)
        done = step + 1
        if step == start:
            # The first step includes compilation: it is logged, but rates are timed from its end.
            jax.block_until_ready(metrics)
            t_log, untimed = time.perf_counter(), 1
            if is_writer:
                print(f"first step {done}: {t_log - t_step:.1f}s to compile and run it, {t_log - t_train:.1f}s after "
                      "train() started", flush=True)
            if writer:
                writer.start(done)
        if done % config.log_every == 0 or done == config.num_steps:
            history = jax.device_get(pending)
            last = _summarise(history, time.perf_counter() - t_log, untimed)
            pending, untimed, t_log = [], 0, time.perf_counter()
            if writer:
                writer.write(done, last)
            if position.streaming:
                _write_data_stats(config.output_dir, position.drop_stats(), is_writer)
            streak = nonfinite_streak([int(h["nonfinite"]) for h in history], streak)
            if streak >= config.max_consecutive_nonfinite:
                ckpt.save(done, state.params, state.opt_state, {"step": done, **static_meta, **position.meta()}, force=True)
                ckpt.wait()
                raise FloatingPointError(
                    f"{streak} consecutive steps up to step {done} had a non-finite loss or gradient and were "
                    f"skipped; saved the last good parameters as checkpoint {done}. Lower the learning rate, "
                    "check the data, or raise TrainConfig.max_consecutive_nonfinite."
                )
        preempted = guard.reached(done)
        force = preempted or done == config.num_steps
        if force or done % max(config.checkpoint_every, 1) == 0:  # Checkpointer's policy: gather only then
            ckpt.save(done, state.params, state.opt_state, {"step": done, **static_meta, **position.meta()}, force=force)
        if preempted:
            print(f"preempted: saved a checkpoint at step {done}; rerun the same command to resume.", flush=True)
            break
    produced.close()
    guard.close()
    if position.streaming:
        stats = position.drop_stats()
        _write_data_stats(config.output_dir, stats, is_writer)
        if is_writer:
            print(f"data drop statistics (records read, per source): {json.dumps(stats, sort_keys=True)}", flush=True)
    ckpt.wait()
    ckpt.close()
    if writer:
        writer.close()
    return last


def _packer(mesh: Mesh, chunks: int) -> BatchPacker:
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


def _saved_stream(ckpt: Checkpointer, start: int, output_dir: str) -> dict | None:
    """The stream position saved with the checkpoint the run resumes from; None at step 0."""
    if start == 0:
        return None
    saved = ckpt.read_meta(start).get(STREAM_META_KEY)
    if saved is None:
        raise ValueError(
            f"Checkpoint {start} in {output_dir} has no data stream position ({STREAM_META_KEY!r} in its meta): it was "
            "written without DataConfig.sources. Resume with the data settings it was trained with, or train "
            "into a new TrainConfig.output_dir."
        )
    return saved


def allgather_json(obj: Any) -> list[Any]:
    """`obj` (JSON-serialisable) of every process, in process order. A collective: every process
    must call it at the same point."""
    if jax.process_count() == 1:
        return [obj]
    data = np.frombuffer(json.dumps(obj).encode(), np.uint8).astype(np.int32)
    sizes = np.asarray(multihost_utils.process_allgather(np.array([data.size], np.int32))).reshape(-1)
    padded = np.zeros(int(sizes.max()), np.int32)
    padded[: data.size] = data
    rows = np.asarray(multihost_utils.process_allgather(padded))
    return [json.loads(bytes(row[:n].astype(np.uint8))) for row, n in zip(rows, sizes)]


class DataPosition:
    """The stream position after the last trained step, gathered from every process on demand
    (a collective: all processes ask at the same steps, and at most once per step); empty for
    the TFDS path, whose position is the step alone."""

    def __init__(self, data: PairBatches | StreamBatches, resume: dict | None) -> None:
        self.streaming = isinstance(data, StreamBatches)
        self._data = data
        self._base_stats = resume["drop_stats"] if resume else {}  # counts of the runs before this one
        self._local: StreamPosition | None = None
        self._gathered: list[StreamPosition] | None = None

    def consume(self, local: StreamPosition | None) -> None:
        self._local, self._gathered = local, None

    def _all(self) -> list[StreamPosition]:
        if self._gathered is None:
            self._gathered = [StreamPosition(**p) for p in allgather_json(dataclasses.asdict(self._local))]
        return self._gathered

    def drop_stats(self) -> dict:
        """Drop-rule counts per source over all processes and restarts."""
        return merge_counts(self._base_stats, *(p.drop_stats for p in self._all())) if self.streaming else {}

    def meta(self) -> dict:
        """The checkpoint meta entry of the position ({} for the TFDS path)."""
        if not self.streaming or self._local is None:
            return {}
        return {STREAM_META_KEY: self._data.checkpoint_meta(self._all(), self.drop_stats())}


def _write_data_stats(output_dir: str, stats: dict, is_writer: bool) -> None:
    if is_writer:
        with open(os.path.join(output_dir, DATA_STATS_FILE), "w") as f:
            json.dump(stats, f, indent=1, sort_keys=True)


def _log_fingerprint(output_dir: str, step: int, local: dict[str, np.ndarray], is_writer: bool) -> None:
    """Appends the global batch's fingerprint (from every process's row hashes) to FINGERPRINTS_FILE."""
    hashes = [h for part in allgather_json([int(h) for h in row_hashes(local)]) for h in part]
    if is_writer:
        with open(os.path.join(output_dir, FINGERPRINTS_FILE), "a") as f:
            f.write(json.dumps({"batch": step, "fingerprint": fingerprint(hashes)}) + "\n")


def nonfinite_streak(flags: list[int], streak: int) -> int:
    """Length of the run of trailing 1s after appending `flags` (1 = skipped step) to a run of `streak`."""
    for flag in flags:
        streak = streak + 1 if flag else 0
    return streak


def _summarise(history: list[dict[str, Any]], seconds: float, untimed: int) -> dict[str, float]:
    """Means over the steps since the last log; token and step rates over the timed steps
    (all but the first `untimed`, whose time includes compilation)."""
    out = {k: float(np.mean([h[k] for h in history])) for k in history[0] if k not in ("tokens", "nonfinite")}
    out["skipped_steps"] = float(np.sum([h["nonfinite"] for h in history]))
    timed = history[untimed:]
    if timed:
        out["tokens_per_s"] = float(np.sum([h["tokens"] for h in timed])) / max(seconds, 1e-9)
        out["steps_per_s"] = len(timed) / max(seconds, 1e-9)
    return out


def _write_operative_config(output_dir: str, text: str) -> None:
    with open(os.path.join(output_dir, OPERATIVE_CONFIG_FILE), "w") as f:
        f.write(text)
