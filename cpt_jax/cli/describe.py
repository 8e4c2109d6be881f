"""python -m cpt_jax.model.describe configs/model/*.gin — parameter count of each model config."""

from __future__ import annotations

import os
import sys
from collections.abc import Sequence

import gin

from cpt_jax.cli import flags
from cpt_jax.model import param_count

USAGE = "usage: python -m cpt_jax.model.describe configs/model/*.gin"


def describe(gin_file: str) -> tuple[str, int, int, int]:
    """(name, parameters, embedding width, layers) of the ModelConfig a gin file binds."""
    gin.clear_config()
    flags.parse_flags([f"--gin_file={gin_file}"])
    model = flags.build("ModelConfig")
    return os.path.splitext(os.path.basename(gin_file))[0], param_count(model), model.d_model, model.num_layers


def main(argv: Sequence[str]) -> int | None:
    """Prints one row per gin file; 2 (and the usage) without any."""
    if not argv:
        print(USAGE, file=sys.stderr)
        return 2
    print(f"{'config':<8} {'parameters':>16} {'embedding width':>16} {'layers':>7}")
    for path in argv:
        name, count, width, layers = describe(path)
        print(f"{name:<8} {count:>16,} {width:>16} {layers:>7}")
    return None
