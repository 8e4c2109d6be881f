"""python -m cpt_jax.model.describe: the describe CLI lives in cpt_jax/cli/describe.py."""

import sys

if __name__ == "__main__":
    from cpt_jax.cli.errors import run
    from cpt_jax.cli.describe import main

    run(main, sys.argv[1:])
