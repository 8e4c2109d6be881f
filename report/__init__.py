"""The results report: `python -m report`, run from the repository root, trains and evaluates the
experiments of experiments.py (the README's main job first, then the ablations) through the real
CLIs (runner.py), then writes RESULTS.md (markdown.py, from the summaries in analysis.py) with PNG
plots (plots.py). The linear-probe task is the library's (cpt_jax/data/probe_tasks.py).

It lives in the checkout beside bench/ and configs/, not in the installed cpt_jax package: it
reads configs/experiments/*.gin and writes RESULTS.md and results/ at the repository root, which
it finds from its own location (runner.REPO_ROOT)."""
