"""The roofline on hand-computed numbers, the accelerator table, and model FLOPs of a packed step."""

import dataclasses

import numpy as np
import pytest

from cpt_jax.model import ModelConfig
from cpt_jax.model.flops import train_step_flops
from cpt_jax.plan.collectives import Collective
from cpt_jax.plan.estimate import estimate, model_step_flops
from cpt_jax.plan.hardware import ACCELERATORS, Accelerator, accelerator
from cpt_jax.plan.hlo import Op, Program

DEVICE = Accelerator("test", "gpu", peak_flops=1e15, hbm_bytes=80e9, hbm_bandwidth=1e12, link_bandwidth=1e11,
                     network_bandwidth=1e10, node_size=8, source="made up")


def _gather(runs: int, groups: np.ndarray) -> Collective:
    return Collective("all-gather", 8e9, groups.shape[1], runs, 8e9 * 7 / 8, groups)


def test_the_roofline_on_hand_computed_numbers():
    ops = (Op(flops=2e12, bytes=1e9, runs=10), Op(flops=0.0, bytes=4e9, runs=5))
    within = np.arange(16).reshape(2, 8)  # two groups of 8 inside nodes of 8
    program = Program((_gather(2, within),), ops, unknown_loops=0, num_partitions=16)
    e = estimate(program, DEVICE, devices=16, model_flops=1.2e13, batch=1000, target_pairs=1e8)
    # ops: 10 x max(2e12 / 1e15, 1e9 / 1e12) + 5 x max(0, 4e9 / 1e12) = 0.02 + 0.02
    assert e.ops_s == pytest.approx(0.04)
    assert e.flops_s == pytest.approx(20e12 / 1e15) and e.hbm_s == pytest.approx(30e9 / 1e12)
    # collectives: 2 runs x 7e9 wire bytes at the NVLink 1e11 B/s
    assert e.comm_s == pytest.approx(0.14)
    assert e.step_s == pytest.approx(0.14) and e.serial_s == pytest.approx(0.18)
    assert e.bound == "collectives"
    assert e.mfu == pytest.approx(1.2e13 / (0.14 * 16 * 1e15))
    assert e.pairs_per_s == pytest.approx(1000 / 0.14)
    assert e.days == pytest.approx(1e8 / (1000 / 0.14) / 86400)


def test_a_group_that_leaves_the_node_runs_at_the_network_bandwidth():
    across = np.array([[0, 8], [1, 9]])
    program = Program((_gather(1, across),), (Op(1e12, 0.0, 1),), 0, 16)
    e = estimate(program, DEVICE, 16, 1e12, 10)
    assert e.comm_s == pytest.approx(7e9 / 1e10)
    tpu = dataclasses.replace(DEVICE, node_size=0)  # a TPU slice: one ICI domain
    assert estimate(program, tpu, 16, 1e12, 10).comm_s == pytest.approx(7e9 / 1e11)


def test_without_a_target_the_days_are_per_billion_pairs():
    program = Program((), (Op(1e15, 0.0, 1),), 0, 1)
    e = estimate(program, DEVICE, 1, 1e15, 100)
    assert e.step_s == pytest.approx(1.0) and e.bound == "compute" and e.mfu == pytest.approx(1.0)
    assert e.days == pytest.approx(1e9 / 100 / 86400)


def test_a_program_with_nothing_to_time_is_refused():
    with pytest.raises(ValueError, match="no ops"):
        estimate(Program((), (), 0, 1), DEVICE, 1, 1.0, 1)


def test_the_table_has_every_named_accelerator_with_a_source():
    assert set(ACCELERATORS) == {"v4", "v5e", "v5p", "a100", "h100", "h200"}
    for a in ACCELERATORS.values():
        assert a.source.startswith("https://") and a.peak_flops > 1e14 and a.hbm_bytes > 1e10
        assert a.kind in ("tpu", "gpu") and (a.node_size == 8) == (a.kind == "gpu")
    assert accelerator("H100") is ACCELERATORS["h100"]
    with pytest.raises(ValueError, match="Did you mean 'v5p'"):
        accelerator("v5")


def test_packed_model_flops_count_the_fill():
    model = ModelConfig()
    assert model_step_flops(model, 8, 64, 32) == train_step_flops(model, 8, 64, 32)
    assert model_step_flops(model, 8, 64, 32, pack_fill=0.5) == train_step_flops(model, 8, 32, 16)
