"""gin at the edges: command-line flags -> bindings -> the run's config objects.

The modules below never import gin. Here their config dataclasses are registered as gin
configurables, and the CLIs call `parse_flags` then build a `TrainConfig` (or another root)
from the bindings. Flags follow T5X:
  --gin_file=PATH            (repeatable; later files override earlier ones)
  --gin.NAME=VALUE           one binding, e.g. --gin.TrainConfig.num_steps=200
  --gin_param="NAME = VALUE" gin's own form (repeatable)
A --gin.NAME value that is not a Python literal or a gin reference (@x, %X) is taken as a
string, so --gin.TrainConfig.output_dir=/tmp/run needs no extra quotes.
"""

from __future__ import annotations

import ast
import dataclasses
import difflib
import os
import re
from collections.abc import Sequence

import gin

from cpt_jax.data.config import DataConfig
from cpt_jax.data.sources import (
    CodeFilesSource,
    PairedJsonlSource,
    PreparedPairsSource,
    TextFilesSource,
    TfdsTextSource,
)
from cpt_jax.model import ModelConfig
from cpt_jax.parallel.mesh import MeshConfig
from cpt_jax.train.config import TrainConfig
from cpt_jax.train.optimizer import OptimizerConfig
from cpt_jax.train.state import TemperatureConfig

REPO_ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

CONFIGURABLES = {
    cls.__name__: gin.external_configurable(cls, cls.__name__)
    for cls in (
        ModelConfig,
        DataConfig,
        MeshConfig,
        OptimizerConfig,
        TemperatureConfig,
        TrainConfig,
        TextFilesSource,
        CodeFilesSource,
        TfdsTextSource,
        PairedJsonlSource,
        PreparedPairsSource,
    )
}


def binding_value(raw: str) -> str:
    """The gin text of a --gin.NAME=VALUE value: a Python literal or a gin reference (@x, %X) as
    given, anything else quoted as a string (so paths need no extra quotes)."""
    raw = raw.strip()
    if raw.startswith(("@", "%")):
        return raw
    try:
        ast.literal_eval(raw)
        return raw
    except (ValueError, SyntaxError):
        return repr(raw)


def split_flags(argv: Sequence[str]) -> tuple[list[str], list[str], list[str]]:
    """(gin files, bindings, other args) from argv (without the program name)."""
    files, bindings, rest = [], [], []
    it = iter(argv)
    for arg in it:
        name, eq, value = arg.partition("=")
        if name in ("--gin_file", "--gin_param") and not eq:
            value = next(it, None)
            if value is None:
                raise SystemExit(f"{name} needs a value, e.g. {name}=...")
        if name == "--gin_file":
            files.append(value)
        elif name == "--gin_param":
            bindings.append(value)
        elif name.startswith("--gin."):
            if not eq:
                raise SystemExit(f"{arg!r} has no value; write --gin.NAME=VALUE.")
            bindings.append(f"{name[len('--gin.'):]} = {binding_value(value)}")
        else:
            rest.append(arg)
    return files, bindings, rest


def parse_flags(argv: Sequence[str]) -> list[str]:
    """Parses gin flags into gin's global config; returns the remaining arguments.

    Gin files are looked up as given, then relative to the repository root, so
    `--gin_file=configs/experiments/tiny_code.gin` works from any directory.
    """
    files, bindings, rest = split_flags(argv)
    gin.add_config_file_search_path(REPO_ROOT)
    resolved = []
    for f in files:
        if not os.path.exists(f) and not os.path.exists(os.path.join(REPO_ROOT, f)):
            raise SystemExit(f"gin file {f!r} not found (looked in the working directory and {REPO_ROOT}).")
        resolved.append(f if os.path.exists(f) else os.path.join(REPO_ROOT, f))
    try:
        gin.parse_config_files_and_bindings(resolved, bindings, finalize_config=True)
    except ValueError as e:
        raise ValueError(f"{e}{_suggestion(str(e))}") from None
    return rest


def _suggestion(message: str) -> str:
    """' Did you mean ...?' for gin's unknown-configurable and unknown-parameter errors."""
    unknown_param = re.search(r"Configurable '(\w+)' doesn't have a parameter named '(\w+)'", message)
    if unknown_param and unknown_param.group(1) in CONFIGURABLES:
        cls, name = unknown_param.groups()
        fields = [f.name for f in dataclasses.fields(CONFIGURABLES[cls])]
        close = difflib.get_close_matches(name, fields, n=1)
        return f"\nDid you mean {cls}.{close[0]}?" if close else f"\n{cls} has: {', '.join(fields)}."
    unknown_cls = re.search(r"No configurable matching '([\w.]+)'", message)
    if unknown_cls:
        close = difflib.get_close_matches(unknown_cls.group(1), list(CONFIGURABLES), n=1)
        return f"\nDid you mean {close[0]}?" if close else f"\nConfigurables: {', '.join(CONFIGURABLES)}."
    return ""


def build(name: str):
    """An instance of a registered config class (e.g. "TrainConfig") from the parsed bindings.
    Each config dataclass checks its field types and values itself (cpt_jax/typecheck.py)."""
    return CONFIGURABLES[name]()


def operative_config() -> str:
    return gin.operative_config_str()
