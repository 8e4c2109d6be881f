"""python -m cpt_jax.mine: the mining CLI lives in cpt_jax/cli/mine.py (flags -> MineConfig); what
it mines and how is cpt_jax/mining/."""

import sys

if __name__ == "__main__":
    from cpt_jax.cli.errors import run
    from cpt_jax.cli.mine import main

    run(main, sys.argv[1:])
