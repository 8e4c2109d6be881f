"""Evaluation during training in the loop: scores at the start, every K steps and the last step,
logged to TensorBoard and metrics.jsonl; the best checkpoint saved when reached and kept beside the
latest (keep-N never deletes it), across a restart; EvalConfig's checks."""

from __future__ import annotations

import glob
import json
import os

import pytest
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

from cpt_jax.train import loop
from cpt_jax.train.evaluation import BestCheckpoint, EvalConfig, due, pick
from tests.train.test_loop import _small_run

METRIC = "toy/test/ndcg@10"
# step -> the score the fake evaluator reports: best at step 2, then worse; 10 beats it after a restart.
SCORES = {0: 0.1, 2: 0.5, 4: 0.3, 6: 0.2, 8: 0.4, 10: 0.9}


def fake_evaluator(calls: list[int]):
    def make(run, tokenizer):
        def evaluate(step: int) -> dict[str, float]:
            calls.append(step)
            return {METRIC: SCORES[step], "toy/test/mrr": SCORES[step] / 2}
        return evaluate
    return make


def _checkpoints(tmp_path) -> list[int]:
    return sorted(int(d) for d in os.listdir(tmp_path / "run" / "checkpoints") if d.isdigit())


def test_the_best_step_is_saved_and_kept_beside_the_latest(tmp_path, capsys):
    evaluation = EvalConfig(every=2, tasks=("toy",), best_metric=METRIC)
    config = _small_run(tmp_path, num_steps=6, checkpoint_every=100, keep_checkpoints=1, log_every=3,
                        evaluation=evaluation)
    calls: list[int] = []
    loop.train(config, make_evaluator=fake_evaluator(calls))
    assert calls == [0, 2, 4, 6]
    assert _checkpoints(tmp_path) == [2, 6]  # keep 1: the latest, and the best, saved when reached
    best = json.loads((tmp_path / "run" / "best.json").read_text())
    assert (best["step"], best["value"], best["metric"]) == (2, 0.5, METRIC)
    assert f"best {METRIC} 0.5000 at step 2" in capsys.readouterr().out
    rows = [json.loads(line) for line in open(tmp_path / "run" / "metrics.jsonl")]
    evals = {r["step"]: r[f"eval/{METRIC}"] for r in rows if f"eval/{METRIC}" in r}
    assert evals == {s: SCORES[s] for s in (0, 2, 4, 6)}
    assert any("loss" in r for r in rows if r["step"] == 6)  # the training rows are still there
    (events,) = glob.glob(str(tmp_path / "run" / "tensorboard" / "events.*"))
    acc = EventAccumulator(events)
    acc.Reload()
    assert [(e.step, round(e.value, 4)) for e in acc.Scalars(f"eval/{METRIC}")] == [(s, SCORES[s]) for s in (0, 2, 4, 6)]

    # A restart keeps protecting the best; a better step replaces it and the old one goes.
    calls.clear()
    loop.train(_small_run(tmp_path, num_steps=10, checkpoint_every=100, keep_checkpoints=1, log_every=3,
                          evaluation=evaluation), make_evaluator=fake_evaluator(calls))
    assert calls == [6, 8, 10]
    assert _checkpoints(tmp_path) == [10]
    assert json.loads((tmp_path / "run" / "best.json").read_text())["step"] == 10


def test_the_best_survives_keep_n_while_later_steps_are_worse(tmp_path):
    evaluation = EvalConfig(every=2, tasks=("toy",), best_metric=METRIC)
    config = _small_run(tmp_path, num_steps=8, checkpoint_every=2, keep_checkpoints=1, log_every=4,
                        evaluation=evaluation)
    loop.train(config, make_evaluator=fake_evaluator([]))
    assert _checkpoints(tmp_path) == [2, 8]


def test_an_unknown_best_metric_fails_at_the_first_evaluation_naming_the_keys(tmp_path):
    evaluation = EvalConfig(every=2, tasks=("toy",), best_metric="toy/test/ndcg@1O")
    config = _small_run(tmp_path, num_steps=4, evaluation=evaluation)
    with pytest.raises(KeyError, match=r"is not among .*'toy/test/ndcg@10'\]; did you mean 'toy/test/ndcg@10'"):
        loop.train(config, make_evaluator=fake_evaluator([]))
    assert not os.path.exists(tmp_path / "run" / "checkpoints" / "2")  # it failed before training


def test_train_without_an_evaluator_names_the_fix(tmp_path):
    with pytest.raises(ValueError, match=r"make_evaluator=cpt_jax.live_eval.make_evaluator"):
        loop.train(_small_run(tmp_path, evaluation=EvalConfig(every=2, tasks=("toy",))))


@pytest.mark.parametrize("kwargs, match", [
    ({"every": 10}, r"nothing to score; set EvalConfig.tasks"),
    ({"best_metric": "x/ndcg@10", "tasks": ("t",)}, r"needs evaluations: set EvalConfig.every"),
    ({"every": 10, "tasks": ("t",), "best_mode": "maximum"}, r"best_mode='maximum'; use 'max' or 'min'"),
    ({"every": -1, "tasks": ("t",)}, r"EvalConfig.every=-1 is out of range"),
    ({"every": 5, "tasks": "site_code"}, r"must be a tuple of names"),
])
def test_bad_eval_configs_name_the_fix(kwargs, match):
    with pytest.raises((ValueError, TypeError), match=match):
        EvalConfig(**kwargs)


def test_due_scores_the_start_every_k_and_the_end():
    config = EvalConfig(every=4, tasks=("t",))
    assert [d for d in range(0, 11) if due(config, d, 0, 10)] == [0, 4, 8, 10]
    assert not any(due(EvalConfig(), d, 0, 10) for d in range(11))


def test_best_checkpoint_modes_and_a_record_of_another_metric(tmp_path):
    config = EvalConfig(every=1, tasks=("t",), best_metric="a", best_mode="min")
    best = BestCheckpoint(str(tmp_path), config, is_writer=True)
    assert best.improves(3.0) and not best.improves(float("nan"))
    best.update(5, 3.0, {"a": 3.0})
    assert best.improves(2.0) and not best.improves(3.0)
    assert BestCheckpoint(str(tmp_path), config, True).step == 5  # read back
    other = EvalConfig(every=1, tasks=("t",), best_metric="b")
    assert BestCheckpoint(str(tmp_path), other, True).step is None  # another metric starts afresh
    with pytest.raises(KeyError, match="did you mean 'a'"):
        pick({"a": 1.0, "bb": 2.0}, "aa")
