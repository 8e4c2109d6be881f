"""The device mesh: named axes (data, fsdp, tensor) sized from config."""

from __future__ import annotations

import dataclasses
import math
from typing import ClassVar

import jax
from jax.sharding import AxisType, Mesh

from cpt_jax.typecheck import Bound, at_least, check_field_types

MESH_AXES = ("data", "fsdp", "tensor")
BATCH_AXES = ("data", "fsdp")  # the global batch is split over these


@dataclasses.dataclass(frozen=True)
class MeshConfig:
    """Sizes of the mesh axes. One size may be -1: it takes whatever devices are left.

    data: pure data parallelism (parameters replicated).
    fsdp: data parallelism with parameters and optimizer state sharded (ZeRO-3 style).
    tensor: Megatron-style sharding of heads and MLP width.
    """

    data: int = -1
    fsdp: int = 1
    tensor: int = 1

    # -1 is allowed (it absorbs the devices left); 0 is refused in __post_init__.
    BOUNDS: ClassVar[dict[str, Bound]] = {
        name: at_least(-1, "a device count; each axis size must be positive, and at most one may be -1")
        for name in ("data", "fsdp", "tensor")
    }

    def __post_init__(self) -> None:
        check_field_types(self)  # types, then the BOUNDS above
        for name in ("data", "fsdp", "tensor"):
            if getattr(self, name) == 0:
                raise ValueError(
                    f"MeshConfig.{name}=0 is out of range: each axis size must be positive, and at most one may "
                    "be -1 (it takes the devices left); use 1 for an axis the run does not split over."
                )
        free = [name for name in ("data", "fsdp", "tensor") if getattr(self, name) == -1]
        if len(free) > 1:
            raise ValueError(
                f"MeshConfig: {' and '.join(f'{n}=-1' for n in free)}; each axis size must be positive, and at "
                "most one may be -1 (it takes the devices left); give the others explicit sizes."
            )

    def resolve(self, num_devices: int) -> tuple[int, int, int]:
        """Concrete (data, fsdp, tensor) sizes for num_devices, or a ValueError that says what to set."""
        sizes = [self.data, self.fsdp, self.tensor]
        free = [i for i, s in enumerate(sizes) if s == -1]
        if len(free) > 1 or any(s == 0 or s < -1 for s in sizes):
            raise ValueError(
                f"MeshConfig{tuple(sizes)}: each axis size must be positive, and at most one may be -1."
            )
        known = math.prod(s for s in sizes if s != -1)
        if free:
            if num_devices % known:
                raise ValueError(
                    f"MeshConfig fixed axes multiply to {known}, which does not divide the {num_devices} "
                    "devices; choose sizes whose product divides the device count."
                )
            sizes[free[0]] = num_devices // known
        elif known != num_devices:
            raise ValueError(
                f"MeshConfig(data={sizes[0]}, fsdp={sizes[1]}, tensor={sizes[2]}) needs {known} devices but "
                f"{num_devices} are present; set one axis to -1 to absorb the rest, or match the product."
            )
        return tuple(sizes)  # type: ignore[return-value]


def make_mesh(config: MeshConfig, devices: list | None = None) -> Mesh:
    """A mesh over all (or the given) devices with GSPMD-style Auto axes.

    Auto axes let jit propagate shardings from the annotated params and inputs (pjit style);
    explicit collectives happen only inside the loss's shard_map.
    """
    devices = jax.devices() if devices is None else devices
    shape = config.resolve(len(devices))
    return jax.make_mesh(shape, MESH_AXES, axis_types=(AxisType.Auto,) * 3, devices=devices)


def batch_size_per_shard(mesh: Mesh, global_batch: int) -> int:
    """Rows per batch shard; a ValueError if the batch does not split evenly."""
    shards = math.prod(mesh.shape[a] for a in BATCH_AXES)
    if global_batch % shards:
        raise ValueError(
            f"global batch {global_batch} is not divisible by the {shards} batch shards "
            f"(mesh data x fsdp = {mesh.shape['data']} x {mesh.shape['fsdp']}); use a multiple of {shards}."
        )
    return global_batch // shards
