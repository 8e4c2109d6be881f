"""An order-preserving map over worker processes, for the CPU-bound part of corpus builds.

Mining pairs from source files (parsing Python with ``ast``, walking definitions, splitting
docstrings into spans) is pure Python and holds the GIL, so a build used one core while the
machine had more. :func:`ordered_map` runs the per-file function in a pool of spawned processes
and yields the results in the order of the inputs, so a build writes the same examples, keys and
drop counts whatever the number of workers (the builders count drops in the parent, from what
each call returns).

Workers are started with ``spawn``: the parent may hold TensorFlow's or JAX's threads, which a
forked child would inherit mid-lock. Small inputs (under ``min_items``) run inline, where a pool
would cost more to start than it saves. ``CPT_JAX_BUILD_WORKERS=1`` turns the pool off. A
spawned worker imports the main script as multiprocessing does (guarded by ``if __name__ ==
"__main__":``), and nothing set at run time (a monkeypatched constant) reaches it; should the
workers fail to start or die, the rest of the map runs in this process, with the same results.
"""

from __future__ import annotations

import collections
import concurrent.futures
import itertools
import multiprocessing
import os
import sys
from collections.abc import Callable, Iterable, Iterator
from typing import TypeVar

WORKERS_ENV = "CPT_JAX_BUILD_WORKERS"
MAX_DEFAULT_WORKERS = 8

T = TypeVar("T")
R = TypeVar("R")


def default_workers() -> int:
    """CPT_JAX_BUILD_WORKERS if set, else the CPUs this process may run on (at most 8)."""
    value = os.environ.get(WORKERS_ENV, "").strip()
    if value:
        try:
            workers = int(value)
        except ValueError:
            workers = 0
        if workers < 1:
            raise ValueError(f"{WORKERS_ENV}={value!r}: give a positive number of build processes "
                             f"(1 builds in this process alone), or unset it to use every CPU.")
        return workers
    try:
        cpus = len(os.sched_getaffinity(0))
    except AttributeError:  # not on Linux
        cpus = os.cpu_count() or 1
    return max(1, min(cpus, MAX_DEFAULT_WORKERS))


def ordered_map(
    fn: Callable[[T], R], items: Iterable[T], workers: int | None = None, *, min_items: int = 64,
    window: int | None = None,
) -> Iterator[R]:
    """``fn(item)`` for every item, in the order of ``items``.

    fn must be a module-level function (it is pickled by name) and items picklable. With one
    worker, or fewer than ``min_items`` items, everything runs in this process. Otherwise at most
    ``window`` items (default 4 per worker) are in flight, so memory stays bounded however long
    ``items`` is. An exception in ``fn`` is raised here, at its item; closing the generator early
    cancels what has not started, and the pool is shut down on every exit path.
    """
    workers = default_workers() if workers is None else workers
    it = iter(items)
    head = list(itertools.islice(it, min_items))
    if workers <= 1 or len(head) < min_items:
        for item in itertools.chain(head, it):
            yield fn(item)
        return
    window = window or 4 * workers
    items = itertools.chain(head, it)
    # [item, its future]: an item stays here until its result is yielded, so a broken pool loses none.
    pending: collections.deque[list] = collections.deque()
    context = multiprocessing.get_context("spawn")
    try:
        with concurrent.futures.ProcessPoolExecutor(workers, mp_context=context) as pool:
            try:
                for item in items:
                    pending.append([item, None])
                    pending[-1][1] = pool.submit(fn, item)
                    if len(pending) >= window:
                        yield pending[0][1].result()
                        pending.popleft()
                while pending:
                    yield pending[0][1].result()
                    pending.popleft()
            finally:
                for _, future in pending:
                    if future is not None:
                        future.cancel()
    except concurrent.futures.process.BrokenProcessPool as e:
        # A worker could not start or died (e.g. a main script without an `if __name__ ==
        # "__main__":` guard, which every spawned worker imports, or a main read from stdin):
        # the rest runs here, with the same results.
        print(f"cpt_jax.data.parallel: the build's worker processes failed ({e}); continuing in this process. "
              f"Guard the main script with `if __name__ == \"__main__\":`, or set {WORKERS_ENV}=1.",
              file=sys.stderr, flush=True)
        for item in itertools.chain((item for item, _ in pending), items):
            yield fn(item)
