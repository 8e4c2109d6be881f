"""What the numbers say: per-experiment summaries and the sentences that describe them.

Pure functions of the run records the runner returns (see runner.Runner.execute); every
comparison word ("rises", "lower", ...) is chosen here from the numbers, never written by hand.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from cpt_jax.eval.suite import BAG_OF_WORDS, BM25, RANDOM, START, TRAINED

Record = dict[str, Any]  # one run, as runner.Runner.execute returns it
Scores = dict[str, dict[str, float]]  # {system: {metric: value}}


def task_entry(record: Record, eval_name: str, prefix: str) -> tuple[str, Scores]:
    """(task key, {system: {metric: value}}) of the run's evaluation task whose key starts with
    prefix (e.g. "stdlib_code/test", "classification:"); ("", {}) when that evaluation has none."""
    results = record["evals"][eval_name]["results"]
    return next(((task, scores) for task, scores in results.items() if task.startswith(prefix)), ("", {}))


def task_scores(record: Record, eval_name: str, prefix: str) -> Scores:
    """{system: {metric: value}} of task_entry; {} when that evaluation has no such task."""
    return task_entry(record, eval_name, prefix)[1]


def trend(values: Sequence[float]) -> str:
    """"rises", "falls", "does not change" or "does not move in one direction" over the sequence."""
    steps = [b - a for a, b in zip(values, values[1:])]
    if all(s == 0 for s in steps):
        return "does not change"
    if all(s > 0 for s in steps):
        return "rises"
    if all(s < 0 for s in steps):
        return "falls"
    return "does not move in one direction"


def compare(a: float, b: float, more: str = "higher", less: str = "lower") -> str:
    """The word that puts a against b."""
    return more if a > b else less if a < b else "the same as"


def fmt(value: float | None, digits: int = 4) -> str:
    """Every number in RESULTS.md goes through here; None is a dash."""
    return "-" if value is None else f"{value:.{digits}f}"


def signed(value: float, digits: int = 4) -> str:
    """A difference with its sign, e.g. "+0.1200", "-0.0300"."""
    return f"{value:+.{digits}f}"


def versus(a: float, b: float, name: str) -> str:
    """a placed against reference b, e.g. "0.0300 below BM25 (0.4500)"."""
    if a == b:
        return f"level with {name} ({fmt(b)})"
    return f"{fmt(abs(a - b))} {compare(a, b, 'above', 'below')} {name} ({fmt(b)})"


def series(metrics: Sequence[dict[str, float]], key: str) -> tuple[list[int], list[float]]:
    """(steps, values) of one logged scalar."""
    rows = [row for row in metrics if key in row]
    return [int(row["step"]) for row in rows], [float(row[key]) for row in rows]


def loss_stability(metrics: Sequence[dict[str, float]]) -> dict[str, float]:
    """Final loss (mean over the last tenth of the logged points), how often and by how much
    the logged loss rose from one point to the next, and the non-finite steps skipped."""
    _, loss = series(metrics, "loss")
    tail = loss[-max(1, len(loss) // 10) :]
    rises = [b - a for a, b in zip(loss, loss[1:]) if b > a]
    return {
        "final_loss": sum(tail) / len(tail),
        "rises": float(len(rises)),
        "largest_rise": max(rises, default=0.0),
        "skipped_steps": float(sum(row.get("skipped_steps", 0.0) for row in metrics)),
    }


MAIN_CODE, MAIN_TEXT, PROBE = "site_code/test", "site_text/test", "classification:"
# The main table's rows: (row name, system for search, system for the probe).
MAIN_ROWS = ((TRAINED, TRAINED, TRAINED), (START, START, START), (RANDOM, RANDOM, RANDOM),
             (f"{BM25} / {BAG_OF_WORDS}", BM25, BAG_OF_WORDS))


def _main_sentences(rows: dict[str, dict[str, Any]], tasks: dict[str, str], classes: int) -> list[str]:
    """Trained against its start and against the lexical reference, on each task (from the numbers)."""
    trained, start, lexical = rows[TRAINED], rows[START], rows[MAIN_ROWS[-1][0]]
    sentences = []
    for kind, title in (("code", "Code search"), ("text", "Text search")):
        t, s, b = trained[kind], start[kind], lexical[kind]
        if None in (t["mrr"], s["mrr"], b["mrr"]):
            continue
        sentences.append(
            f"{title} on {tasks[kind]}: training moves MRR from {fmt(s['mrr'])} at the pretrained start to "
            f"{fmt(t['mrr'])} ({signed(t['mrr'] - s['mrr'])}) and nDCG@10 from {fmt(s['ndcg@10'])} to "
            f"{fmt(t['ndcg@10'])} ({signed(t['ndcg@10'] - s['ndcg@10'])}); the trained model ends "
            f"{versus(t['mrr'], b['mrr'], 'BM25')} in MRR and {versus(t['ndcg@10'], b['ndcg@10'], 'BM25')} in nDCG@10."
        )
    t, s, b = trained["probe_accuracy"], start["probe_accuracy"], lexical["probe_accuracy"]
    if None not in (t, s, b):
        sentences.append(
            f"Linear probe on {tasks['probe']}: accuracy goes from {fmt(s)} at the pretrained start to {fmt(t)} "
            f"({signed(t - s)}), {versus(t, b, 'the bag of words')}; guessing uniformly over the {classes} "
            f"classes scores {fmt(1 / classes)}."
        )
    return sentences


def main_summary(record: Record, stats: dict[str, Any]) -> dict[str, Any]:
    """The main job's table (code and text search MRR / nDCG@10, probe accuracy; trained, pretrained
    start, random init, BM25 or the bag of words) and its sentences."""
    entries = {kind: task_entry(record, "eval", prefix)
               for kind, prefix in (("code", MAIN_CODE), ("text", MAIN_TEXT), ("probe", PROBE))}
    rows: dict[str, dict[str, Any]] = {}
    for name, search, probe in MAIN_ROWS:
        row: dict[str, Any] = {}
        for kind in ("code", "text"):
            scores = entries[kind][1].get(search, {})
            row[kind] = {"mrr": scores.get("mrr"), "ndcg@10": scores.get("ndcg@10")}
        row["probe_accuracy"] = entries["probe"][1].get(probe, {}).get("accuracy")
        rows[name] = row
    tasks = {kind: task for kind, (task, _) in entries.items()}
    sentences = _main_sentences(rows, tasks, len(stats["classes"]))
    random = rows[RANDOM]
    sentences.append(
        f"The same architecture at random initialisation scores code MRR {fmt(random['code']['mrr'])}, text MRR "
        f"{fmt(random['text']['mrr'])} and probe accuracy {fmt(random['probe_accuracy'])}."
    )
    sentences.append(
        f"{fmt(100 * stats['seen_in_training_fraction'], 0)}% of the probe's docstrings come from packages in the "
        "training split of site_code (split by top-level package like stdlib_code), so the main job saw them "
        "(without labels) as queries."
    )
    return {"tasks": tasks, "rows": rows, "sentences": sentences}


def batch_size_summary(records: Sequence[Record], train_examples: dict[str, int]) -> dict[str, Any]:
    """Rows by batch size with held-out code MRR / nDCG@10 and text nDCG@10 / MRR, the baselines,
    and the sentences. train_examples: {run name: pairs in its training split}."""
    by_kind: dict[str, dict[int, Record]] = {"code": {}, "text": {}}
    for record in records:
        by_kind[record["name"].split("_", 1)[0]][record["bindings"]["TrainConfig.global_batch_size"]] = record
    batches = sorted(by_kind["code"])
    steps = records[0]["bindings"]["TrainConfig.num_steps"]
    prefixes = {"code": "stdlib_code/test", "text": "stdlib_text/test"}
    rows = []
    for batch in batches:
        row: dict[str, Any] = {"batch": batch}
        for kind, prefix in prefixes.items():
            record = by_kind[kind][batch]
            scores = task_scores(record, "eval", prefix)[TRAINED]
            epochs = batch * steps / train_examples[record["name"]]
            row[kind] = {"mrr": scores["mrr"], "ndcg@10": scores["ndcg@10"], "epochs": epochs}
        rows.append(row)
    baselines = {
        kind: {
            system: scores
            for system, scores in task_scores(by_kind[kind][batches[0]], "eval", prefixes[kind]).items()
            if system != TRAINED
        }
        for kind in prefixes
    }
    sentences = [
        f"Held-out code-search MRR {trend([r['code']['mrr'] for r in rows])} with the batch size ("
        + ", ".join(f"{fmt(r['code']['mrr'])} at {r['batch']}" for r in rows)
        + "); text-search nDCG@10 "
        + f"{trend([r['text']['ndcg@10'] for r in rows])} ("
        + ", ".join(f"{fmt(r['text']['ndcg@10'])} at {r['batch']}" for r in rows)
        + ")."
    ]
    sentences.append(
        f"At an equal {steps} steps a larger batch also means more data: batch {batches[-1]} draws "
        f"{fmt(rows[-1]['code']['epochs'], 2)} epochs of the code training pairs and "
        f"{fmt(rows[-1]['text']['epochs'], 2)} of the text ones, batch {batches[0]} "
        f"{fmt(rows[0]['code']['epochs'], 2)} and {fmt(rows[0]['text']['epochs'], 2)}."
    )
    for kind in prefixes:
        record = by_kind[kind][batches[-1]]
        n = train_examples[record["name"]]
        if batches[-1] > n:
            sentences.append(
                f"Batch {batches[-1]} is larger than the {n} {kind} training pairs, so each {kind} batch holds "
                f"every pair about {fmt(batches[-1] / n, 1)} times and its copies count as negatives: the "
                "in-batch task cannot be solved and the loss cannot fall to zero."
            )
    for kind, metric in (("code", "mrr"), ("text", "ndcg@10")):
        if BM25 in baselines[kind]:
            best = max(rows, key=lambda r: r[kind][metric])
            bm25 = baselines[kind][BM25][metric]
            sentences.append(
                f"On {kind}, the best batch size ({best['batch']}, {fmt(best[kind][metric])}) is "
                f"{compare(best[kind][metric], bm25, 'above', 'below')} BM25 ({fmt(bm25)})."
            )
    return {"steps": steps, "rows": rows, "baselines": baselines, "sentences": sentences}


def initialisation_summary(pretrained: Record, scratch: Record) -> dict[str, Any]:
    """Code-search scores and probe accuracy before and after training, from each start."""
    code, probe = "stdlib_code/test", "classification:"

    def row(record: Record, eval_name: str, system: str) -> dict[str, float | None]:
        search = task_scores(record, eval_name, code)[system]
        accuracy = task_scores(record, eval_name, probe).get(system, {}).get("accuracy")
        return {"mrr": search["mrr"], "ndcg@10": search["ndcg@10"], "probe_accuracy": accuracy}

    rows = {
        "pretrained_before": row(pretrained, "eval_step0", TRAINED),
        "pretrained_after": row(pretrained, "eval", TRAINED),
        "scratch_before": row(scratch, "eval", RANDOM),
        "scratch_after": row(scratch, "eval", TRAINED),
    }
    steps = pretrained["bindings"]["TrainConfig.num_steps"]
    before, after = rows["pretrained_before"]["mrr"], rows["pretrained_after"]["mrr"]
    start, end = rows["scratch_before"]["mrr"], rows["scratch_after"]["mrr"]
    sentences = [
        f"Code-search MRR goes from {fmt(before)} at step 0 to {fmt(after)} after {steps} steps from the "
        f"pretrained weights, and from {fmt(start)} at initialisation to {fmt(end)} from random weights: at "
        f"equal compute the pretrained start ends {fmt(abs(after - end))} {compare(after, end, 'above', 'below')} "
        "the random one."
    ]
    bm25 = task_scores(scratch, "eval", code).get(BM25)
    if bm25:
        sentences.append(f"BM25 scores {fmt(bm25['mrr'])} on the same task.")
    return {"steps": steps, "rows": rows, "sentences": sentences}


def delimiter_summary(separate: Record, shared: Record) -> dict[str, Any]:
    """Loss stability and held-out code MRR of the two delimiter layouts."""
    rows = {}
    for kind, record in (("separate", separate), ("shared", shared)):
        mrr = task_scores(record, "eval", "stdlib_code/test")[TRAINED]["mrr"]
        rows[kind] = {**loss_stability(record["metrics"]), "mrr": mrr}
    s, h = rows["separate"], rows["shared"]
    sentences = [
        f"Separate delimiters end at a training loss {compare(s['final_loss'], h['final_loss'])} than shared ones "
        f"({fmt(s['final_loss'])} vs {fmt(h['final_loss'])}, mean of the last tenth of the logged points) and "
        f"a held-out code-search MRR {compare(s['mrr'], h['mrr'])} ({fmt(s['mrr'])} vs {fmt(h['mrr'])}).",
        f"The logged loss rose from one point to the next {int(s['rises'])} times with separate and "
        f"{int(h['rises'])} times with shared delimiters; the largest rise was {fmt(s['largest_rise'])} vs "
        f"{fmt(h['largest_rise'])}, and {int(s['skipped_steps'])} vs {int(h['skipped_steps'])} steps had a "
        "non-finite loss or gradient.",
    ]
    return {"rows": rows, "sentences": sentences}


def temperature_summary(records: Sequence[Record]) -> dict[str, Any]:
    """First and last logged logit scale exp(tau) of every run, and which way each moved."""
    rows = {}
    for record in records:
        _, values = series(record["metrics"], "temperature")
        rows[record["name"]] = {"first": values[0], "last": values[-1], "min": min(values), "max": max(values)}
    directions = {name: trend([row["first"], row["last"]]) for name, row in rows.items()}
    counts = {d: sum(v == d for v in directions.values()) for d in dict.fromkeys(directions.values())}
    sentences = [
        "Between the first and the last logged step the logit scale "
        + "; ".join(f"{verb} in {n} of the {len(rows)} runs" for verb, n in counts.items())
        + f" (from {fmt(min(r['first'] for r in rows.values()), 3)}-{fmt(max(r['first'] for r in rows.values()), 3)} "
        f"to {fmt(min(r['last'] for r in rows.values()), 3)}-{fmt(max(r['last'] for r in rows.values()), 3)})."
    ]
    return {"rows": rows, "sentences": sentences}


def probe_summary(records: Sequence[Record], stats: dict[str, Any]) -> dict[str, Any]:
    """Probe accuracy and macro-F1 of every evaluated system, baselines included, best first."""
    rows = []
    for record in records:
        for eval_name in record["evals"]:
            for system, metrics in task_scores(record, eval_name, "classification:").items():
                if system == TRAINED:
                    name = record["label"] + (", step 0 (as imported)" if eval_name == "eval_step0" else ", trained")
                elif system == START:
                    name = f"{record['label']}, pretrained start"
                elif system == RANDOM:
                    name = f"{record['model']}, random init"
                    if any(r["system"] == name for r in rows):  # the same architecture, another run's lengths
                        name += f" ({record['label']})"
                elif system == BAG_OF_WORDS and not any(r["system"] == system for r in rows):
                    name = system  # the same for every run that asks for baselines: listed once
                else:
                    continue
                rows.append({"system": name, "accuracy": metrics["accuracy"], "macro_f1": metrics["macro_f1"]})
    rows.sort(key=lambda r: -r["accuracy"])
    bow = next(r for r in rows if r["system"] == BAG_OF_WORDS)
    above = [r["system"] for r in rows if r["accuracy"] > bow["accuracy"]]
    classes = len(stats["classes"])
    sentences = [
        f"{len(above)} of the {len(rows) - 1} embedding systems beat the bag of words ({fmt(bow['accuracy'])})"
        + (f": {', '.join(above)}." if above else ".")
        + f" Guessing uniformly over the {classes} classes scores {fmt(1 / classes)}.",
        f"{fmt(100 * stats['seen_in_training_fraction'], 0)}% of the probe's docstrings come from packages in "
        "stdlib_code's training split, so the contrastive runs saw them (without labels) as queries.",
    ]
    return {"rows": rows, "sentences": sentences}


def summarise(
    by_experiment: dict[str, list[Record]], train_examples: dict[str, int], probe_stats: dict[str, Any]
) -> dict[str, Any]:
    """Every summary RESULTS.md shows, keyed by section. by_experiment: the run records of each
    experiment in experiments.py order (the main job's one run first); train_examples: {run name:
    training pairs} of the batch runs."""
    records = [r for rs in by_experiment.values() for r in rs]
    return {
        "main": main_summary(by_experiment["main"][0], probe_stats),
        "batch_size": batch_size_summary(by_experiment["batch_size"], train_examples),
        "initialisation": initialisation_summary(*by_experiment["initialisation"]),
        "delimiters": delimiter_summary(*by_experiment["delimiters"]),
        "temperature": temperature_summary(records),
        "probe": probe_summary(records, probe_stats),
    }
