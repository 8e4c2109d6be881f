"""The command-line edge: every `python -m cpt_jax.<verb>` is a module here, and so is gin.

flags       gin flags -> config objects (the only module that imports gin)
train       python -m cpt_jax.train
evaluate    python -m cpt_jax.evaluate
embed       python -m cpt_jax.embed
export      python -m cpt_jax.export
mine        python -m cpt_jax.mine
plan        python -m cpt_jax.plan (cpt_jax/plan/__main__.py)
describe    python -m cpt_jax.model.describe
fingerprint python -m cpt_jax.data.fingerprint

Nothing below this package imports it; the `python -m` names are one-line entry points that
call `main` here (cpt_jax/<verb>.py, cpt_jax/train/__main__.py, ...).
"""
