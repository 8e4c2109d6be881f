"""The training loop: a run from build_run, stepped over its data, logged and checkpointed.

Read top to bottom, `train` is the whole run (big_vision style): the run is assembled by
train/run.py, the data position kept by train/position.py, and everything it is told comes from
one TrainConfig built by gin at the edge. Every resource it opens (checkpointer, SIGTERM guard,
prefetch thread, metrics writer) is released on every exit path, errors included.
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import os
import time
from collections.abc import Callable
from typing import Any

import jax
import numpy as np

from cpt_jax import atomic
from cpt_jax.checkpoint import Checkpointer
from cpt_jax.data.pipeline import STREAM_META_KEY, prepare_sources
from cpt_jax.data.tokenizer import Tokenizer
from cpt_jax.interop import pretrained
from cpt_jax.parallel import runtime
from cpt_jax.train.config import TrainConfig, validate
from cpt_jax.train.evaluation import BestCheckpoint, Evaluator, due, pick
from cpt_jax.train.metrics import MetricsWriter
from cpt_jax.train.position import DataPosition, log_fingerprint, write_data_stats
from cpt_jax.train.preemption import PreemptionGuard
from cpt_jax.train.restore import check_overrides
from cpt_jax.train.run import Run, build_run, prepare_tokenizer, with_pretrained_shape

OPERATIVE_CONFIG_FILE = "config.gin"


# (the run, its tokenizer) -> the evaluator of TrainConfig.evaluation (cpt_jax/live_eval.py builds it).
MakeEvaluator = Callable[[Run, Tokenizer], Evaluator]


def train(
    config: TrainConfig, operative_config: Callable[[], str] = lambda: "", make_evaluator: MakeEvaluator | None = None
) -> dict[str, float]:
    """Runs (or resumes) training to config.num_steps; returns the last logged metrics. With
    TrainConfig.evaluation set, make_evaluator builds what scores the live parameters."""
    if config.evaluation.enabled and make_evaluator is None:
        raise ValueError(
            "TrainConfig.evaluation.every is set, but train() was given no evaluator: run python -m cpt_jax.train, "
            "or pass make_evaluator=cpt_jax.live_eval.make_evaluator."
        )
    t_train = time.perf_counter()
    init_from = config.init_from  # as configured (pkg:// kept), for the checkpoints' meta
    config = with_pretrained_shape(config)  # the pretrained shape replaces ModelConfig's before any check
    validate(config, jax.device_count())
    check_overrides(config.resume_overrides)
    is_writer = jax.process_index() == 0
    if is_writer:
        os.makedirs(config.output_dir, exist_ok=True)
        prepare_sources(config.data)
    runtime.barrier("data prepared")
    tokenizer = prepare_tokenizer(config)
    with contextlib.ExitStack() as resources:
        ckpt = Checkpointer(config.output_dir, save_every=config.checkpoint_every, keep=config.keep_checkpoints)
        resources.callback(ckpt.close)
        init_params, fresh = None, not ckpt.all_steps()
        if config.init_from and (fresh or config.lora.enabled):  # a LoRA run needs its frozen base on every start
            init_params = pretrained.encoder_params(config.init_from, config.model, tokenizer)
        run = build_run(config, checkpointer=ckpt, init_params=init_params, tokenizer_sha256=tokenizer.fingerprint())
        data = run.open_data(tokenizer)
        start = run.start_step
        resume = data.resume_meta(ckpt.read_meta(start).get(STREAM_META_KEY) if start else None, start)
        produced = data.produce(start, resume)
        resources.callback(produced.close)
        writer = MetricsWriter(config.output_dir, config.num_steps) if is_writer else None
        if writer:
            resources.callback(writer.close)
        guard = PreemptionGuard()
        resources.callback(guard.close)
        # The configs were built before this call, so gin's operative config is already complete.
        static_meta = {
            **run.meta,  # what the arrays mean: compared on every resume (train/restore.py)
            "data_config": dataclasses.asdict(config.data),
            "operative_config": operative_config(),
            **({"init_from": init_from} if init_from else {}),  # evaluate scores the start beside the run
        }
        if writer:
            atomic.write_text(os.path.join(config.output_dir, OPERATIVE_CONFIG_FILE), static_meta["operative_config"])
        if init_params is not None and fresh:
            # The imported model as checkpoint 0: the "before" of every comparison.
            ckpt.save(0, run.state.params, run.state.opt_state, {"step": 0, **static_meta}, force=True)
        evaluator = make_evaluator(run, tokenizer) if config.evaluation.enabled else None
        loop = _Loop(run, ckpt, DataPosition(data, resume), static_meta, writer, guard, t_train, evaluator)
        last = loop.steps(produced)
        if loop.position.has_read:  # report what the sources dropped
            stats = loop.position.drop_stats()
            write_data_stats(config.output_dir, stats, is_writer)
            if is_writer:
                print(f"data drop statistics (records read, per source): {json.dumps(stats, sort_keys=True)}", flush=True)
        ckpt.wait()  # the last save is complete before the checkpointer closes
    return last


class _Loop:
    """The step loop of one train() call and the little state it carries between steps."""

    def __init__(self, run: Run, ckpt: Checkpointer, position: DataPosition, static_meta: dict,
                 writer: MetricsWriter | None, guard: PreemptionGuard, t_train: float,
                 evaluator: Evaluator | None = None) -> None:
        self.run, self.ckpt, self.position, self.static_meta = run, ckpt, position, static_meta
        self.writer, self.guard, self.t_train, self.evaluator = writer, guard, t_train, evaluator
        self.config = run.config
        self.is_writer = jax.process_index() == 0
        self.best = None
        if evaluator is not None and self.config.evaluation.best_metric:
            self.best = BestCheckpoint(self.config.output_dir, self.config.evaluation, self.is_writer)
            if self.best.step is not None:
                ckpt.protect(self.best.step)
        self.pending: list[dict[str, jax.Array]] = []
        self.last: dict[str, float] = {}
        self.streak = 0  # consecutive non-finite (skipped) steps so far
        self.t_log, self.untimed = time.perf_counter(), 0

    def save(self, done: int, force: bool) -> bool:
        state = self.run.state
        meta = {"step": done, **self.static_meta, **self.position.meta()}
        return self.ckpt.save(done, state.params, state.opt_state, meta, force=force)

    def steps(self, produced: Any) -> dict[str, float]:
        cfg, start = self.config, self.run.start_step
        if due(cfg.evaluation, start, start, cfg.num_steps) and start < cfg.num_steps:
            self._evaluate(start, saved=start in self.ckpt.all_steps())  # where the run starts from
        for step, item in zip(range(start, cfg.num_steps), produced):
            batch = self.run.to_global(item.batch)
            t_step = time.perf_counter()
            self.run.state, metrics = self.run.step(self.run.state, batch)
            self.position.consume(item.position)  # the data position after this step: what a checkpoint keeps
            if cfg.data.log_fingerprints:
                log_fingerprint(cfg.output_dir, step, item.batch, self.is_writer)
            self.pending.append(metrics)
            done = step + 1
            if step == start:
                self._first_step(done, metrics, t_step)
            if done % cfg.log_every == 0 or done == cfg.num_steps:
                self._log(done)
            preempted = self.guard.reached(done)
            force = preempted or done == cfg.num_steps
            saved = False
            if force or done % max(cfg.checkpoint_every, 1) == 0:  # Checkpointer's policy: gather only then
                saved = self.save(done, force)
            if not preempted and due(cfg.evaluation, done, start, cfg.num_steps):
                self._evaluate(done, saved)
            if preempted:
                print(f"preempted: saved a checkpoint at step {done}; rerun the same command to resume.", flush=True)
                break
        return self.last

    def _evaluate(self, done: int, saved: bool) -> None:
        """Scores the live parameters (every process takes part; process 0 logs); a new best step is
        saved (unless it just was) and kept beside the latest checkpoints."""
        t = time.perf_counter()
        metrics = self.evaluator(done)
        if self.writer:
            self.writer.write_eval(done, metrics, time.perf_counter() - t)
        if self.best is None:
            return
        value = pick(metrics, self.config.evaluation.best_metric)
        if not self.best.improves(value):
            return
        if not saved and not self.save(done, force=True):
            return  # Orbax declined the save: nothing on disk to keep
        self.ckpt.protect(done, replaces=self.best.step)
        self.best.update(done, value, metrics)
        if self.is_writer:
            print(f"best {self.config.evaluation.best_metric} {value:.4f} at step {done} (kept: checkpoint {done}, "
                  f"{os.path.join(self.config.output_dir, 'best.json')})", flush=True)

    def _first_step(self, done: int, metrics: dict[str, jax.Array], t_step: float) -> None:
        """The first step includes compilation: it is logged, but rates are timed from its end."""
        jax.block_until_ready(metrics)
        self.t_log, self.untimed = time.perf_counter(), 1
        if self.is_writer:
            print(f"first step {done}: {self.t_log - t_step:.1f}s to compile and run it, "
                  f"{self.t_log - self.t_train:.1f}s after train() started", flush=True)
        if self.writer:
            self.writer.start(done)

    def _log(self, done: int) -> None:
        history = jax.device_get(self.pending)
        self.last = _summarise(history, time.perf_counter() - self.t_log, self.untimed)
        self.pending, self.untimed, self.t_log = [], 0, time.perf_counter()
        if self.writer:
            self.writer.write(done, self.last)
        write_data_stats(self.config.output_dir, self.position.drop_stats(), self.is_writer)
        self.streak = nonfinite_streak([int(h["nonfinite"]) for h in history], self.streak)
        if self.streak >= self.config.max_consecutive_nonfinite:
            self.save(done, force=True)
            self.ckpt.wait()
            raise FloatingPointError(
                f"{self.streak} consecutive steps up to step {done} had a non-finite loss or gradient and were "
                f"skipped; saved the last good parameters as checkpoint {done}. Lower the learning rate, "
                "check the data, or raise TrainConfig.max_consecutive_nonfinite."
            )


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
