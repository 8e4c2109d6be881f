"""cpt_jax.live_eval: the live encoder embeds through the run's own mesh (parameters sharded over
fsdp, rows over the data axes) exactly as the Embedder does from one device, with the run's
instructions; train() with the real evaluator scores BEIR and probe folders during training, logs
them and keeps the best checkpoint."""

from __future__ import annotations

import json
import os

import jax
import numpy as np
import pytest
from pydoc_data.topics import topics

from cpt_jax.data.tokenizer import Tokenizer
from cpt_jax.embedder import Embedder
from cpt_jax.eval.suite import TRAINED
from cpt_jax.live_eval import LiveEncoder, flatten, make_evaluator
from cpt_jax.model import LoraConfig, ModelConfig
from cpt_jax.train import loop
from cpt_jax.train.evaluation import EvalConfig
from tests.eval.fakes import write_toy_folders
from tests.helpers import build_test_run, host
from tests.train.test_loop import _small_run

MODEL = ModelConfig(vocab_size=500, d_model=32, num_layers=2, num_heads=4, d_mlp=64, max_len=64)
TEXTS = ["def add(a, b):\n    return a + b", "Return the sum of two numbers.", "x",
         "class Stack:\n    def push(self, item):\n        self.items.append(item)\n" * 3] * 5


@pytest.fixture(scope="module")
def tokenizer(tmp_path_factory):
    return Tokenizer.train(list(topics.values()), 500, str(tmp_path_factory.mktemp("tok") / "tok"))


@pytest.mark.parametrize("layout", [(1, 1, 1), (2, 4, 1), (4, 1, 2)], ids=["one", "fsdp", "tensor"])
def test_live_encoder_equals_the_embedder_on_a_sharded_run(tokenizer, layout):
    run = build_test_run(MODEL, layout, batch=8, seq=32)
    params = host(run.state.params)["encoder"]
    instructions = {"code": ("Docstring: ", "Code: "), "prose": ("", "passage: ")}  # no common one: none by default
    live = LiveEncoder(run, tokenizer, {"x": 24, "y": 48}, instructions)
    ref = Embedder(MODEL, params, tokenizer, {"x": 24, "y": 48}, instructions)
    sharded = [not leaf.sharding.is_fully_replicated for leaf in jax.tree.leaves(run.state.params)]
    assert any(sharded) == (layout != (1, 1, 1))  # the encoder reads the parameters as they are sharded
    for side in ("query", "document"):
        np.testing.assert_allclose(live.encode(TEXTS, side, 8), ref.encode(TEXTS, side, 8), atol=2e-5)
        np.testing.assert_allclose(live.for_task("code").encode(TEXTS, side, 8),
                                   ref.for_task("code").encode(TEXTS, side, 8), atol=2e-5)
    assert not np.allclose(live.for_task("code").encode(TEXTS[:2], "query"), live.encode(TEXTS[:2], "query"))
    assert live.for_task("site_text") is live  # no instruction of that name: as is


def test_live_encoder_of_a_lora_run_equals_the_merged_model(tokenizer):
    from cpt_jax.model.lora import merge
    from tests.train.test_lora import _perturbed, _run  # the tiny model: vocab 64, so ids below 64 only

    run = _run((2, 4, 1), lora=LoraConfig(rank=4, alpha=8.0))
    params, frozen = _perturbed(run)
    run.state = jax.device_put(run.state.replace(params=params), run.shardings)
    merged = merge(frozen["encoder"], params["lora"], run.config.lora)
    live = LiveEncoder(run, tokenizer, {"x": 12, "y": 12}, {})
    ref = Embedder(run.config.model, merged, tokenizer, {"x": 12, "y": 12})
    np.testing.assert_allclose(live.encode(TEXTS, "query", 8), ref.encode(TEXTS, "query", 8), atol=2e-5)


def test_flatten_names_tasks_and_means():
    results = {"site_code/validation (9 queries, 9 docs)": {TRAINED: {"ndcg@10": 0.5, "mrr": 0.4}},
               "beir:toy/test (5 queries, 30 docs)": {TRAINED: {"ndcg@10": 0.7, "mrr@10": 0.2}},
               "classification:toy_cls (30 train, 10 test)": {TRAINED: {"accuracy": 0.9}}}
    assert flatten(results) == {"site_code/validation/ndcg@10": 0.5, "site_code/validation/mrr": 0.4,
                                "beir:toy/test/ndcg@10": 0.7, "beir:toy/test/mrr@10": 0.2,
                                "classification:toy_cls/accuracy": 0.9, "mean/ndcg@10": pytest.approx(0.6)}


@pytest.mark.parametrize("lora", [LoraConfig(), LoraConfig(rank=4, alpha=8.0)], ids=["full", "lora"])
def test_train_scores_folders_during_training_and_keeps_the_best(tmp_path, lora):
    """With LoRA the live encoder runs the adapters beside the frozen base, and the evaluate CLI's
    Embedder loads the checkpoint merged: the same scores."""
    beir, cls_dir = write_toy_folders(str(tmp_path))
    metric = "beir:toy_beir/test/ndcg@10"
    evaluation = EvalConfig(every=2, split="test", beir=(beir,), classification=(cls_dir,), best_metric=metric,
                            batch_size=16)
    config = _small_run(tmp_path, num_steps=4, checkpoint_every=100, keep_checkpoints=1, log_every=2,
                        evaluation=evaluation, lora=lora)
    loop.train(config, make_evaluator=make_evaluator)
    rows = [json.loads(line) for line in open(tmp_path / "run" / "metrics.jsonl")]
    scored = {r["step"]: r for r in rows if f"eval/{metric}" in r}
    assert sorted(scored) == [0, 2, 4]
    assert {"eval/beir:toy_beir/test/recall@100", "eval/classification:toy_cls/accuracy"} <= set(scored[4])
    best = json.loads((tmp_path / "run" / "best.json").read_text())
    values = {s: r[f"eval/{metric}"] for s, r in scored.items()}
    assert best["value"] == max(values.values()) and values[best["step"]] == best["value"]
    steps = sorted(int(d) for d in os.listdir(tmp_path / "run" / "checkpoints") if d.isdigit())
    assert steps == sorted({best["step"], 4})
    # The scores are the evaluate CLI's for the same checkpoint and folder.
    from cpt_jax.eval.spec import EvalSpec
    from cpt_jax.eval.suite import evaluate

    model = Embedder.load(str(tmp_path / "run"), 4)
    spec = EvalSpec(tasks=(), beir=(beir,), classification=(), baselines=False, batch_size=16)
    (scores,) = evaluate({TRAINED: model}, spec).values()
    assert scores[TRAINED]["ndcg@10"] == pytest.approx(values[4], abs=1e-6)
