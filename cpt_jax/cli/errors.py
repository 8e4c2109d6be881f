"""How a command ends: its exit code, and on failure one readable message with the cause first.

`run(main, argv)` is what every `python -m cpt_jax.<verb>` entry point calls. An error the
commands expect (a bad setting, bad data, a checkpoint that will not restore, a full disk, an
interrupt) prints `error: <cause>` and its fix; the full traceback goes to a log file (or to
stderr with CPT_JAX_TRACEBACK=1). An unexpected error (a bug) prints its traceback as usual.
Either way the process then exits at once: Orbax's and XLA's background threads, torn down by
interpreter shutdown after a failure, print hundreds of lines that would bury the message.
"""

from __future__ import annotations

import errno
import os
import sys
import tempfile
import traceback
from collections.abc import Callable, Iterator
from typing import NoReturn

TRACEBACK_ENV = "CPT_JAX_TRACEBACK"
EXIT_ERROR, EXIT_USAGE, EXIT_INTERRUPTED = 1, 2, 130
DISK_FULL_TEXT = ("No space left on device", "os_error_code='28'")


def causes(error: BaseException) -> Iterator[BaseException]:
    """The error and the chain of errors behind it (__cause__, else __context__)."""
    seen = set()
    while error is not None and id(error) not in seen:
        seen.add(id(error))
        yield error
        error = error.__cause__ or error.__context__


def describe(error: BaseException) -> tuple[str, bool]:
    """(one-paragraph message, whether the commands expect this kind of error)."""
    for e in causes(error):
        full = isinstance(e, OSError) and e.errno == errno.ENOSPC
        if full or any(mark in str(e) for mark in DISK_FULL_TEXT):  # TensorStore (Orbax) says it in words
            where = f" while writing {e.filename}" if isinstance(e, OSError) and e.filename else ""
            detail = str(e) if len(str(e)) <= 300 else str(e)[:300] + " ..."
            return (f"no space left on the device{where} ({detail}). Free space, or point the output elsewhere, and "
                    "rerun: a training run resumes from its last complete checkpoint.", True)
    if isinstance(error, KeyboardInterrupt):
        return "interrupted.", True
    if isinstance(error, (ValueError, TypeError, FileNotFoundError, NotADirectoryError, PermissionError,
                          FloatingPointError, RuntimeError, OSError)):
        return f"{type(error).__name__}: {error}", True
    return f"{type(error).__name__}: {error}", False


def _log_traceback(error: BaseException) -> str | None:
    """Writes the full traceback to a temporary file; its path, or None if even that fails."""
    try:
        fd, path = tempfile.mkstemp(prefix="cpt_jax-error-", suffix=".log")
        with os.fdopen(fd, "w") as f:
            traceback.print_exception(error, file=f)
        return path
    except OSError:
        return None


def report(error: BaseException) -> int:
    """Prints the error as described above; returns the exit code."""
    message, expected = describe(error)
    if isinstance(error, KeyboardInterrupt):
        print(f"\nerror: {message}", file=sys.stderr)
        return EXIT_INTERRUPTED
    if not expected or os.environ.get(TRACEBACK_ENV):
        traceback.print_exception(error, file=sys.stderr)
    print(f"error: {message}", file=sys.stderr)
    if expected and not os.environ.get(TRACEBACK_ENV):
        path = _log_traceback(error)
        if path:
            print(f"(full traceback in {path}; set {TRACEBACK_ENV}=1 to print it here)", file=sys.stderr)
    return EXIT_ERROR


def run(main: Callable[[list[str]], int | None], argv: list[str]) -> NoReturn:
    """Runs a command's main and exits with its code; see the module docstring."""
    try:
        code = main(argv) or 0
    except SystemExit:  # argparse usage errors and explicit exits keep their code and message
        raise
    except BaseException as error:  # noqa: BLE001 - every failure ends here, reported once
        code = report(error)
    else:
        sys.stdout.flush()
        sys.exit(code)
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(code)
