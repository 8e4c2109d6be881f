"""The report's main line: the README's main job as the first experiment (trained and evaluated by
the README's commands), where its probe is built, and the table and sentences RESULTS.md opens with."""

from __future__ import annotations

import dataclasses
import json
import os

import pytest

from cpt_jax.data import probe_tasks
from cpt_jax.eval.suite import RANDOM, START, TRAINED
from report import __main__ as report_main
from report import analysis, markdown, runner
from report.experiments import FULL, MAIN_GIN, QUICK, experiments
from tests.report import fakes
from tests.report.fakes import PROBE_KEY, SITE_CODE_KEY, SITE_TEXT_KEY


def _main(sizes):
    (run,) = next(exp for exp in experiments(sizes) if exp.key == "main").runs
    return run


def test_the_main_job_is_evaluated_by_the_readmes_command(tmp_path):
    """FULL: exactly `--tasks site_code,site_text --max_pairs 1000 --max_len 256 --classification stdlib_packages`
    (plus the output); QUICK: the report's smaller probe folder and fewer pairs."""
    run = _main(FULL)
    (evaluation,) = run.evals
    argv = runner.Runner(str(tmp_path), "stdlib_packages").eval_argv(run, evaluation)
    run_dir = runner.display_path(str(tmp_path / "main"))
    assert argv == [
        "python", "-m", "cpt_jax.evaluate", "--checkpoint", run_dir, "--tasks", "site_code,site_text",
        "--max_pairs", "1000", "--max_len", "256", "--classification", "stdlib_packages",
        "--output", os.path.join(run_dir, "report_eval.json"),
    ]
    quick = _main(QUICK)
    argv = runner.Runner(str(tmp_path), str(tmp_path / "probe" / "p")).eval_argv(quick, quick.evals[0])
    assert argv[argv.index("--max_pairs") + 1] == str(QUICK.main_max_pairs)
    assert argv[argv.index("--classification") + 1] == runner.display_path(str(tmp_path / "probe" / "p"))


def test_main_sizes_are_all_set_or_all_left_to_the_gin_file():
    with pytest.raises(ValueError, match=r"set all four \(a shortened main job\) or none"):
        dataclasses.replace(QUICK, main_lengths=None)


def test_the_probe_is_named_in_full_mode_and_a_folder_in_quick_mode(tmp_path, monkeypatch):
    built = []
    monkeypatch.setattr(probe_tasks, "ensure_task", lambda folder, task: built.append((folder, task)) or {"n": 1})
    assert report_main.probe_task(FULL, str(tmp_path)) == ("stdlib_packages", {"n": 1})
    assert built[-1] == (os.path.join(runner.REPO_ROOT, "outputs", "tfds", "classification", "stdlib_packages"),
                         probe_tasks.CLASSIFICATION_TASKS["stdlib_packages"])
    folder = str(tmp_path / "probe" / "stdlib_packages")
    assert report_main.probe_task(QUICK, str(tmp_path)) == (folder, {"n": 1}) and built[-1] == (folder, QUICK.probe)


def test_the_main_line_table_and_sentences(results):
    main = results["summary"]["main"]
    assert main["tasks"] == {"code": SITE_CODE_KEY, "text": SITE_TEXT_KEY, "probe": PROBE_KEY}
    assert list(main["rows"]) == [TRAINED, START, RANDOM, "BM25 / bag of words (TF-IDF)"]
    assert main["rows"]["BM25 / bag of words (TF-IDF)"] == {
        "code": {"mrr": 0.45, "ndcg@10": 0.52}, "text": {"mrr": 0.40, "ndcg@10": 0.45}, "probe_accuracy": 0.6
    }
    assert main["rows"][START]["probe_accuracy"] == 0.5 and main["rows"][RANDOM]["code"]["mrr"] == 0.01
    assert main["sentences"][:3] == [
        f"Code search on {SITE_CODE_KEY}: training moves MRR from 0.3000 at the pretrained start to 0.4200 "
        "(+0.1200) and nDCG@10 from 0.3800 to 0.5000 (+0.1200); the trained model ends 0.0300 below BM25 (0.4500) "
        "in MRR and 0.0200 below BM25 (0.5200) in nDCG@10.",
        f"Text search on {SITE_TEXT_KEY}: training moves MRR from 0.5000 at the pretrained start to 0.6000 "
        "(+0.1000) and nDCG@10 from 0.5500 to 0.6500 (+0.1000); the trained model ends 0.2000 above BM25 (0.4000) "
        "in MRR and 0.2000 above BM25 (0.4500) in nDCG@10.",
        f"Linear probe on {PROBE_KEY}: accuracy goes from 0.5000 at the pretrained start to 0.5500 (+0.0500), "
        "0.0500 below the bag of words (0.6000); guessing uniformly over the 4 classes scores 0.2500.",
    ]
    assert main["sentences"][3] == ("The same architecture at random initialisation scores code MRR 0.0100, "
                                    "text MRR 0.0300 and probe accuracy 0.2600.")
    assert main["sentences"][4].startswith("75% of the probe's docstrings")


def test_the_main_line_words_follow_the_numbers(results):
    """Training that lowers the scores, and a tie with the lexical reference, are said as such."""
    record = json.loads(json.dumps(results["runs"]["main"]))
    scores = record["evals"]["eval"]["results"]
    scores[SITE_CODE_KEY][TRAINED] = {"mrr": 0.25, "ndcg@10": 0.52}
    scores[PROBE_KEY][TRAINED]["accuracy"] = 0.7
    del scores[SITE_TEXT_KEY][START]
    sentences = analysis.main_summary(record, results["probe"])["sentences"]
    assert "MRR from 0.3000 at the pretrained start to 0.2500 (-0.0500)" in sentences[0]
    assert "ends 0.2000 below BM25 (0.4500) in MRR and level with BM25 (0.5200) in nDCG@10" in sentences[0]
    assert sentences[1].startswith("Linear probe")  # text search has no start to compare with: no sentence
    assert "to 0.7000 (+0.2000), 0.1000 above the bag of words (0.6000)" in sentences[1]


def test_results_md_opens_with_the_main_line(results):
    text = markdown.render(results)
    sections = [line for line in text.splitlines() if line.startswith("## ")]
    assert sections == ["## Main job", "## Ablations from scratch (tiny model) and the initialisation comparison",
                        "## Runs"]
    assert text.index("## Ablations") < text.index("### Batch size") < text.index("### Linear probe")
    assert "| cpt-jax (trained) | 0.4200 | 0.5000 | 0.6000 | 0.6500 | 0.5500 |" in text
    assert "| pretrained start | 0.3000 | 0.3800 | 0.5000 | 0.5500 | 0.5000 |" in text
    assert "| BM25 / bag of words (TF-IDF) | 0.4500 | 0.5200 | 0.4000 | 0.4500 | 0.6000 |" in text
    main = text[text.index("## Main job"):text.index("## Ablations")]
    assert all(sentence in main for sentence in results["summary"]["main"]["sentences"])
    assert "--max_pairs 100 --max_len 256 --classification" in main and f"--gin_file={MAIN_GIN}" in main
    assert f"]({results['plots']['main']})" in main


def test_the_temperature_plot_takes_a_run_without_a_steps_binding(tmp_path):
    """FULL mode runs the main job with no bindings at all: its length comes from its metrics."""
    from report import plots

    record = {"label": "main job", "bindings": {}, "metrics": fakes.metrics(16, 4.0)}
    other = {"label": "tiny", "bindings": {"TrainConfig.num_steps": 8}, "metrics": fakes.metrics(8, 3.0)}
    path = plots.temperature([record, other], str(tmp_path / "t.png"))
    assert os.path.getsize(path) > 0
