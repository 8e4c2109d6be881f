"""Planning a run before paying for it: the real train step compiled ahead of time for a target mesh.

spec        PlanSpec (what to plan) and Layout (mesh sizes, GradCache chunk, remat) -> TrainConfig
hardware    the accelerator table (TPU v4 / v5e / v5p, NVIDIA A100 / H100 / H200), each figure sourced
compile     the step of a TrainConfig lowered and compiled for N devices from abstract state (nothing
            allocated); per-device state bytes and XLA's memory analysis
hlo         the compiled HLO read per device: ops (FLOPs, bytes) and collectives, loops by trip count
collectives replica groups and wire bytes of each collective
estimate    the roofline: ops at peak FLOPs / HBM bandwidth, collectives at the link bandwidth
analytic    closed-form memory and time guesses that choose what the search compiles
search      layouts tried, dropped or ranked by estimated step time
report      the tables the CLI prints

`python -m cpt_jax.plan` is the command (cpt_jax/cli/plan.py).
"""
