"""A background thread that produces items ahead of their consumer."""

from __future__ import annotations

import dataclasses
import queue
import threading
from collections.abc import Callable, Iterator
from typing import Generic, TypeVar

T = TypeVar("T")


THREAD_NAME = "cpt_jax-prefetch"  # so a test (or a person with py-spy) can find it


class Prefetch(Iterator[T], Generic[T]):
    """Calls produce() in a daemon thread, up to `depth` results ahead of the consumer; an error
    there is raised here. depth 0 calls it synchronously in next(). close() stops the thread."""

    def __init__(self, produce: Callable[[], T], depth: int) -> None:
        self._produce = produce
        self._failure: BaseException | None = None
        self._queue: queue.Queue = queue.Queue(maxsize=max(depth, 1))
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name=THREAD_NAME, daemon=True) if depth else None
        if self._thread:
            self._thread.start()

    def _run(self) -> None:
        try:
            while not self._stop.is_set():
                self._put(self._produce())
        except BaseException as e:  # noqa: BLE001 - handed to the consumer
            self._put(_Failure(e))

    def _put(self, item: object) -> None:
        while not self._stop.is_set():
            try:
                self._queue.put(item, timeout=0.1)
                return
            except queue.Full:
                continue

    def __next__(self) -> T:
        if self._thread is None:
            return self._produce()
        if self._failure is None:
            item = self._queue.get()
            if not isinstance(item, _Failure):
                return item
            self._failure = item.error
        raise RuntimeError(f"the input pipeline failed: {self._failure}") from self._failure

    def close(self) -> None:
        self._stop.set()
        if self._thread:
            self._thread.join(timeout=10)


@dataclasses.dataclass(frozen=True)
class _Failure:
    error: BaseException
