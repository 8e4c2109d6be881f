"""The accelerators a plan can target: peak compute, memory and interconnect, each with its source.

Every figure is the vendor's public number for one device (one TPU chip, one GPU), in the unit
the source states it (GB = 1e9 bytes, GiB = 2**30 bytes):

| name | peak dense bf16 | HBM | HBM bandwidth | link (per direction) | across nodes | source |
| --- | --- | --- | --- | --- | --- | --- |
| v4   | 275 TFLOP/s | 32 GiB  | 1200 GB/s | 268.6 GB/s ICI (1)  | = ICI | https://cloud.google.com/tpu/docs/v4 |
| v5e  | 197 TFLOP/s | 16 GiB  | 819 GB/s  | 200 GB/s ICI (2)    | = ICI | https://cloud.google.com/tpu/docs/v5e |
| v5p  | 459 TFLOP/s | 95 GiB  | 2765 GB/s | 600 GB/s ICI (2)    | = ICI | https://cloud.google.com/tpu/docs/v5p |
| a100 | 312 TFLOP/s | 80 GB   | 2039 GB/s | 300 GB/s NVLink (3) | 25 GB/s InfiniBand HDR (4) | NVIDIA A100 datasheet (6) |
| h100 | 989 TFLOP/s (5) | 80 GB | 3.35 TB/s | 450 GB/s NVLink (3) | 50 GB/s InfiniBand NDR (4) | https://www.nvidia.com/en-us/data-center/h100/ |
| h200 | 989 TFLOP/s (5) | 141 GB | 4.8 TB/s | 450 GB/s NVLink (3) | 50 GB/s InfiniBand NDR (4) | https://www.nvidia.com/en-us/data-center/h200/ |

(1) The v4 page gives no per-chip ICI figure; this is its "all-reduce bandwidth per Pod" (1.1 PB/s)
    over the pod's 4096 chips.
(2) Half of the page's bidirectional ICI bandwidth per chip (v5e 400 GB/s, v5p 1200 GB/s; the older
    form of the pages says 1600 and 4800 Gbps).
(3) Half of the datasheet's bidirectional NVLink bandwidth (600 and 900 GB/s), within a node of 8
    GPUs (HGX / DGX baseboard, NVSwitch).
(4) One NIC per GPU in the DGX systems: DGX A100 eight 200 Gb/s HDR ConnectX-6, DGX H100 / H200 eight
    400 Gb/s NDR ConnectX-7 (https://docs.nvidia.com/dgx/dgxa100-user-guide/introduction-to-dgxa100.html,
    https://docs.nvidia.com/dgx/dgxh100-user-guide/introduction-to-dgxh100.html).
(5) The datasheets give 1979 TFLOP/s bf16 "with sparsity"; dense is half.
(6) https://www.nvidia.com/content/dam/en-zz/Solutions/Data-Center/a100/pdf/
    nvidia-a100-datasheet-us-nvidia-1758950-r4-web.pdf (the SXM 80GB column)

TPU slices are one ICI domain, so every collective of a single-slice plan runs at the ICI figure.
A GPU collective whose group spans more than one node of 8 runs at the InfiniBand figure (the ring
is as fast as its slowest link). `cpu(...)` builds the entry for this machine from measured numbers
(bench/plan_validation.py).
"""

from __future__ import annotations

import dataclasses
import difflib

GIB = 2**30


@dataclasses.dataclass(frozen=True)
class Accelerator:
    """One device's figures. Bandwidths in bytes/s per direction; node_size: devices that share the
    fast link (0: all of them, a TPU slice); network_bandwidth: per device between nodes."""

    name: str
    kind: str  # "tpu", "gpu" or "cpu": the platform whose form of the step is compiled
    peak_flops: float
    hbm_bytes: float
    hbm_bandwidth: float
    link_bandwidth: float
    network_bandwidth: float
    node_size: int
    source: str

    def link_for(self, crosses_nodes: bool) -> float:
        """Bytes/s per device of a collective that does or does not leave a node."""
        return self.network_bandwidth if crosses_nodes and self.node_size else self.link_bandwidth


_NVIDIA_A100 = ("https://www.nvidia.com/content/dam/en-zz/Solutions/Data-Center/a100/pdf/"
                "nvidia-a100-datasheet-us-nvidia-1758950-r4-web.pdf")

ACCELERATORS: dict[str, Accelerator] = {
    a.name: a
    for a in (
        Accelerator("v4", "tpu", 275e12, 32 * GIB, 1200e9, 1.1e15 / 4096, 1.1e15 / 4096, 0,
                    "https://cloud.google.com/tpu/docs/v4"),
        Accelerator("v5e", "tpu", 197e12, 16 * GIB, 819e9, 200e9, 200e9, 0, "https://cloud.google.com/tpu/docs/v5e"),
        Accelerator("v5p", "tpu", 459e12, 95 * GIB, 2765e9, 600e9, 600e9, 0, "https://cloud.google.com/tpu/docs/v5p"),
        Accelerator("a100", "gpu", 312e12, 80e9, 2039e9, 300e9, 25e9, 8, _NVIDIA_A100),
        Accelerator("h100", "gpu", 989e12, 80e9, 3.35e12, 450e9, 50e9, 8, "https://www.nvidia.com/en-us/data-center/h100/"),
        Accelerator("h200", "gpu", 989e12, 141e9, 4.8e12, 450e9, 50e9, 8, "https://www.nvidia.com/en-us/data-center/h200/"),
    )
}


def size_text(n: float) -> str:
    """Bytes as GiB (MiB below a tenth of one)."""
    return f"{n / GIB:.1f} GiB" if n >= 0.1 * GIB else f"{n / 2**20:.1f} MiB"


def accelerator(name: str) -> Accelerator:
    """The table's entry for `name` (case-insensitive), or a ValueError naming the choices."""
    key = name.lower()
    if key in ACCELERATORS:
        return ACCELERATORS[key]
    close = difflib.get_close_matches(key, list(ACCELERATORS), n=1)
    hint = f" Did you mean {close[0]!r}?" if close else ""
    raise ValueError(f"accelerator {name!r} is not in the table; choose one of {sorted(ACCELERATORS)}.{hint}")


def cpu(peak_flops: float, memory_bandwidth: float, memory_bytes: float) -> Accelerator:
    """This machine's CPU as one device, from measured peak FLOP/s and memory bandwidth (bytes/s)."""
    return Accelerator("cpu", "cpu", peak_flops, memory_bytes, memory_bandwidth, memory_bandwidth,
                       memory_bandwidth, 0, "measured here (bench/plan_validation.py)")
