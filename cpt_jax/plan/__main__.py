"""Entry point of `python -m cpt_jax.plan`; the command is cpt_jax/cli/plan.py."""

import sys

if __name__ == "__main__":
    from cpt_jax.cli.errors import run
    from cpt_jax.cli.plan import main

    run(main, sys.argv[1:])
