"""python -m cpt_jax.embed: the embed CLI lives in cpt_jax/cli/embed.py."""

import sys

if __name__ == "__main__":
    from cpt_jax.cli.errors import run
    from cpt_jax.cli.embed import main

    run(main, sys.argv[1:])
