"""MeshConfig sizing and the batch split."""

from __future__ import annotations

import jax
import pytest

from cpt_jax.parallel.mesh import MESH_AXES, MeshConfig, batch_size_per_shard, make_mesh


def test_conftest_gives_eight_cpu_devices():
    assert len(jax.devices()) == 8
    assert jax.devices()[0].platform == "cpu"


@pytest.mark.parametrize(
    "config, devices, sizes",
    [
        (MeshConfig(), 8, (8, 1, 1)),
        (MeshConfig(data=-1, fsdp=2), 8, (4, 2, 1)),
        (MeshConfig(data=2, fsdp=-1, tensor=2), 8, (2, 2, 2)),
        (MeshConfig(data=1, fsdp=1, tensor=-1), 4, (1, 1, 4)),
        (MeshConfig(data=2, fsdp=2, tensor=2), 8, (2, 2, 2)),
        (MeshConfig(data=1), 1, (1, 1, 1)),
    ],
)
def test_resolve(config, devices, sizes):
    assert config.resolve(devices) == sizes


def test_resolve_mismatched_product_names_the_counts():
    with pytest.raises(ValueError, match=r"MeshConfig\(data=2, fsdp=2, tensor=1\) needs 4 devices but 8 are present"):
        MeshConfig(data=2, fsdp=2, tensor=1).resolve(8)
    with pytest.raises(ValueError, match=r"fixed axes multiply to 3, which does not divide the 8 devices"):
        MeshConfig(data=-1, fsdp=3).resolve(8)


@pytest.mark.parametrize("sizes", [(-1, -1, 1), (0, 1, 1), (2, -2, 1)])
def test_resolve_rejects_bad_sizes(sizes):
    with pytest.raises(ValueError, match=r"at most one may be -1"):
        MeshConfig(*sizes).resolve(8)


def test_make_mesh_shape_and_devices():
    mesh = make_mesh(MeshConfig(data=2, fsdp=-1, tensor=2))
    assert mesh.axis_names == MESH_AXES
    assert dict(mesh.shape) == {"data": 2, "fsdp": 2, "tensor": 2}
    assert sorted(d.id for d in mesh.devices.flat) == list(range(8))
    small = make_mesh(MeshConfig(data=-1), jax.devices()[:2])
    assert dict(small.shape) == {"data": 2, "fsdp": 1, "tensor": 1}
    with pytest.raises(ValueError, match="needs 8 devices but 2 are present"):
        make_mesh(MeshConfig(data=2, fsdp=2, tensor=2), jax.devices()[:2])


def test_batch_size_per_shard():
    mesh = make_mesh(MeshConfig(data=2, fsdp=2, tensor=2))
    assert batch_size_per_shard(mesh, 16) == 4  # tensor does not split the batch
    assert batch_size_per_shard(make_mesh(MeshConfig(data=8)), 16) == 2
    with pytest.raises(ValueError, match=r"global batch 10 is not divisible by the 4 batch shards.*2 x 2.*multiple of 4"):
        batch_size_per_shard(mesh, 10)
