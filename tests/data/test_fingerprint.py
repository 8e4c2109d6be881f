"""Batch fingerprints: order-free, and the run-vs-run comparison CLI."""

from __future__ import annotations

import json

import numpy as np

from cpt_jax.data import fingerprint


def test_fingerprint_ignores_row_order_but_not_content():
    batch = {"x_tokens": np.arange(12).reshape(4, 3), "x_mask": np.ones((4, 3), np.int32)}
    shuffled = {k: v[[2, 0, 3, 1]] for k, v in batch.items()}
    changed = {k: v.copy() for k, v in batch.items()}
    changed["x_tokens"][1, 1] = 99
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
    assert fingerprint.main([a, b]) == 0
    assert "3 batches in both runs (0..2); 3 identical, 0 differ" in capsys.readouterr().out
    c = _run(tmp_path / "c", [{"batch": 3, "fingerprint": "other"}])
    assert fingerprint.compare(a, c) == [3] and fingerprint.main([a, c]) == 1
    assert fingerprint.main([a]) == 2
