"""Batch fingerprints: order-free, and the run-vs-run comparison CLI."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import numpy as np

from cpt_jax.cli.fingerprint import main
from cpt_jax.batch import PairBatch, padded_side
from cpt_jax.data import fingerprint


def _batch(tokens):
    side = padded_side(tokens, np.ones_like(tokens))
    return PairBatch(side, side)


def test_fingerprint_ignores_row_order_but_not_content():
    tokens = np.arange(12, dtype=np.int32).reshape(4, 3)
    batch, shuffled = _batch(tokens), _batch(tokens[[2, 0, 3, 1]])
    changed_tokens = tokens.copy()
    changed_tokens[1, 1] = 99
    changed = _batch(changed_tokens)
    assert fingerprint.batch_fingerprint(batch) == fingerprint.batch_fingerprint(shuffled)
    assert fingerprint.batch_fingerprint(batch) != fingerprint.batch_fingerprint(changed)


def _run(path, entries):
    path.mkdir()
    (path / fingerprint.FINGERPRINTS_FILE).write_text("".join(json.dumps(e) + "\n" for e in entries))
    return str(path)


def test_compare_runs(tmp_path, capsys):
    a = _run(tmp_path / "a", [{"batch": i, "fingerprint": f"f{i}"} for i in range(4)])
    # A resumed run logs batch 2 twice (before and after the restart); the last entry counts.
    b = _run(tmp_path / "b", [{"batch": 0, "fingerprint": "f0"}, {"batch": 2, "fingerprint": "zz"},
                              {"batch": 1, "fingerprint": "f1"}, {"batch": 2, "fingerprint": "f2"}])
    assert main([a, b]) == 0
    assert "3 batches in both runs (0..2); 3 identical, 0 differ" in capsys.readouterr().out
    c = _run(tmp_path / "c", [{"batch": 3, "fingerprint": "other"}])
    assert fingerprint.compare(a, c) == [3] and main([a, c]) == 1
    assert main([a]) == 2


def test_python_m_fingerprint(tmp_path):
    """The `python -m` verb runs cpt_jax/cli/fingerprint.py's main and exits with its code."""
    a = _run(tmp_path / "a", [{"batch": 0, "fingerprint": "f0"}])
    b = _run(tmp_path / "b", [{"batch": 0, "fingerprint": "other"}])
    repo = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    proc = subprocess.run([sys.executable, "-m", "cpt_jax.data.fingerprint", a, b], cwd=repo,
                          capture_output=True, text=True, timeout=300)
    assert proc.returncode == 1 and "1 batches in both runs (0..0); 0 identical, 1 differ: [0]" in proc.stdout
