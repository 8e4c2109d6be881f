"""RESULTS.md from the results dict that `python -m report` builds (and saves as
results.json): every number and comparison word comes from that dict, through analysis.fmt."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from report.analysis import fmt
from cpt_jax.train.metrics import format_duration


def _table(header: Sequence[str], rows: Sequence[Sequence[str]], right_from: int = 1) -> list[str]:
    """A Markdown table; columns from right_from on are right-aligned (numbers)."""
    align = ["---" if i < right_from else "---:" for i in range(len(header))]
    return [
        "| " + " | ".join(header) + " |",
        "| " + " | ".join(align) + " |",
        *("| " + " | ".join(row) + " |" for row in rows),
    ]


def _image(plots: dict[str, str], key: str, alt: str) -> list[str]:
    return [f"![{alt}]({plots[key]})", ""]


def _duration(seconds: float | None) -> str:
    return "-" if seconds is None else format_duration(seconds)


def _command_block(command: str) -> str:
    """A long shell command with one flag per line."""
    return command.replace(" --", " \\\n    --")


def header(results: dict[str, Any]) -> list[str]:
    report, runs = results["report"], results["runs"].values()
    machine, load = report["machine"], report["load_average"]
    train_s = sum(r["train"]["wall_s"] for r in runs)
    eval_s = sum(e["wall_s"] for r in runs for e in r["evals"].values())
    reused = sum(r["train"]["reused"] for r in runs)
    git = report["git"]
    lines = [
        "# cpt-jax results",
        "",
        f"Written by `{report['command']}` ({report['mode']} mode) on {report['date']}. Every number and "
        "comparison below comes from the runs that command trained and evaluated; "
        f"[`{results['plots']['json']}`]({results['plots']['json']}) holds them all, per-step metrics included.",
        "",
        f"- Machine: {machine['cpus']} CPU cores ({machine['processor']}), {fmt(machine['memory_gb'], 1)} GB memory, "
        f"{machine['platform']}. Load average (1, 5, 15 min) at the start {', '.join(fmt(x, 2) for x in load['start'])}, "
        f"at the end {', '.join(fmt(x, 2) for x in load['end'])}: anything else running on the cores slows every timing.",
        "- Versions: " + ", ".join(f"{name} {version}" for name, version in report["versions"].items()) + ".",
        (f"- Code: commit `{git['commit']}`{' with uncommitted changes' if git['dirty'] else ''}."
         if git else "- Code: not a git checkout."),
        f"- Wall time of the whole report: {_duration(report['wall_s'])}. Trainings {_duration(train_s)} and "
        f"evaluations {_duration(eval_s)} in all, each timed when it ran"
        + (f"; {reused} of the {len(runs)} trainings were reused from an earlier invocation." if reused else ".")
        + " Per run: [Runs](#runs).",
        "",
        f"Reproduce everything with `{report['command']}` from the repository root (finished runs under "
        f"`{report['out_dir']}` are reused), or any single run with its commands under [Runs](#runs).",
        "",
    ]
    return lines


def main_job(results: dict[str, Any]) -> list[str]:
    """The opening section: the README's main job against its start, random init and the lexical baselines."""
    summary, exp = results["summary"]["main"], results["experiments"]["main"]
    record = results["runs"][exp["runs"][0]]
    tasks = summary["tasks"]
    table = [
        [name, fmt(r["code"]["mrr"]), fmt(r["code"]["ndcg@10"]), fmt(r["text"]["mrr"]), fmt(r["text"]["ndcg@10"]),
         fmt(r["probe_accuracy"])]
        for name, r in summary["rows"].items()
    ]
    commands = [_command_block(record["train"]["command"])] + [e["command"] for e in record["evals"].values()]
    return [
        "## Main job",
        "",
        f"{exp['compares']}. Held-out test splits, by exact search: code search `{tasks['code']}` (docstring -> "
        f"function) and text search `{tasks['text']}` (span -> next span); the probe is `{tasks['probe']}` "
        "(a standard-library function's top-level package from its docstring; [Linear probe](#linear-probe)). "
        "The pretrained start is all-MiniLM-L6-v2 as imported, before any training; random init is the same "
        "architecture at random initialisation; the lexical references are BM25 for search and a TF-IDF bag of "
        "words through the same probe.",
        "",
        *_table(
            ["system", "code MRR", "code nDCG@10", "text MRR", "text nDCG@10", "probe accuracy"], table
        ),
        "",
        *summary["sentences"],
        "",
        "```bash",
        *commands,
        "```",
        "",
        *_image(results["plots"], "main", "training curves, main job"),
    ]


def ablations(results: dict[str, Any]) -> list[str]:
    """The heading over every section after the main job."""
    return [
        "## Ablations from scratch (tiny model) and the initialisation comparison",
        "",
        "The sections below train small models for minutes on the standard-library corpora (stdlib_code, "
        "stdlib_text): the tiny model from scratch (batch size, delimiters) and the MiniLM architecture from its "
        "pretrained weights vs from random initialisation. They compare settings against each other, not the "
        "main job's quality.",
        "",
    ]


def batch_size(results: dict[str, Any]) -> list[str]:
    summary, exp = results["summary"]["batch_size"], results["experiments"]["batch_size"]
    rows = [
        [str(r["batch"]), fmt(r["code"]["mrr"]), fmt(r["code"]["ndcg@10"]), fmt(r["text"]["ndcg@10"]),
         fmt(r["text"]["mrr"]), fmt(r["code"]["epochs"], 2), fmt(r["text"]["epochs"], 2)]
        for r in summary["rows"]
    ]
    for system in summary["baselines"]["code"]:
        code, text = summary["baselines"]["code"][system], summary["baselines"]["text"].get(system, {})
        rows.append([system, fmt(code["mrr"]), fmt(code["ndcg@10"]), fmt(text.get("ndcg@10")), fmt(text.get("mrr")), "", ""])
    return [
        "### Batch size",
        "",
        f"The paper (Table 9) saw accuracy rise with the batch size. Here: {exp['compares']}; held-out "
        "code search (stdlib_code/test, docstring -> function) and text search (stdlib_text/test, span -> next "
        "span), by exact search over the whole test split. Random init and BM25 are the references.",
        "",
        *_table(
            ["global batch", "code MRR", "code nDCG@10", "text nDCG@10", "text MRR", "code epochs", "text epochs"], rows
        ),
        "",
        *summary["sentences"],
        "",
        "In-batch accuracy is measured among the batch's own pairs (chance 1/batch), so its curves are not "
        "comparable across batch sizes; the loss, likewise, starts at log(batch).",
        "",
        *_image(results["plots"], "batch_size_scores", "held-out scores by batch size"),
        *_image(results["plots"], "batch_size_code", "training curves, code"),
        *_image(results["plots"], "batch_size_text", "training curves, text"),
    ]


def initialisation(results: dict[str, Any]) -> list[str]:
    summary, exp = results["summary"]["initialisation"], results["experiments"]["initialisation"]
    rows = summary["rows"]
    table = [
        [start, fmt(rows[f"{key}_before"]["mrr"]), fmt(rows[f"{key}_after"]["mrr"]), fmt(rows[f"{key}_after"]["ndcg@10"]),
         fmt(rows[f"{key}_before"]["probe_accuracy"]), fmt(rows[f"{key}_after"]["probe_accuracy"])]
        for start, key in (("pretrained all-MiniLM-L6-v2", "pretrained"), ("random initialisation", "scratch"))
    ]
    return [
        "### Initialisation",
        "",
        f"The paper starts from pretrained language models. Here: {exp['compares']}. \"Before\" is step 0 "
        "(the imported checkpoint) for the pretrained start and the same architecture at random initialisation "
        "for the other; the probe is the linear probe below.",
        "",
        *_table(
            ["start", "code MRR before", f"code MRR after {summary['steps']} steps", "code nDCG@10 after",
             "probe accuracy before", "probe accuracy after"],
            table,
        ),
        "",
        *summary["sentences"],
        "",
        *_image(results["plots"], "initialisation", "training curves, initialisation"),
    ]


def delimiters(results: dict[str, Any]) -> list[str]:
    summary, exp = results["summary"]["delimiters"], results["experiments"]["delimiters"]
    table = [
        [kind, fmt(r["final_loss"]), str(int(r["rises"])), fmt(r["largest_rise"]), str(int(r["skipped_steps"])),
         fmt(r["mrr"])]
        for kind, r in summary["rows"].items()
    ]
    return [
        "### Delimiters",
        "",
        f"The paper found separate x/y delimiters more stable than shared ones. Here: {exp['compares']} "
        "(`TrainConfig.shared_delimiters`).",
        "",
        *_table(["delimiters", "final loss", "loss rises", "largest rise", "non-finite steps", "code MRR"], table),
        "",
        *summary["sentences"],
        "",
        *_image(results["plots"], "delimiters", "training curves, delimiters"),
    ]


def temperature(results: dict[str, Any]) -> list[str]:
    summary = results["summary"]["temperature"]
    table = [
        [results["runs"][name]["label"], fmt(r["first"], 3), fmt(r["last"], 3), fmt(r["min"], 3), fmt(r["max"], 3)]
        for name, r in summary["rows"].items()
    ]
    return [
        "### Temperature",
        "",
        "The logits are cosine similarities times exp(tau), tau learned (log 1/0.07 at the start, kept in "
        "[0, log 100]); the logged `temperature` is that scale exp(tau), one over the temperature. First and "
        "last are logged means over the first and last logging interval.",
        "",
        *_table(["run", "first", "last", "min", "max"], table),
        "",
        *summary["sentences"],
        "",
        *_image(results["plots"], "temperature", "learned temperature"),
    ]


def probe(results: dict[str, Any]) -> list[str]:
    summary, stats = results["summary"]["probe"], results["probe"]
    totals = {split: sum(counts.values()) for split, counts in stats["counts"].items()}
    return [
        "### Linear probe",
        "",
        f"Predict a standard-library function's top-level package from its docstring ({len(stats['classes'])} "
        f"classes: {', '.join(stats['classes'])}), with a logistic regression on frozen embeddings, C chosen on dev. "
        f"{totals['train']} train, {totals['dev']} dev and {totals['test']} test examples, the three split by "
        "source file (cpt_jax/data/probe_tasks.py: the evaluate CLI's built-in `--classification stdlib_packages`, "
        "here at the report's sizes). The bag of words is TF-IDF over the training docstrings "
        "through the same probe.",
        "",
        *_table(
            ["system", "accuracy", "macro-F1"],
            [[r["system"], fmt(r["accuracy"]), fmt(r["macro_f1"])] for r in summary["rows"]],
        ),
        "",
        *summary["sentences"],
        "",
    ]


def runs(results: dict[str, Any]) -> list[str]:
    table, blocks = [], []
    for key, exp in results["experiments"].items():
        for name in exp["runs"]:
            r = results["runs"][name]
            evals = r["evals"].values()
            table.append([
                f"`{name}`", exp["title"], _duration(r["train"]["wall_s"]), fmt(r["s_per_step"], 2),
                _duration(sum(e["wall_s"] for e in evals)),
                "yes" if r["train"]["reused"] else "no",
            ])
            commands = [_command_block(r["train"]["command"])] + [e["command"] for e in evals]
            blocks += [f"`{name}` ({r['label']}):", "```bash", *commands, "```", ""]
    return [
        "## Runs",
        "",
        "Wall times include start-up (imports, tokenizer training, compilation); seconds per step are the "
        "median over the logged intervals, compilation excluded. Commands run from the repository root.",
        "",
        *_table(["run", "experiment", "training", "s/step", "evaluation", "reused"], table, right_from=2),
        "",
        *blocks,
    ]


def render(results: dict[str, Any]) -> str:
    """The whole RESULTS.md."""
    sections = (header, main_job, ablations, batch_size, initialisation, delimiters, temperature, probe, runs)
    return "\n".join(line for section in sections for line in section(results)).rstrip() + "\n"
