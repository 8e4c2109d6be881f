"""python -m cpt_jax.evaluate: the evaluate CLI lives in cpt_jax/cli/evaluate.py (flags -> EvalSpec
and systems); what it scores and how is cpt_jax/eval/spec.py and cpt_jax/eval/suite.py."""

import sys

if __name__ == "__main__":
    from cpt_jax.cli.errors import run
    from cpt_jax.cli.evaluate import main

    run(main, sys.argv[1:])
