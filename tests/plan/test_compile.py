"""The AOT step: the run build_run assembles, compiled from abstract state for 8 fake devices;
per-device state bytes against a hand count; the target's form of the products."""

import dataclasses

import jax
import jax.numpy as jnp
import pytest

from cpt_jax.model import ModelConfig, param_count
from cpt_jax.model.matmul import matmul, target_backend
from cpt_jax.parallel.mesh import make_mesh
from cpt_jax.plan.compile import abstract_batch, abstract_state, compile_step, plan_devices, state_bytes, step_context
from cpt_jax.plan.spec import Layout, PlanSpec, train_config
from cpt_jax.train.run import build_run

SMALL = ModelConfig(vocab_size=512, d_model=32, num_layers=2, num_heads=2, d_mlp=64, max_len=16)
SPEC = PlanSpec(model=SMALL, global_batch=16, len_x=8, len_y=8, devices=8, accelerator="h100")
FSDP = Layout(1, 8, 1, 0, "none")


def test_the_step_context_is_build_runs():
    """The plan assembles the step build_run assembles: every field of the StepContext (the
    optimizer as a transformation of the same config) agrees, so a new field cannot drift."""
    config = train_config(SPEC, Layout(2, 2, 2, 8, "full"))
    run = build_run(config, devices=jax.devices()[:8])
    ctx = step_context(config, make_mesh(config.mesh, plan_devices(8)))
    for field in dataclasses.fields(ctx):
        if field.name != "tx":
            assert getattr(ctx, field.name) == getattr(run.context, field.name), field.name
    assert jax.tree.structure(ctx.tx.init(run.state.params)) == jax.tree.structure(run.state.opt_state)


def test_state_bytes_per_device_equal_a_hand_count():
    """fsdp = 8 splits every parameter with an "embed" axis 8 ways; the q/k/v and MLP-in biases and
    the temperature have none and stay whole. AdamW keeps two moments and two step counters."""
    config = train_config(SPEC, FSDP)
    state, _ = abstract_state(step_context(config, make_mesh(config.mesh, plan_devices(8))))
    d, layers, mlp = SMALL.d_model, SMALL.num_layers, SMALL.d_mlp
    whole = 3 * layers * d + layers * mlp + 1
    split = param_count(SMALL) + 1 - whole
    got = state_bytes(state)
    assert got.params == 4 * (split // 8 + whole) == got.grads
    assert got.opt_state == 2 * got.params + 2 * 4
    replicated = state_bytes(abstract_state(step_context(config, make_mesh(config.mesh.__class__(8, 1, 1), plan_devices(8))))[0])
    assert replicated.params == 4 * (param_count(SMALL) + 1)


def test_the_step_compiles_ahead_of_time_for_8_devices():
    plan = compile_step(train_config(SPEC, FSDP), 8, "gpu")
    assert plan.state == state_bytes(abstract_state(step_context(train_config(SPEC, FSDP), make_mesh(
        train_config(SPEC, FSDP).mesh, plan_devices(8))))[0])
    assert plan.temp_bytes > 0 and plan.argument_bytes >= plan.state.params + plan.state.opt_state
    assert plan.peak_bytes >= plan.argument_bytes
    runs, payload, _ = plan.program.by_kind()["all-gather"]
    assert runs > 0 and payload > 0  # FSDP gathers the weights
    assert plan.program.flops > 0 and plan.program.traffic > 0
    assert compile_step(train_config(SPEC, FSDP), 8, "gpu") is plan  # cached in-process


def test_abstract_batches_padded_packed_and_with_ids():
    config = train_config(SPEC, FSDP)
    mesh = make_mesh(config.mesh, plan_devices(8))
    batch = abstract_batch(config, mesh, chunks=1, pack_fill=0.5)
    assert batch.x.tokens.shape == (16, 8) and batch.ids is None
    packed = dataclasses.replace(config, pack_sequences=True, loss=dataclasses.replace(config.loss, mask_duplicates=True))
    batch = abstract_batch(packed, mesh, chunks=2, pack_fill=0.5)
    assert batch.x.tokens.shape == (16, 1, 8) and batch.x.ends.shape == (16, 1)  # 16 groups of 1 pair
    assert batch.ids.x.shape == (16, 2)


def test_too_few_devices_say_how_to_get_more():
    with pytest.raises(RuntimeError, match="xla_force_host_platform_device_count=4096"):
        plan_devices(4096)


def test_the_target_form_of_a_narrow_product_is_traced():
    a = jnp.ones((4, 4), jnp.bfloat16)
    on_cpu = str(jax.make_jaxpr(matmul)(a, a))
    with target_backend("tpu"):
        on_tpu = str(jax.make_jaxpr(matmul)(a, a))
    assert "preferred_element_type=float32" in on_cpu  # XLA:CPU's float32-output form
    assert "preferred_element_type=bfloat16" in on_tpu and "float32" not in on_tpu
    with target_backend("cpu"):
        assert str(jax.make_jaxpr(matmul)(a, a)) == on_cpu
