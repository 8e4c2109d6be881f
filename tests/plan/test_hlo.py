"""Reading compiled HLO: collectives with exact bytes on known programs, every replica-group form,
loops counted by trip count, and kernel-level FLOPs and bytes of a hand-written module."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from jax.sharding import NamedSharding
from jax.sharding import PartitionSpec as P

from cpt_jax.plan.collectives import replica_groups, wire_bytes
from cpt_jax.plan.hlo import read_program, type_bytes


@pytest.fixture(scope="module")
def mesh():
    return jax.make_mesh((2, 4), ("a", "b"), devices=jax.devices()[:8])


def _compiled_text(fn, mesh, out_spec):
    f = jax.jit(jax.shard_map(fn, mesh=mesh, in_specs=P("a", "b"), out_specs=out_spec, check_vma=False))
    x = jax.ShapeDtypeStruct((8, 64), jnp.float32, sharding=NamedSharding(mesh, P("a", "b")))
    return f.lower(x).compile().as_text()


def test_one_all_gather_has_exact_bytes_and_groups(mesh):
    # Each device holds [4, 16] float32 (256 bytes); gathering over "b" (4 devices) gives [16, 16].
    text = _compiled_text(lambda x: jax.lax.all_gather(x, "b", tiled=True), mesh, P("a", None))
    program = read_program(text)
    assert program.by_kind()["all-gather"] == (1, 16 * 16 * 4, 16 * 16 * 4 * 3 / 4)
    assert sum(runs for runs, _, _ in program.by_kind().values()) == 1
    (gather,) = program.collectives
    assert gather.group_size == 4
    assert sorted(map(sorted, gather.groups.tolist())) == [[0, 1, 2, 3], [4, 5, 6, 7]]
    assert not gather.crosses(4) and gather.crosses(2) and not gather.crosses(0)


def test_a_collective_in_a_scan_counts_once_per_iteration(mesh):
    def fn(x):
        return jax.lax.scan(lambda c, _: (c + jax.lax.psum(c, "b"), None), x, None, length=5)[0]

    program = read_program(_compiled_text(fn, mesh, P("a", "b")))
    runs, payload, wire = program.by_kind()["all-reduce"]
    assert (runs, payload, wire) == (5, 5 * 256, 5 * 2 * 256 * 3 / 4)
    assert program.unknown_loops == 0


@pytest.mark.parametrize(
    "attrs,expected",
    [
        ("replica_groups={{0,1},{2,3}}, dimensions={0}", [[0, 1], [2, 3]]),
        ("replica_groups={}, to_apply=%r", [[0, 1, 2, 3]]),
        ("replica_groups=[2,2]<=[4], dimensions={0}", [[0, 1], [2, 3]]),
        ("replica_groups=[2,2]<=[2,2]T(1,0), dimensions={0}", [[0, 2], [1, 3]]),
        ("replica_groups=[4,2]<=[2,2,2]T(1,0,2), x", [[0, 1], [4, 5], [2, 3], [6, 7]]),
        ("replica_groups=mesh['axis_0'=2,'axis_1'=2] {'axis_1'}, x", [[0, 1], [2, 3]]),
        ("replica_groups=mesh['axis_0'=2,'axis_1'=2] {'axis_0'}, x", [[0, 2], [1, 3]]),
        ("replica_groups=mesh['axis_0'=2,'axis_1'=4], device_ids=([2,2,2]T(1,0,2)) {'axis_0'}, x",
         [[0, 2], [1, 3], [4, 6], [5, 7]]),
        ("replica_groups=mesh['axis_0'=8] {'axis_0':(2)2}, x", [[0, 2], [1, 3], [4, 6], [5, 7]]),
    ],
)
def test_every_replica_group_form_is_read(attrs, expected):
    groups = replica_groups(attrs, 4)
    assert sorted(map(sorted, groups.tolist())) == sorted(map(sorted, expected))


def test_an_unknown_form_is_none():
    assert replica_groups("channel_id=3", 4) is None


def test_wire_bytes_follow_the_ring_algorithms():
    assert wire_bytes("all-gather", 800, 8) == 700
    assert wire_bytes("reduce-scatter", 100, 8) == 700  # its input is 8 x 100
    assert wire_bytes("all-reduce", 800, 8) == 1400
    assert wire_bytes("all-to-all", 800, 4) == 600
    assert wire_bytes("collective-permute", 800, 2, 0.5) == 400
    assert wire_bytes("all-reduce", 800, 1) == 0


def test_type_bytes():
    assert type_bytes("f32[96,768]{1,0}") == 96 * 768 * 4
    assert type_bytes("(bf16[2,3]{1,0}, /*index=1*/s32[], pred[4])") == 12 + 4 + 4
    assert type_bytes("token[]") == 0


# A scan of 4 iterations over stacked weights [4, 8, 8]: each iteration slices one layer inside a
# fusion and multiplies [2, 8] by it; an all-reduce of the product; a dynamic-update-slice in place.
MODULE = """HloModule m, num_partitions=2

%fused_slice (p0: f32[4,8,8], p1: s32[]) -> f32[8,8] {
  %p0 = f32[4,8,8]{2,1,0} parameter(0)
  %p1 = s32[] parameter(1)
  %z = s32[] constant(0)
  %ds = f32[1,8,8]{2,1,0} dynamic-slice(%p0, %p1, %z, %z), dynamic_slice_sizes={1,8,8}
  ROOT %b = f32[8,8]{1,0} bitcast(%ds)
}

%sum (x: f32[], y: f32[]) -> f32[] {
  %x = f32[] parameter(0)
  %y = f32[] parameter(1)
  ROOT %s = f32[] add(%x, %y)
}

%body (t: (s32[], f32[2,8], f32[4,8,8])) -> (s32[], f32[2,8], f32[4,8,8]) {
  %t = (s32[], f32[2,8]{1,0}, f32[4,8,8]{2,1,0}) parameter(0)
  %i = s32[] get-tuple-element(%t), index=0
  %h = f32[2,8]{1,0} get-tuple-element(%t), index=1
  %w = f32[4,8,8]{2,1,0} get-tuple-element(%t), index=2
  %layer = f32[8,8]{1,0} fusion(%w, %i), kind=kLoop, calls=%fused_slice
  %d = f32[2,8]{1,0} dot(%h, %layer), lhs_contracting_dims={1}, rhs_contracting_dims={0}
  %ar = f32[2,8]{1,0} all-reduce(%d), channel_id=1, replica_groups={{0,1}}, use_global_device_ids=true, to_apply=%sum
  %one = s32[] constant(1)
  %n = s32[] add(%i, %one)
  ROOT %r = (s32[], f32[2,8]{1,0}, f32[4,8,8]{2,1,0}) tuple(%n, %ar, %w)
}

%cond (t: (s32[], f32[2,8], f32[4,8,8])) -> pred[] {
  %t = (s32[], f32[2,8]{1,0}, f32[4,8,8]{2,1,0}) parameter(0)
  %i = s32[] get-tuple-element(%t), index=0
  %k = s32[] constant(4)
  ROOT %lt = pred[] compare(%i, %k), direction=LT
}

ENTRY %main (a: f32[2,8], w: f32[4,8,8], big: f32[64,8]) -> f32[64,8] {
  %a = f32[2,8]{1,0} parameter(0)
  %w = f32[4,8,8]{2,1,0} parameter(1)
  %big = f32[64,8]{1,0} parameter(2)
  %zero = s32[] constant(0)
  %init = (s32[], f32[2,8]{1,0}, f32[4,8,8]{2,1,0}) tuple(%zero, %a, %w)
  %loop = (s32[], f32[2,8]{1,0}, f32[4,8,8]{2,1,0}) while(%init), condition=%cond, body=%body, backend_config={"known_trip_count":{"n":"4"}}
  %out = f32[2,8]{1,0} get-tuple-element(%loop), index=1
  ROOT %u = f32[64,8]{1,0} dynamic-update-slice(%big, %out, %zero, %zero)
}
"""


def test_a_hand_written_module_counts_loops_slices_and_in_place_updates():
    program = read_program(MODULE)
    assert program.num_partitions == 2 and program.unknown_loops == 0
    assert program.flops == 4 * 2 * 2 * 8 * 8  # 4 iterations of [2, 8] @ [8, 8]
    # per iteration: the fusion reads one [8, 8] slice and a scalar and writes [8, 8]; the dot reads
    # [2, 8] and [8, 8] and writes [2, 8]; the all-reduce reads and writes [2, 8]; the add 3 scalars;
    # the condition's compare runs 5 times; then the update reads and writes [2, 8] once.
    per_iteration = (256 + 4 + 256) + (64 + 256 + 64) + (64 + 64) + 12
    assert program.traffic == 4 * per_iteration + 5 * (1 + 4 + 4) + 2 * 64
    assert program.by_kind()["all-reduce"] == (4, 4 * 64, 4 * 64)


def test_a_loop_without_a_trip_count_counts_once_and_is_reported():
    program = read_program(MODULE.replace(', backend_config={"known_trip_count":{"n":"4"}}', ""))
    assert program.unknown_loops == 1
    assert program.by_kind()["all-reduce"][0] == 1


def test_text_without_an_entry_is_refused():
    with pytest.raises(ValueError, match="no ENTRY computation"):
        read_program("HloModule m\n")


def test_collective_permute_counts_only_pairs_that_move(mesh):
    groups = np.array([[0, 0], [1, 2], [2, 1], [3, 3]])
    from cpt_jax.plan.collectives import collective

    c = collective("collective-permute", 100.0, "source_target_pairs={{0,0},{1,2},{2,1},{3,3}}", 3, 4)
    assert c.wire == 50.0 and c.runs == 3 and (c.groups == groups).all()


# XLA:CPU wraps a bfloat16 in-place update in converts (buffer -> f32, update, -> bf16); it is
# still an in-place update of one row on an accelerator.
IN_PLACE = """HloModule m

%fused_update (p0: bf16[4,8], p1: bf16[1,8], p2: s32[]) -> bf16[4,8] {
  %p0 = bf16[4,8]{1,0} parameter(0)
  %wide = f32[4,8]{1,0} convert(%p0)
  %p1 = bf16[1,8]{1,0} parameter(1)
  %row = f32[1,8]{1,0} convert(%p1)
  %p2 = s32[] parameter(2)
  %z = s32[] constant(0)
  %u = f32[4,8]{1,0} dynamic-update-slice(%wide, %row, %p2, %z)
  ROOT %narrow = bf16[4,8]{1,0} convert(%u)
}

ENTRY %main (b: bf16[4,8], r: bf16[1,8], i: s32[]) -> bf16[4,8] {
  %b = bf16[4,8]{1,0} parameter(0)
  %r = bf16[1,8]{1,0} parameter(1)
  %i = s32[] parameter(2)
  ROOT %f = bf16[4,8]{1,0} fusion(%b, %r, %i), kind=kLoop, calls=%fused_update
}
"""


def test_an_in_place_update_through_converts_counts_the_update():
    # writes one bf16 row (16 bytes); reads the row (16) and the index (4); the buffer is not copied
    assert read_program(IN_PLACE).traffic == 16 + 16 + 4
