"""PlanSpec: what to plan (a model, a global batch, lengths, a device count, an accelerator) and
Layout: one way to run it (mesh sizes, GradCache chunk, remat), turned into the run's TrainConfig.

The CLI builds a PlanSpec from flags and gin (cpt_jax/cli/plan.py); nothing here reads either.
"""

from __future__ import annotations

import dataclasses
from typing import ClassVar

from cpt_jax.data.config import DataConfig
from cpt_jax.loss import LossConfig
from cpt_jax.model import LoraConfig
from cpt_jax.model import ModelConfig
from cpt_jax.model.config import REMAT_POLICIES
from cpt_jax.parallel.mesh import MeshConfig
from cpt_jax.plan.hardware import accelerator
from cpt_jax.train.config import TrainConfig
from cpt_jax.train.optimizer import OptimizerConfig
from cpt_jax.train.state import TemperatureConfig
from cpt_jax.typecheck import Bound, at_least, between, check_field_types


@dataclasses.dataclass(frozen=True, kw_only=True)
class PlanSpec:
    """A run to plan.

    model: the encoder (configs/model/*.gin). global_batch: pairs per step (the N of N x N logits).
    len_x, len_y: padded token lengths of the two sides. devices: the target's device count.
    accelerator: a name of plan/hardware.ACCELERATORS (v4, v5e, v5p, a100, h100, h200).
    mesh, grad_cache_chunk, remat: fix that part of the layout; None leaves it to the search (or,
      without search, takes MeshConfig(data=-1), the plain step and ModelConfig.remat).
    pack_sequences: plan the packed batch (TrainConfig.pack_sequences), whose rows hold the
      sequences of a group at an average fill of pack_fill (real tokens / padded length).
    search: try layouts (plan/search.py) rather than compile the one given.
    max_compiles: layouts the search compiles (the most promising by the analytic estimate).
    memory_fraction: the part of the accelerator's memory a plan may use; the rest is left to the
      runtime (JAX on GPU preallocates 75% by default; XLA_PYTHON_CLIENT_MEM_FRACTION raises it).
    target_pairs: training pairs to report the days for (0: days per billion pairs).
    optimizer, temperature, loss, lora, sharding_rules: as the run's TrainConfig has them (lora: plan
      a LoRA run, its optimizer state and gradients those of the adapters alone).
    """

    model: ModelConfig
    global_batch: int
    len_x: int
    len_y: int
    devices: int
    accelerator: str = "v5p"
    mesh: MeshConfig | None = None
    grad_cache_chunk: int | None = None
    remat: str | None = None
    pack_sequences: bool = False
    pack_fill: float = 0.5
    search: bool = True
    max_compiles: int = 6
    memory_fraction: float = 0.9
    target_pairs: float = 0.0
    optimizer: OptimizerConfig = OptimizerConfig()
    temperature: TemperatureConfig = TemperatureConfig()
    loss: LossConfig = LossConfig()
    lora: LoraConfig = LoraConfig()
    sharding_rules: tuple | None = None

    BOUNDS: ClassVar[dict[str, Bound]] = {
        "global_batch": at_least(1, "pairs per step over all devices"),
        "len_x": at_least(2, "tokens of an x text, delimiters included"),
        "len_y": at_least(2, "tokens of a y text, delimiters included"),
        "devices": at_least(1, "accelerator chips or GPUs of the target"),
        "grad_cache_chunk": at_least(0, "pairs per GradCache chunk; 0 for the plain step"),
        "pack_fill": between(0.0, 1.0, "real tokens per padded position of a packed side", lo_open=True),
        "max_compiles": at_least(1, "layouts the search compiles"),
        "memory_fraction": between(0.0, 1.0, "the part of a device's memory a plan may use", lo_open=True),
        "target_pairs": at_least(0.0, "training pairs to report the days for; 0 for days per billion"),
    }

    def __post_init__(self) -> None:
        check_field_types(self)  # types, then the BOUNDS above
        accelerator(self.accelerator)  # a ValueError naming the table's choices
        if self.remat is not None and self.remat not in REMAT_POLICIES:
            raise ValueError(f"PlanSpec.remat={self.remat!r}; choose one of {REMAT_POLICIES} (or None to search).")
        for side in ("x", "y"):
            length = getattr(self, f"len_{side}")
            if length > self.model.max_len:
                raise ValueError(
                    f"PlanSpec.len_{side}={length} exceeds ModelConfig.max_len={self.model.max_len}; "
                    "lower the length or raise the model's max_len."
                )
        if self.mesh is not None:
            self.mesh.resolve(self.devices)  # a ValueError that says what to set


@dataclasses.dataclass(frozen=True, order=True)
class Layout:
    """One way to run a spec: mesh sizes (data x fsdp x tensor), GradCache chunk (pairs over all
    devices, 0: the plain step) and the model's remat policy."""

    data: int
    fsdp: int
    tensor: int
    chunk: int
    remat: str

    @property
    def batch_shards(self) -> int:
        return self.data * self.fsdp

    def __str__(self) -> str:
        chunk = f"GradCache {self.chunk}" if self.chunk else "plain"
        return f"{self.data}x{self.fsdp}x{self.tensor} {chunk} remat {self.remat}"


def train_config(spec: PlanSpec, layout: Layout) -> TrainConfig:
    """The TrainConfig of `spec` run with `layout`: the config the loop would be given (its data
    stands for batches of the spec's lengths; nothing of it is read)."""
    model = dataclasses.replace(spec.model, remat=layout.remat)
    return TrainConfig(
        output_dir="",
        model=model,
        data=DataConfig(max_len_x=spec.len_x, max_len_y=spec.len_y, stream_readers=1),
        num_steps=1000,
        global_batch_size=spec.global_batch,
        mesh=MeshConfig(data=layout.data, fsdp=layout.fsdp, tensor=layout.tensor),
        optimizer=spec.optimizer,
        temperature=spec.temperature,
        loss=spec.loss,
        lora=spec.lora,
        sharding_rules=spec.sharding_rules,
        grad_cache_chunk_size=layout.chunk,
        pack_sequences=spec.pack_sequences,
    )


def given_layout(spec: PlanSpec) -> Layout:
    """The layout a spec fixes, with defaults where it leaves a part open (MeshConfig(data=-1),
    the plain step, the model's remat)."""
    data, fsdp, tensor = (spec.mesh or MeshConfig()).resolve(spec.devices)
    chunk = spec.grad_cache_chunk or 0
    return Layout(data, fsdp, tensor, chunk, spec.remat or spec.model.remat)
