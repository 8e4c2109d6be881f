"""Atomic writes of the files and directories a run depends on.

A file is written to a temporary sibling (same directory, so the same filesystem), flushed,
fsync'ed and renamed over its final path with ``os.replace``: a reader sees the old file or
the whole new one, never a half, even when the process dies or the disk fills mid-write. A
directory is filled as a temporary sibling (``staged_dir``) and renamed into place only once
complete.

Every failure removes what it created and raises ``AtomicWriteError``, an OSError with the
original errno, whose message names the final path and the fix ("free space on <filesystem>"
for ENOSPC), chained to the original error.

This is a base-layer module: it imports nothing from cpt_jax.
"""

from __future__ import annotations

import contextlib
import ctypes
import errno
import json
import os
import secrets
import shutil
from collections.abc import Iterator
from typing import Any

__all__ = ["AtomicWriteError", "write_bytes", "write_text", "write_json", "replace_dir", "staged_dir"]


class AtomicWriteError(OSError):
    """An atomic write failed; the final path holds what it held before. ``errno`` is the
    original error's (ENOSPC for a full disk)."""


def _filesystem(path: str) -> str:
    """The mount point holding `path` (or the nearest existing ancestor of it)."""
    path = os.path.abspath(path)
    while not os.path.exists(path):
        path = os.path.dirname(path)
    while not os.path.ismount(path):
        path = os.path.dirname(path)
    return path


def _fix(path: str, error: OSError) -> str:
    code = error.errno
    if code in (errno.ENOSPC, getattr(errno, "EDQUOT", -1), errno.EFBIG):
        fs = _filesystem(path)
        try:
            free = f" ({shutil.disk_usage(fs).free / 2**20:.1f} MiB free now)"
        except OSError:
            free = ""
        what = "free space on" if code == errno.ENOSPC else "free space (or raise the quota / file-size limit) on"
        return f"{what} {fs}{free} and run again"
    if code in (errno.EACCES, errno.EPERM, errno.EROFS):
        return f"make {os.path.dirname(os.path.abspath(path)) or '.'} writable (or write elsewhere) and run again"
    return f"check the filesystem of {os.path.dirname(os.path.abspath(path)) or '.'} and run again"


def _error(path: str, error: OSError, existed: bool, kind: str = "file") -> AtomicWriteError:
    left = f"the previous {kind} is unchanged" if existed else f"no {kind} was created"
    reason = error.strerror or str(error) or type(error).__name__
    if isinstance(error, AtomicWriteError):
        reason = os.strerror(error.errno)
    return AtomicWriteError(error.errno or errno.EIO, f"Could not write {path}: {reason}; {left}. Fix: {_fix(path, error)}.")


def _tmp_name(path: str, tag: str) -> str:
    directory, name = os.path.split(os.path.abspath(path))
    return os.path.join(directory, f".{name}.{tag}.{os.getpid()}.{secrets.token_hex(4)}")


def _fsync_dir(directory: str) -> None:
    """Makes a rename in `directory` durable (best effort: not every platform opens directories)."""
    try:
        fd = os.open(directory, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def write_bytes(path: str, data: bytes) -> None:
    """Writes `data` to `path` atomically (temporary sibling, fsync, os.replace).

    Raises AtomicWriteError (an OSError) naming `path` and the fix; `path` then holds its old
    content (or does not exist) and no temporary file is left behind.
    """
    path = os.fspath(path)
    existed = os.path.exists(path)
    tmp = _tmp_name(path, "tmp")
    try:
        try:
            mode = os.stat(path).st_mode & 0o777 if existed else 0o666  # new files: 0o666 minus the umask
            fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, mode)
            with open(fd, "wb") as f:
                f.write(data)
                f.flush()
                os.fsync(f.fileno())
            if existed:
                os.chmod(tmp, mode)  # os.open applied the umask; keep the old file's mode
            os.replace(tmp, path)
        except BaseException:
            with contextlib.suppress(OSError):
                os.unlink(tmp)
            raise
    except OSError as e:
        raise _error(path, e, existed) from e
    _fsync_dir(os.path.dirname(os.path.abspath(path)))


def write_text(path: str, text: str, encoding: str = "utf-8") -> None:
    """Writes `text` to `path` atomically (see write_bytes)."""
    write_bytes(path, text.encode(encoding))


def write_json(path: str, obj: Any, **json_kwargs: Any) -> None:
    """Writes ``json.dumps(obj, **json_kwargs)`` (plus a final newline) to `path` atomically.
    The object is serialised before anything is written, so a TypeError leaves no trace."""
    write_text(path, json.dumps(obj, **json_kwargs) + "\n")


_RENAME_EXCHANGE = 2  # linux/fs.h


def _exchange(a: str, b: str) -> bool:
    """Atomically swaps two paths with renameat2(RENAME_EXCHANGE); False where unsupported."""
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        renameat2 = libc.renameat2
    except (OSError, AttributeError):
        return False
    renameat2.argtypes = [ctypes.c_int, ctypes.c_char_p, ctypes.c_int, ctypes.c_char_p, ctypes.c_uint]
    at_fdcwd = -100
    if renameat2(at_fdcwd, os.fsencode(a), at_fdcwd, os.fsencode(b), _RENAME_EXCHANGE) == 0:
        return True
    code = ctypes.get_errno()
    if code in (errno.EINVAL, errno.ENOSYS, errno.EOPNOTSUPP, errno.ENOTSUP):
        return False
    raise OSError(code, os.strerror(code), b)


def replace_dir(tmp_dir: str, final_dir: str, replace: bool = True) -> None:
    """Moves the complete directory `tmp_dir` to `final_dir` (same filesystem).

    An absent or empty `final_dir` is replaced by one rename. A non-empty one is replaced (when
    `replace`) by an atomic exchange where the kernel supports it (Linux renameat2), else by two
    renames (old aside, new into place) with the old directory put back if the second fails;
    the old directory is then deleted. `final_dir` is never a mix of old and new files. With
    ``replace=False`` a non-empty `final_dir` raises FileExistsError and `tmp_dir` stays.
    """
    final_dir = os.path.abspath(final_dir)
    if os.path.exists(final_dir) and not os.path.isdir(final_dir):
        raise NotADirectoryError(errno.ENOTDIR, f"{final_dir} exists and is not a directory; remove it or write elsewhere")
    try:
        os.rename(tmp_dir, final_dir)  # final_dir absent or an empty directory: atomic
    except OSError as e:
        if e.errno not in (errno.ENOTEMPTY, errno.EEXIST):
            raise
        if not replace:
            raise FileExistsError(errno.EEXIST, f"{final_dir} is not empty; nothing was overwritten") from e
        old = _tmp_name(final_dir, "old")
        if _exchange(tmp_dir, final_dir):
            old = tmp_dir  # now holds the previous contents
        else:
            os.rename(final_dir, old)
            try:
                os.rename(tmp_dir, final_dir)
            except BaseException:
                os.rename(old, final_dir)
                raise
        shutil.rmtree(old, ignore_errors=True)
    _fsync_dir(os.path.dirname(final_dir))


def _fsync_tree(directory: str) -> None:
    for root, _, names in os.walk(directory):
        for name in names:
            path = os.path.join(root, name)
            if os.path.isfile(path) and not os.path.islink(path):
                fd = os.open(path, os.O_RDONLY)
                try:
                    os.fsync(fd)
                finally:
                    os.close(fd)
        _fsync_dir(root)


@contextlib.contextmanager
def staged_dir(final_dir: str, replace: bool = True) -> Iterator[str]:
    """Yields a new temporary sibling directory of `final_dir` to fill; on a clean exit its files
    are fsync'ed and it is renamed to `final_dir` (replace_dir). On any error it is deleted and
    `final_dir` keeps what it held (or stays absent); an OSError (a full disk) is re-raised as
    AtomicWriteError naming `final_dir` and the fix, other exceptions unchanged.

        with staged_dir(out_dir) as tmp:
            write(os.path.join(tmp, "a.json"))
    """
    final_dir = os.path.abspath(os.fspath(final_dir))
    existed = os.path.isdir(final_dir) and bool(os.listdir(final_dir))
    tmp = _tmp_name(final_dir, "staging")
    try:
        try:
            os.makedirs(os.path.dirname(final_dir), exist_ok=True)
            os.mkdir(tmp)
            yield tmp
            _fsync_tree(tmp)
            replace_dir(tmp, final_dir, replace=replace)
        except BaseException:
            shutil.rmtree(tmp, ignore_errors=True)
            raise
    except (FileExistsError, NotADirectoryError):
        raise
    except OSError as e:  # an AtomicWriteError inside names a temporary path: name final_dir instead
        raise _error(final_dir, e, existed, kind="directory") from e
