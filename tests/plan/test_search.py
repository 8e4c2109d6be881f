"""The layout search: candidates, a layout that cannot fit dropped and the rest ranked, and the
named errors of bad input (a batch the mesh does not divide, nothing that fits, bad specs)."""

import dataclasses

import pytest

from cpt_jax.model import ModelConfig
from cpt_jax.parallel.mesh import MeshConfig
from cpt_jax.plan import hardware, search
from cpt_jax.plan.spec import Layout, PlanSpec

SMALL = ModelConfig(vocab_size=512, d_model=32, num_layers=2, num_heads=2, d_mlp=64, max_len=16)
SPEC = PlanSpec(model=SMALL, global_batch=16, len_x=8, len_y=8, devices=8, accelerator="h100")
REPLICATED, SHARDED = Layout(8, 1, 1, 0, "none"), Layout(1, 8, 1, 0, "none")


def test_candidate_meshes_divide_the_batch_and_the_heads():
    meshes = search.meshes(SPEC)
    assert (8, 1, 1) in meshes and (1, 4, 2) in meshes and (2, 2, 2) in meshes
    assert all(d * f * t == 8 and 16 % (d * f) == 0 and 2 % t == 0 for d, f, t in meshes)
    odd = dataclasses.replace(SPEC, global_batch=12)  # 12 splits over 4 shards at most
    assert {d * f for d, f, _ in search.meshes(odd)} == {4}
    fixed = dataclasses.replace(SPEC, mesh=MeshConfig(data=-1, fsdp=2, tensor=1))
    assert search.meshes(fixed) == [(4, 2, 1)]


def test_chunks_are_multiples_of_the_shards_that_divide_the_batch():
    assert search.chunks(dataclasses.replace(SPEC, global_batch=64), 8) == [0, 8, 16, 32]
    assert search.chunks(dataclasses.replace(SPEC, global_batch=4976), 16) == [0, 16]  # 4976 = 16 x 311
    assert search.chunks(dataclasses.replace(SPEC, grad_cache_chunk=8), 8) == [8]
    layouts = search.candidates(dataclasses.replace(SPEC, remat="full"))
    assert all(l.remat == "full" for l in layouts) and Layout(8, 1, 1, 8, "full") in layouts


@pytest.fixture
def two_layouts(monkeypatch):
    """The search over just the replicated and the FSDP layout, both compiled, on a made-up
    device whose memory holds the sharded state but not the replicated one."""
    monkeypatch.setattr(search, "candidates", lambda spec: [REPLICATED, SHARDED])
    monkeypatch.setattr(search, "_ANALYTIC_SLACK", 1e9)

    def with_memory(peak_between: tuple[float, float]) -> PlanSpec:
        device = dataclasses.replace(hardware.ACCELERATORS["h100"], name="test", hbm_bytes=sum(peak_between) / 2)
        monkeypatch.setitem(hardware.ACCELERATORS, "test", device)
        return dataclasses.replace(SPEC, accelerator="test", memory_fraction=1.0)

    return with_memory


def test_a_layout_that_cannot_fit_is_dropped_and_the_rest_ranked(two_layouts):
    sharded, replicated = (search.plan_one(SPEC, layout).plan.peak_bytes for layout in (SHARDED, REPLICATED))
    assert sharded < replicated  # the replicated state is 8 times the sharded one
    spec = two_layouts((sharded, replicated))
    result = search.search(spec)
    assert [c.layout for c in result.ranked] == [SHARDED]
    assert [c.layout for c in result.dropped] == [REPLICATED]
    assert result.dropped[0].dropped.startswith("needs") and result.dropped[0].plan is not None
    assert result.best.estimate.step_s > 0 and result.considered == 2


def test_every_layout_fitting_is_ranked_fastest_first(two_layouts):
    spec = two_layouts((1e12, 1e12))
    result = search.search(spec)
    assert len(result.ranked) == 2 and not result.dropped
    assert result.ranked[0].estimate.step_s <= result.ranked[1].estimate.step_s


def test_nothing_fitting_is_a_named_error_with_what_would(two_layouts):
    spec = two_layouts((1e3, 1e3))
    closest = r"no tried layout .* usable each\): the closest, \dx\dx1 plain remat none, needs [\d.]+ MiB"
    with pytest.raises(search.NoFit, match=closest):
        search.search(spec)


def test_a_batch_the_mesh_does_not_divide_names_the_nearest_batches_and_meshes():
    spec = dataclasses.replace(SPEC, global_batch=12, mesh=MeshConfig(data=8))
    with pytest.raises(ValueError, match=r"global batch 12 does not split over the 8 batch shards .* nearest batches "
                                         r"that do: 8 and 16; meshes of 8 devices that divide batch 12: .*4x1x2"):
        search.plan_one(spec)
    chunked = dataclasses.replace(SPEC, grad_cache_chunk=12, mesh=MeshConfig(data=8))
    with pytest.raises(ValueError, match="GradCache chunk 12"):
        search.plan_one(chunked)


def test_no_mesh_for_the_batch_is_a_named_error():
    with pytest.raises(ValueError, match="no mesh of 8 devices splits global batch 3 .* use batch 8, or fix"):
        search.search(dataclasses.replace(SPEC, global_batch=3))


def test_the_batch_note_says_how_far_the_batch_splits():
    assert search.batch_note(SPEC) == ""
    note = search.batch_note(dataclasses.replace(SPEC, global_batch=4976, devices=256))
    assert "at most 16 of the 256 devices" in note and "4864 or 5120" in note


@pytest.mark.parametrize(
    "change,match",
    [
        (dict(len_x=32), "PlanSpec.len_x=32 exceeds ModelConfig.max_len=16"),
        (dict(accelerator="tpu9"), "accelerator 'tpu9' is not in the table"),
        (dict(remat="some"), "PlanSpec.remat='some'"),
        (dict(memory_fraction=0.0), "PlanSpec.memory_fraction=0.0 is out of range"),
        (dict(devices=0), "PlanSpec.devices=0 is out of range"),
        (dict(mesh=MeshConfig(data=3)), "needs 3 devices but 8 are present"),
    ],
)
def test_bad_specs_name_the_field_and_the_fix(change, match):
    with pytest.raises(ValueError, match=match):
        dataclasses.replace(SPEC, **change)
