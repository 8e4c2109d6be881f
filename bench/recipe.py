"""The validation sweep that chose the main job's recipe (configs/experiments/minilm_cpt.gin).

Every variant starts from all-MiniLM-L6-v2 and sees the same number of training pairs (the main
job's budget on a 2-core CPU; a variant in PAIRS sees its own number), then is scored on the
*validation* splits of site_code and site_text (the test splits are never looked at here) by the
evaluate CLI. The first variant is also scored with the baselines (the pretrained start, random
init, BM25) unless its eval JSON already exists. Prints a markdown table; runs live under --out and
a finished variant (its eval JSON exists) is not trained again.

    python bench/recipe.py --out outputs/recipe
    python bench/recipe.py --out outputs/recipe --only b64_lr1e-4,b256_gc64 --pairs 4096
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from common import header  # noqa: E402

BASE = "configs/experiments/minilm_cpt.gin"
TASKS = ("site_code", "site_text")

BY_SOURCE = "DataConfig.batching='by_source'"
INSTRUCTIONS = ("DataConfig.instructions=(('Docstring: ', 'Python code: '), "
                "('Passage: ', 'The passage that follows it: '))")
# The code instruction alone; text pairs read as they are (as all-MiniLM-L6-v2 was trained).
CODE_INSTRUCTION = "DataConfig.instructions=(('Docstring: ', 'Python code: '), ('', ''))"
MIX_1_1 = "DataConfig.weights=(1, 1)"
TAU_20 = "TemperatureConfig.init=2.995732273553991"  # log(20)
TAU_30 = "TemperatureConfig.init=3.4011973816621555"  # log(30)
BF16 = "ModelConfig.dtype='bfloat16'"
# name -> (global batch, GradCache chunk (0: plain step), learning rate, extra gin bindings)
VARIANTS: dict[str, tuple[int, int, float, tuple[str, ...]]] = {
    "b32_lr5e-5": (32, 0, 5e-5, ()),
    "b64_lr5e-5": (64, 0, 5e-5, ()),
    "b64_lr1e-4": (64, 0, 1e-4, ()),
    "b64_lr2e-4": (64, 0, 2e-4, ()),
    "b256_gc64_lr1e-4": (256, 64, 1e-4, ()),
    "b512_gc64_lr2e-4": (512, 64, 2e-4, ()),
    "b64_lr1e-4_mix1:1": (64, 0, 1e-4, ("DataConfig.weights=(1, 1)",)),
    "b64_lr1e-4_len48/96": (64, 0, 1e-4, ("DataConfig.max_len_x=48", "DataConfig.max_len_y=96")),
    "b64_lr1e-4_len96/128": (64, 0, 1e-4, ("DataConfig.max_len_x=96", "DataConfig.max_len_y=128")),
    "b64_lr1e-4_mix1:1_len96/128": (64, 0, 1e-4, ("DataConfig.weights=(1, 1)", "DataConfig.max_len_x=96",
                                                  "DataConfig.max_len_y=128")),
    "b256_gc64_lr1e-4_mix1:1_len128/128": (256, 64, 1e-4, ("DataConfig.weights=(1, 1)", "DataConfig.max_len_x=128",
                                                         "DataConfig.max_len_y=128")),
    "b256_gc64_lr1e-4_mix1:2_len128/128": (256, 64, 1e-4, ("DataConfig.weights=(1, 2)", "DataConfig.max_len_x=128",
                                                         "DataConfig.max_len_y=128")),
    "b256_gc64_lr1e-4_mix1:1_len256/256": (256, 64, 1e-4, ("DataConfig.weights=(1, 1)", "DataConfig.max_len_x=256",
                                                         "DataConfig.max_len_y=256")),
    "b1024_gc64_lr2e-4_mix1:1_len128/128": (1024, 64, 2e-4, ("DataConfig.weights=(1, 1)", "DataConfig.max_len_x=128",
                                                           "DataConfig.max_len_y=128")),
    # Issue 20: one source per batch (negatives of one kind), per-source instructions.
    "b256_gc64_lr1e-4_by_source": (256, 64, 1e-4, (BY_SOURCE,)),
    "b256_gc64_lr1e-4_by_source_mix1:1": (256, 64, 1e-4, (BY_SOURCE, "DataConfig.weights=(1, 1)")),
    "b256_gc64_lr1e-4_by_source_instructions": (256, 64, 1e-4, (BY_SOURCE, INSTRUCTIONS)),
    "b256_gc64_lr1e-4_by_source_masked": (256, 64, 1e-4, (BY_SOURCE, "LossConfig.mask_duplicates=True")),
    # Issue 19, closing the text gap to BM25: more text, a sharper start temperature (MiniLM was trained
    # at scale 20), bfloat16 compute (twice the matmul rate on AVX-512 CPUs, so more pairs in the budget).
    "b256_gc64_lr1e-4_by_source_instructions_mix1:1": (256, 64, 1e-4, (BY_SOURCE, INSTRUCTIONS, MIX_1_1)),
    "b256_gc64_lr1e-4_by_source_instructions_tau20": (256, 64, 1e-4, (BY_SOURCE, INSTRUCTIONS, TAU_20)),
    "b256_gc64_lr1e-4_by_source_instructions_mix1:1_tau20": (256, 64, 1e-4, (BY_SOURCE, INSTRUCTIONS, MIX_1_1,
                                                                            TAU_20)),
    "b256_gc64_lr1e-4_by_source_instructions_mix1:1_bf16": (256, 64, 1e-4, (BY_SOURCE, INSTRUCTIONS, MIX_1_1,
                                                                           BF16)),
    "b256_gc64_lr1e-4_by_source_instructions_mix1:1_tau20": (256, 64, 1e-4, (BY_SOURCE, INSTRUCTIONS, MIX_1_1,
                                                                            TAU_20)),
    "b256_gc64_lr1e-4_by_source_instructions_tau30": (256, 64, 1e-4, (BY_SOURCE, INSTRUCTIONS, TAU_30)),
    "b256_gc64_lr2e-4_by_source_instructions_tau20": (256, 64, 2e-4, (BY_SOURCE, INSTRUCTIONS, TAU_20)),
    "b256_gc64_lr1e-4_by_source_instructions_tau20_masked": (256, 64, 1e-4, (BY_SOURCE, INSTRUCTIONS, TAU_20,
                                                                            "LossConfig.mask_duplicates=True")),
    "b256_gc64_lr1e-4_by_source_instructions_mix1:1_tau30": (256, 64, 1e-4, (BY_SOURCE, INSTRUCTIONS, MIX_1_1,
                                                                            TAU_30)),
    # Issue 19, the text gap again: a lower rate (less drift from the start), text without its instruction,
    # longer x, and more text steps added to the same 12 code steps (20 steps at 3:2, 5120 pairs: PAIRS).
    "b256_gc64_lr5e-5_by_source_instructions_tau20": (256, 64, 5e-5, (BY_SOURCE, INSTRUCTIONS, TAU_20)),
    "b256_gc64_lr1e-4_by_source_instructions_tau20_mix3:2_steps20": (256, 64, 1e-4, (BY_SOURCE, INSTRUCTIONS, TAU_20,
                                                                                    "DataConfig.weights=(3, 2)")),
    "b256_gc64_lr1e-4_by_source_code_instruction_tau20": (256, 64, 1e-4, (BY_SOURCE, CODE_INSTRUCTION, TAU_20)),
    "b256_gc64_lr1e-4_by_source_instructions_tau20_len128/128": (256, 64, 1e-4, (BY_SOURCE, INSTRUCTIONS, TAU_20,
                                                                                "DataConfig.max_len_x=128")),
    "b256_gc64_lr1e-4_by_source_code_instruction_tau20_len128/128": (256, 64, 1e-4, (BY_SOURCE, CODE_INSTRUCTION,
                                                                                    TAU_20, "DataConfig.max_len_x=128")),
    # Trained at the length the main command scores at (256 tokens per document).
    "b256_gc64_lr1e-4_by_source_instructions_tau20_len128/256": (256, 64, 1e-4, (BY_SOURCE, INSTRUCTIONS, TAU_20,
                                                                                "DataConfig.max_len_x=128",
                                                                                "DataConfig.max_len_y=256")),
    # LoRA (issue 21) on the main job: the base frozen, so the model drifts less from its start; a faster step.
    "b256_gc64_lr5e-4_by_source_instructions_tau20_lora16": (256, 64, 5e-4, (BY_SOURCE, INSTRUCTIONS, TAU_20,
                                                                            "LoraConfig.rank=16")),
}
# Text pairs with one hard negative each, from files that text_negatives() writes under --out:
# `bm25neg`, the training split's best BM25 match for x among the y's that are neither x nor y;
# `prevneg`, the span before x in its document (the x of the pair whose y is x; a quarter of the
# pairs have none), so the model must tell the span that follows from the one that precedes.
def _text_negatives(kind: str) -> tuple[str, ...]:
    return ("DataConfig.sources=(@code/PreparedPairsSource(), @text/PairedJsonlSource())",
            f"text/PairedJsonlSource.paths=('{{out}}/site_text_{kind}.jsonl',)",
            "text/PairedJsonlSource.negatives_field='negatives'", "text/PairedJsonlSource.name='site_text'",
            "DataConfig.num_negatives=1")


VARIANTS["b256_gc64_lr1e-4_by_source_instructions_tau20_bm25neg"] = (256, 64, 1e-4, (BY_SOURCE, INSTRUCTIONS, TAU_20,
                                                                                   *_text_negatives("bm25")))
VARIANTS["b256_gc64_lr1e-4_by_source_instructions_tau20_prevneg"] = (256, 64, 1e-4, (BY_SOURCE, INSTRUCTIONS, TAU_20,
                                                                                   *_text_negatives("prev")))
# The recipe on fewer pairs (fewer steps of the same batch): what a shorter main job would lose.
VARIANTS["b256_gc64_lr1e-4_by_source_instructions_tau20_steps8"] = VARIANTS["b256_gc64_lr1e-4_by_source_instructions_tau20"]
VARIANTS["b256_gc64_lr1e-4_by_source_instructions_tau20_steps12"] = VARIANTS["b256_gc64_lr1e-4_by_source_instructions_tau20"]
VARIANTS["b256_gc64_lr1e-4_by_source_instructions_tau20_steps6"] = VARIANTS["b256_gc64_lr1e-4_by_source_instructions_tau20"]
# Variants trained on another number of pairs than --pairs (the same batch, so other steps); every other sees --pairs.
PAIRS = {"b256_gc64_lr1e-4_by_source_instructions_tau20_mix3:2_steps20": 5120,
         "b256_gc64_lr1e-4_by_source_instructions_tau20_steps8": 2048,
         "b256_gc64_lr1e-4_by_source_instructions_tau20_steps6": 1536,
         "b256_gc64_lr1e-4_by_source_instructions_tau20_steps12": 3072}


def _run(cmd: list[str], log: str) -> float:
    """Runs cmd (output to log); its wall seconds. Raises with the log's tail on failure."""
    t = time.perf_counter()
    with open(log, "w") as f:
        rc = subprocess.call(cmd, stdout=f, stderr=subprocess.STDOUT)
    if rc:
        with open(log) as f:
            tail = f.read()[-3000:]
        raise RuntimeError(f"{' '.join(cmd)} failed ({rc}):\n{tail}")
    return time.perf_counter() - t


def text_negatives(out: str, data_dir: str = "outputs/tfds") -> None:
    """Writes out/site_text_{bm25,prev}.jsonl (see _text_negatives) from the site_text training split."""
    from cpt_jax.data.pipeline import iter_split_texts
    from cpt_jax.eval.bm25 import BM25Index

    records = [{"x": r["x"], "y": r["y"]} for r in iter_split_texts("site_text", "train", data_dir)]
    docs = list(dict.fromkeys(r["y"] for r in records))
    top = BM25Index(docs).search([r["x"] for r in records], 3)
    previous = {}
    for r in records:
        previous.setdefault(r["y"], r["x"])
    for kind in ("bm25", "prev"):
        with open(os.path.join(out, f"site_text_{kind}.jsonl"), "w") as f:
            for r, row in zip(records, top):
                if kind == "bm25":
                    negatives = [docs[j] for j in row if docs[j] not in (r["x"], r["y"])][:1]
                else:
                    negatives = [previous[r["x"]]] if previous.get(r["x"], r["y"]) != r["y"] else []
                f.write(json.dumps({**r, "negatives": negatives}) + "\n")


def train_and_score(name: str, out: str, pairs: int, max_pairs: int, max_len: int | None, baselines: bool) -> dict:
    """Trains one variant (unless done), scores it on validation (unless done); its row."""
    batch, chunk, lr, extra = VARIANTS[name]
    run_dir = os.path.join(out, name.replace("/", "_").replace(":", "_"))
    suffix = f"_len{max_len}" if max_len else ""
    # "scores_": scored with each text query's own copy left out of its documents (eval/tasks.py);
    # the eval_*.json files of older sweeps were scored with it among them.
    result_path = os.path.join(run_dir, f"scores_validation{suffix}.json")
    timing_path = os.path.join(run_dir, "sweep_timing.json")
    steps = max(1, PAIRS.get(name, pairs) // batch)
    if not os.path.exists(timing_path):
        if any("{out}" in b for b in extra):
            text_negatives(out)
            extra = tuple(b.replace("{out}", os.path.abspath(out)) for b in extra)
        bindings = [
            f"TrainConfig.output_dir='{run_dir}'", f"TrainConfig.num_steps={steps}",
            f"TrainConfig.global_batch_size={batch}", f"TrainConfig.grad_cache_chunk_size={chunk}",
            f"OptimizerConfig.learning_rate={lr}", f"OptimizerConfig.warmup_steps={max(1, steps // 10)}",
            f"TrainConfig.log_every={max(1, steps // 8)}", f"TrainConfig.checkpoint_every={steps}",
            *extra,
        ]
        os.makedirs(run_dir, exist_ok=True)
        train_s = _run([sys.executable, "-m", "cpt_jax.train", f"--gin_file={BASE}",
                        *(f"--gin.{b}" for b in bindings)], os.path.join(run_dir, "train.log"))
        with open(timing_path, "w") as f:
            json.dump({"steps": steps, "train_s": train_s}, f)
    if not os.path.exists(result_path):
        evaluate = [sys.executable, "-m", "cpt_jax.evaluate", "--checkpoint", run_dir, "--split", "validation",
                    "--tasks", ",".join(TASKS), "--max_pairs", str(max_pairs), "--output", result_path]
        evaluate += ["--max_len", str(max_len)] if max_len else []
        _run(evaluate + ([] if baselines else ["--no_baselines"]), os.path.join(run_dir, f"eval{suffix}.log"))
    with open(result_path) as f:
        results = json.load(f)
    with open(timing_path) as f:
        timing = json.load(f)
    return {"results": results, "batch": batch, "chunk": chunk, "lr": lr, **timing}


def _task(results: dict, dataset: str) -> dict:
    return next(v for k, v in results.items() if k.startswith(f"{dataset}/"))


def table(rows: dict[str, dict]) -> str:
    """Markdown: one row per variant (then the baselines of the first), validation metrics."""
    head = ("| variant | batch | GradCache chunk | steps | lr | train s (shared CPU) | code MRR | code nDCG@10 | text MRR "
            "| text nDCG@10 | mean nDCG@10 |")
    lines = [head, "|" + " --- |" * 2 + " ---: |" * 9]

    def cells(code: dict, text: dict) -> str:
        mean = (code["ndcg@10"] + text["ndcg@10"]) / 2
        return f"{code['mrr']:.4f} | {code['ndcg@10']:.4f} | {text['mrr']:.4f} | {text['ndcg@10']:.4f} | {mean:.4f}"

    for name, row in rows.items():
        code, text = (_task(row["results"], d)["cpt-jax (trained)"] for d in TASKS)
        lines.append(f"| {name} | {row['batch']} | {row['chunk'] or '-'} | {row['steps']} | {row['lr']:g} "
                     f"| {row['train_s']:.0f} | {cells(code, text)} |")
    first = next(iter(rows.values()))["results"]
    for system in ("pretrained start", "random init", "BM25"):
        scores = [_task(first, d).get(system) for d in TASKS]
        if all(scores):
            lines.append(f"| {system} | | | | | | {cells(*scores)} |")
    return "\n".join(lines)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--out", default="outputs/recipe")
    p.add_argument("--only", default="", help="comma-separated variant names (default: all)")
    p.add_argument("--pairs", type=int, default=4096, help="training pairs every variant sees")
    p.add_argument("--max_pairs", type=int, default=1000, help="validation pairs scored per task")
    p.add_argument("--max_len", type=int, default=256,
                   help="tokens per text when scoring (evaluate --max_len; 0: the lengths each variant trained with)")
    args = p.parse_args()
    names = [n for n in args.only.split(",") if n] or list(VARIANTS)
    unknown = sorted(set(names) - set(VARIANTS))
    if unknown:
        p.error(f"unknown variants {unknown}; choose from {list(VARIANTS)}")
    print(header(f"{BASE}, {args.pairs} training pairs per variant, validation splits ({args.max_pairs} pairs each, "
                 f"scored at {args.max_len or 'the trained'} tokens)"))
    rows = {}
    for name in names:
        try:
            rows[name] = train_and_score(name, args.out, args.pairs, args.max_pairs, args.max_len or None,
                                         baselines=not rows)
        except RuntimeError as e:  # one broken variant does not cost the others
            print(f"FAILED {name}: {e}", flush=True)
            continue
        print(f"done {name}: train {rows[name]['train_s']:.0f}s", flush=True)
    print(table(rows))


if __name__ == "__main__":
    main()
