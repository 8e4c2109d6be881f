"""The results report: `python -m cpt_jax.report` trains and evaluates the experiments of
experiments.py through the real CLIs (runner.py), then writes RESULTS.md (markdown.py, from the
summaries in analysis.py) with PNG plots (plots.py); probe_data.py builds the linear-probe task."""
