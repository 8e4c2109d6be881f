"""cpt-jax: contrastive pre-training of text and code embedding models in JAX.

`cpt_jax.Embedder` is the public embedding API (imported on first use, so that importing a
light submodule such as cpt_jax.cli.flags does not start JAX).
"""

from typing import Any

__all__ = ["Embedder"]


def __getattr__(name: str) -> Any:
    if name == "Embedder":
        from cpt_jax.embedder import Embedder

        return Embedder
    raise AttributeError(f"module 'cpt_jax' has no attribute {name!r}")
