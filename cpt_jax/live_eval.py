"""Evaluation during training: held-out tasks scored on the live, sharded parameters of a run.

`make_evaluator(run, tokenizer)` is what `python -m cpt_jax.train` gives the loop for
TrainConfig.evaluation (train/evaluation.EvalConfig). Its encoder (`LiveEncoder`) embeds through
the run's own mesh: the state's parameters as they are sharded (fsdp / tensor), the texts' rows
split over the data axes, so no second copy of the model is made and a model too big for one
device scores as it trains. Every process takes part (the texts are the same on each, the
embeddings are gathered to every process, and every process computes the same scores); process
0 alone writes them (train/loop.py). The scoring is eval/'s: the same tasks, splits and metrics as
`python -m cpt_jax.evaluate`.
"""

from __future__ import annotations

import copy
import dataclasses
from collections.abc import Sequence

import flax.linen as nn
import jax
import numpy as np
from jax.experimental import multihost_utils

from cpt_jax.data import probe_tasks
from cpt_jax.data.tokenizer import Tokenizer
from cpt_jax.embedder import SIDES, common_instruction, default_batch_tokens, padded_batches, run_instructions
from cpt_jax.eval.spec import DEFAULT_DATA_DIR, EvalSpec
from cpt_jax.eval.suite import TRAINED, Results, evaluate
from cpt_jax.model import embed
from cpt_jax.parallel import runtime
from cpt_jax.parallel.mesh import BATCH_AXES
from cpt_jax.train.evaluation import EvalConfig, Evaluator
from cpt_jax.train.run import Run
from cpt_jax.train.state import encoder_of


class LiveEncoder:
    """An eval Encoder over a Run's current state (read at every encode, so it follows training)."""

    def __init__(self, run: Run, tokenizer: Tokenizer, max_len: dict[str, int],
                 instructions: dict[str, tuple[str, str]]) -> None:
        self.run, self.tokenizer, self.max_len, self.instructions = run, tokenizer, max_len, instructions
        # As Embedder: the run's one instruction if all its sources share it, else none by default.
        self.prefix = dict(zip("xy", common_instruction(instructions)))
        self._rows = int(np.prod([run.mesh.shape[a] for a in BATCH_AXES]))  # rows split over the data axes
        model, lora = run.config.model, run.config.lora
        # With LoRA the adapters run beside the frozen base, unmerged: no merged copy is made.
        self._embed = jax.jit(lambda p, f, t, m: embed(encoder_of(p, f, lora), model, t, m),
                              in_shardings=(run.shardings.params, run.shardings.frozen, run.batch_sharding,
                                            run.batch_sharding))

    def for_task(self, name: str) -> LiveEncoder:
        """With the instruction of the run's source named `name` (as Embedder.for_task)."""
        if name not in self.instructions:
            return self
        other = copy.copy(self)  # the same run, compiled encode and tokenizer
        other.prefix = dict(zip("xy", self.instructions[name]))
        return other

    def _global(self, a: np.ndarray) -> jax.Array:
        """A host array every process holds whole -> the global array split over the data axes."""
        sharding = self.run.batch_sharding
        return jax.make_array_from_callback(a.shape, sharding, lambda index: a[index])

    def encode(self, texts: Sequence[str], side: str = "document", batch_size: int = 64) -> np.ndarray:
        s = SIDES[side]
        texts = [self.prefix[s] + t for t in texts] if self.prefix[s] else list(texts)
        tokens, mask = self.tokenizer.encode(texts, s, self.max_len[s])
        rows = max(self._rows, batch_size - batch_size % self._rows)
        out = np.zeros((len(texts), self.run.config.model.d_model), np.float32)
        with jax.set_mesh(self.run.mesh), nn.logical_axis_rules(list(self.run.rules)):
            for idx, t, m in padded_batches(tokens, mask, self.max_len[s], rows, default_batch_tokens(), self._rows):
                state = self.run.state
                emb = self._embed(state.params, state.frozen, self._global(t), self._global(m))
                host = multihost_utils.process_allgather(emb, tiled=True) if jax.process_count() > 1 else emb
                out[idx] = np.asarray(host)[: len(idx)]
        return out


def flatten(results: Results) -> dict[str, float]:
    """{"<task label>/<metric>": value} of the trained system (the label up to its counts, e.g.
    "site_code/validation"), plus "mean/<metric>" over the tasks reporting each of ndcg@10 and mrr."""
    out: dict[str, float] = {}
    for label, systems in results.items():
        name = label.split(" (")[0]
        out.update({f"{name}/{metric}": float(v) for metric, v in systems[TRAINED].items()})
    for metric in ("ndcg@10", "mrr"):
        values = [v for k, v in out.items() if k.endswith(f"/{metric}") and not k.startswith("mean/")]
        if len(values) > 1:
            out[f"mean/{metric}"] = float(np.mean(values))
    return out


def spec_of(config: EvalConfig, data_dir: str) -> EvalSpec:
    return EvalSpec(tasks=config.tasks, data_dir=data_dir, split=config.split, beir=config.beir,
                    classification=config.classification, baselines=False, batch_size=config.batch_size,
                    max_pairs=config.max_pairs)


def _run_data_dir(run: Run) -> str:
    """The data_dir of the run's first prepared source, else the default."""
    for source in run.config.data.sources:
        if getattr(source, "data_dir", None):
            return source.data_dir
    return DEFAULT_DATA_DIR


def make_evaluator(run: Run, tokenizer: Tokenizer) -> Evaluator:
    """The loop's evaluator of run.config.evaluation: step -> flattened scores. The spec is checked and
    the built-in probes prepared (by process 0) now, before the first training step."""
    config = run.config.evaluation
    spec = spec_of(config, config.data_dir or _run_data_dir(run))
    if jax.process_index() == 0:
        for entry in spec.classification:
            if entry in probe_tasks.CLASSIFICATION_TASKS:
                probe_tasks.prepare(entry, spec.data_dir)
    runtime.barrier("evaluation prepared")
    data = run.config.data
    lengths = {"x": config.max_len or data.max_len_x, "y": config.max_len or data.max_len_y}
    encoder = LiveEncoder(run, tokenizer, lengths, run_instructions(dataclasses.asdict(data)))
    return lambda step: flatten(evaluate({TRAINED: encoder}, spec))
