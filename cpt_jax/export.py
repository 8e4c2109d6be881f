"""python -m cpt_jax.export: the export CLI lives in cpt_jax/cli/export.py; the export itself
(a run as a transformers + sentence-transformers directory) in cpt_jax/interop/export.py."""

import sys

if __name__ == "__main__":
    from cpt_jax.cli.errors import run
    from cpt_jax.cli.export import main

    run(main, sys.argv[1:])
