"""MetricsWriter: TensorBoard reads back exactly what was written, and TensorFlow is never imported."""

from __future__ import annotations

import io
import json
import subprocess
import sys

import pytest

from cpt_jax.train.metrics import MetricsWriter, format_duration


def test_tensorboard_reads_the_scalars_and_jsonl_has_them(tmp_path):
    writer = MetricsWriter(str(tmp_path), total_steps=20, stream=io.StringIO())
    writer.start(1)
    writer.write(10, {"loss": 2.5, "temperature": 14.25})
    writer.write(20, {"loss": 1.25, "temperature": 15.5})
    writer.close()

    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    events = EventAccumulator(str(tmp_path / "tensorboard"))
    events.Reload()
    assert sorted(events.Tags()["scalars"]) == ["loss", "temperature"]
    assert [(e.step, e.value) for e in events.Scalars("loss")] == [(10, 2.5), (20, 1.25)]
    assert [(e.step, e.value) for e in events.Scalars("temperature")] == [(10, 14.25), (20, 15.5)]
    lines = [json.loads(line) for line in (tmp_path / "metrics.jsonl").read_text().splitlines()]
    assert lines == [{"step": 10, "loss": 2.5, "temperature": 14.25}, {"step": 20, "loss": 1.25, "temperature": 15.5}]


def test_writing_metrics_does_not_import_tensorflow(tmp_path):
    code = (
        "import sys; from cpt_jax.train.metrics import MetricsWriter;"
        f"w = MetricsWriter({str(tmp_path)!r}, 1); w.write(1, {{'loss': 1.0}}); w.close();"
        "print('tensorflow' in sys.modules)"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip().splitlines()[-1] == "False"


@pytest.mark.parametrize("seconds,text", [(0, "0m00s"), (75, "1m15s"), (3725, "1h02m05s"), (-3, "0m00s")])
def test_format_duration(seconds, text):
    assert format_duration(seconds) == text
