"""Importing a command must not start JAX's backend: a multi-process run calls
jax.distributed.initialize after its imports, and JAX refuses once a backend exists."""

from __future__ import annotations

import subprocess
import sys

import pytest

CHECK = ("import importlib, sys; importlib.import_module(sys.argv[1]); "
         "from jax._src import xla_bridge; sys.exit(1 if xla_bridge._backends else 0)")


@pytest.mark.parametrize("module", ["cpt_jax.cli.train", "cpt_jax.cli.evaluate", "cpt_jax.cli.mine", "cpt_jax.cli.plan"])
def test_importing_a_command_leaves_the_backend_alone(module):
    proc = subprocess.run([sys.executable, "-c", CHECK, module], capture_output=True, text=True)
    assert proc.returncode == 0, f"importing {module} started JAX's backend:\n{proc.stderr[-2000:]}"
