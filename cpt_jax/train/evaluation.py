"""Evaluation during training: what to score every K steps (EvalConfig), and the best checkpoint.

The loop calls an evaluator (step -> {"<task>/<metric>": value}) that the layer above builds from
EvalConfig (cpt_jax/live_eval.py: held-out tasks scored on the live, sharded parameters); this
module knows nothing of how tasks are scored. It keeps the record of the best step so far in
`<output_dir>/best.json`, written atomically by process 0 and read back on resume, and the
checkpointer never deletes that step while it is the best.
"""

from __future__ import annotations

import dataclasses
import difflib
import json
import math
import os
from collections.abc import Callable
from typing import ClassVar

from cpt_jax import atomic
from cpt_jax.typecheck import Bound, at_least, check_field_types

BEST_FILE = "best.json"
MODES = ("max", "min")
# step -> {"<task>/<metric>": value}; every process calls it (collective), all get the same values.
Evaluator = Callable[[int], dict[str, float]]


@dataclasses.dataclass(frozen=True)
class EvalConfig:
    """Held-out scores every `every` steps, logged to TensorBoard ("eval/...") and metrics.jsonl.

    every: steps between evaluations (0: none); the run's first and last steps are scored too.
    tasks: pair datasets (e.g. ('site_code', 'site_text')), searched exactly over their `split`'s
      first max_pairs pairs; beir: BEIR-format folders; classification: linear-probe folders or
      built-in task names (as for python -m cpt_jax.evaluate).
    max_len: tokens per text when scoring (0: the lengths the run trains with).
    data_dir: where the pair datasets and built-in probes live ("": the run's first prepared source's).
    best_metric: a key of the evaluation, "<task label>/<metric>" as logged (e.g.
      "site_code/validation/ndcg@10", or "mean/ndcg@10" over the tasks reporting it): the checkpoint
      of the best step is saved when it is reached and kept beside the latest ones ("": none).
    best_mode: "max" (higher is better) or "min".
    """

    every: int = 0
    tasks: tuple = ()
    split: str = "validation"
    max_pairs: int = 1000
    max_len: int = 0
    beir: tuple = ()
    classification: tuple = ()
    data_dir: str = ""
    batch_size: int = 64
    best_metric: str = ""
    best_mode: str = "max"

    BOUNDS: ClassVar[dict[str, Bound]] = {
        "every": at_least(0, "steps between evaluations; 0 for none"),
        "max_pairs": at_least(1, "pairs scored per pair task"),
        "max_len": at_least(0, "tokens per text when scoring; 0 for the training lengths"),
        "batch_size": at_least(1, "texts encoded per batch"),
    }

    def __post_init__(self) -> None:
        check_field_types(self)
        if self.best_mode not in MODES:
            raise ValueError(f"EvalConfig.best_mode={self.best_mode!r}; use 'max' or 'min'.")
        for name in ("tasks", "beir", "classification"):
            value = getattr(self, name)
            if not isinstance(value, tuple) or not all(isinstance(v, str) for v in value):
                raise ValueError(f"EvalConfig.{name}={value!r} must be a tuple of names, e.g. ('site_code',).")
        if self.every and not (self.tasks or self.beir or self.classification):
            raise ValueError(
                f"EvalConfig.every={self.every} but nothing to score; set EvalConfig.tasks (e.g. ('site_code',)), "
                "EvalConfig.beir or EvalConfig.classification, or EvalConfig.every=0."
            )
        if self.best_metric and not self.every:
            raise ValueError(
                f"EvalConfig.best_metric={self.best_metric!r} needs evaluations: set EvalConfig.every (e.g. 100)."
            )

    @property
    def enabled(self) -> bool:
        return self.every > 0


def due(config: EvalConfig, done: int, start: int, last: int) -> bool:
    """Whether the step count `done` is scored: the run's start, every `every` steps, and its last step."""
    return config.enabled and (done == start or done == last or done % config.every == 0)


def pick(metrics: dict[str, float], name: str) -> float:
    """metrics[name]; a KeyError naming the keys there are (and the nearest) otherwise."""
    if name in metrics:
        return metrics[name]
    hint = difflib.get_close_matches(name, list(metrics), n=1)
    raise KeyError(
        f"EvalConfig.best_metric={name!r} is not among this run's evaluation keys {sorted(metrics)}"
        + (f"; did you mean {hint[0]!r}?" if hint else "; name one of them.")
    )


class BestCheckpoint:
    """The best step so far by config.best_metric, kept in <output_dir>/best.json across restarts."""

    def __init__(self, output_dir: str, config: EvalConfig, is_writer: bool) -> None:
        self.path = os.path.join(output_dir, BEST_FILE)
        self.config, self.is_writer = config, is_writer
        self.record: dict | None = None
        if os.path.exists(self.path):
            with open(self.path) as f:
                record = json.load(f)
            if record.get("metric") == config.best_metric and record.get("mode") == config.best_mode:
                self.record = record  # another metric's best says nothing about this one's

    @property
    def step(self) -> int | None:
        return None if self.record is None else int(self.record["step"])

    def improves(self, value: float) -> bool:
        if not math.isfinite(value):
            return False
        if self.record is None:
            return True
        best = float(self.record["value"])
        return value > best if self.config.best_mode == "max" else value < best

    def update(self, step: int, value: float, metrics: dict[str, float]) -> None:
        """Records `step` as the best (its checkpoint must be saved); process 0 writes best.json."""
        self.record = {"step": step, "metric": self.config.best_metric, "mode": self.config.best_mode,
                       "value": value, "metrics": metrics}
        if self.is_writer:
            atomic.write_json(self.path, self.record)
