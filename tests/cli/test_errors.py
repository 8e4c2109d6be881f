"""How commands end: one readable message with the cause first, the traceback in a log file, the
exit code; unexpected errors keep their traceback; usage errors keep argparse's message."""

from __future__ import annotations

import errno
import subprocess
import sys
import textwrap

import pytest

from cpt_jax.cli import errors


def _run(body: str, env: dict | None = None) -> subprocess.CompletedProcess:
    script = textwrap.dedent(f"""
        import sys
        from cpt_jax.cli.errors import run
        def main(argv):
        {textwrap.indent(textwrap.dedent(body), '    ')}
        run(main, sys.argv[1:])
    """)
    return subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=120, env=env)


def test_an_expected_error_is_one_message_with_the_traceback_in_a_log():
    proc = _run("raise ValueError('TrainConfig.log_every=0 is out of range; set it to 1 or more.')")
    lines = proc.stderr.strip().splitlines()
    assert proc.returncode == 1
    assert lines[0] == "error: ValueError: TrainConfig.log_every=0 is out of range; set it to 1 or more."
    assert len(lines) == 2 and "Traceback" not in proc.stderr
    log = lines[1].split("full traceback in ")[1].split(";")[0]
    assert "Traceback (most recent call last)" in open(log).read()


def test_a_full_disk_anywhere_in_the_chain_is_named_with_the_fix():
    try:
        try:
            raise OSError(errno.ENOSPC, "No space left on device", "/runs/x/checkpoints/3/params/0.data")
        except OSError as e:
            raise RuntimeError("orbax: save failed") from e
    except RuntimeError as wrapped:
        message, expected = errors.describe(wrapped)
    assert expected and message.startswith("no space left on the device while writing /runs/x/checkpoints/3/params")
    assert "Free space" in message and "resumes from its last complete checkpoint" in message


def test_a_full_disk_reported_in_words_by_orbax_is_named_too():
    error = ValueError("RESOURCE_EXHAUSTED: Error writing \"x/0.0\" in OCDBT database at local file \"/runs/x/\": "
                       "Failed writing: \"/runs/x/d\": No space left on device [os_error_code='28']")
    message, expected = errors.describe(error)
    assert expected and message.startswith("no space left on the device (RESOURCE_EXHAUSTED")


def test_a_bug_keeps_its_traceback_and_the_exit_code_is_1():
    proc = _run("return 1 // 0")
    assert proc.returncode == 1
    assert "Traceback (most recent call last)" in proc.stderr and proc.stderr.strip().endswith(
        "error: ZeroDivisionError: integer division or modulo by zero")


def test_interrupts_exit_130_and_usage_errors_keep_their_code():
    assert _run("raise KeyboardInterrupt").returncode == errors.EXIT_INTERRUPTED
    proc = _run("raise SystemExit('usage: bad flag')")
    assert proc.returncode == 1 and proc.stderr.strip() == "usage: bad flag"
    assert _run("return 3").returncode == 3


@pytest.mark.parametrize("env_value", ["1"])
def test_the_traceback_can_be_printed_instead(env_value):
    import os

    proc = _run("raise ValueError('bad')", env={**os.environ, errors.TRACEBACK_ENV: env_value})
    assert "Traceback (most recent call last)" in proc.stderr and "full traceback in" not in proc.stderr
