"""Tests for cpt_jax.data.parallel (the build's order-preserving process map) and for what the
builders mine through it: the same pairs and drop counts with one process or several."""

from __future__ import annotations

import collections

import pytest

from cpt_jax.data import parallel, stdlib_corpus, stdlib_text_pairs


def _square(x: int) -> int:
    return x * x


def _fail_at_seven(x: int) -> int:
    if x == 7:
        raise ValueError("item 7 is bad")
    return x


@pytest.mark.parametrize("workers", [1, 2])
def test_results_come_in_input_order(workers):
    assert list(parallel.ordered_map(_square, range(50), workers, min_items=4, window=3)) == [i * i for i in range(50)]


def test_small_inputs_run_inline(monkeypatch):
    def no_pool(*args, **kwargs):
        raise AssertionError("a pool was started for fewer than min_items items")

    monkeypatch.setattr(parallel.concurrent.futures, "ProcessPoolExecutor", no_pool)
    assert list(parallel.ordered_map(_square, range(5), workers=2, min_items=6)) == [0, 1, 4, 9, 16]
    assert list(parallel.ordered_map(lambda x: -x, iter(range(3)), workers=2)) == [0, -1, -2]  # inline: any callable


def test_a_worker_error_is_raised_at_its_item():
    out = parallel.ordered_map(_fail_at_seven, range(20), workers=2, min_items=2, window=2)
    assert [next(out) for _ in range(7)] == list(range(7))
    with pytest.raises(ValueError, match="item 7 is bad"):
        next(out)


def test_closing_early_shuts_the_pool_down():
    out = parallel.ordered_map(_square, range(10_000), workers=2, min_items=2, window=4)
    assert next(out) == 0
    out.close()  # cancels what has not started; the pool exits (the test would hang otherwise)


def test_default_workers_from_the_environment(monkeypatch):
    monkeypatch.setenv(parallel.WORKERS_ENV, "3")
    assert parallel.default_workers() == 3
    monkeypatch.delenv(parallel.WORKERS_ENV)
    assert 1 <= parallel.default_workers() <= parallel.MAX_DEFAULT_WORKERS
    for bad in ("0", "two", "-1"):
        monkeypatch.setenv(parallel.WORKERS_ENV, bad)
        with pytest.raises(ValueError, match=f"{parallel.WORKERS_ENV}=.*positive number"):
            parallel.default_workers()


def _sources(n: int) -> list[tuple[str, bytes]]:
    """n modules: documented functions and classes, some files that do not parse, one oversized."""
    sources = []
    for i in range(n):
        if i % 9 == 4:
            data = b"def broken(:\n    pass\n"
        elif i == n - 1:
            data = b"#" * (stdlib_corpus.MAX_SOURCE_BYTES + 1)
        else:
            doc, more = (" ".join(f"{w}{i}_{j}" for j in range(60)) for w in ("word", "term"))
            data = (f'"""Module {i}.\n\n{doc}\n\n{more}\n"""\n'
                    f'class Thing{i}:\n    """A thing that holds {i} and returns it on request, documented."""\n\n'
                    f'def helper_{i}(x):\n    """Return x plus {i}, as documented here for the test."""\n'
                    f'    return x + {i}\n').encode()
        sources.append((f"pkg{i}.mod", data))
    return sources


@pytest.mark.parametrize("mine", [stdlib_corpus.code_pairs_from_sources, stdlib_text_pairs.text_pairs_from_sources])
def test_builders_mine_the_same_with_a_pool(mine, monkeypatch):
    sources = _sources(80)  # over ordered_map's min_items: the pool path
    runs = []
    for workers in ("1", "2"):
        monkeypatch.setenv(parallel.WORKERS_ENV, workers)
        skipped: collections.Counter[str] = collections.Counter()
        runs.append((list(mine(iter(sources), skipped=skipped)), skipped))
    (inline, inline_skipped), (pooled, pooled_skipped) = runs
    assert inline and pooled == inline
    assert pooled_skipped == inline_skipped and inline_skipped["unparsable_source"] > 0


def test_a_broken_pool_falls_back_to_this_process(monkeypatch, capsys):
    class BrokenPool:
        """Workers that died before running anything (as when they cannot import the main script)."""

        def __init__(self, *args, **kwargs):
            pass

        def __enter__(self):
            return self

        def __exit__(self, *exc):
            return False

        def submit(self, fn, item):
            future = parallel.concurrent.futures.Future()
            future.set_exception(parallel.concurrent.futures.process.BrokenProcessPool("a worker died"))
            return future

    monkeypatch.setattr(parallel.concurrent.futures, "ProcessPoolExecutor", BrokenPool)
    assert list(parallel.ordered_map(_square, range(30), workers=2, min_items=2, window=4)) == [i * i for i in range(30)]
    err = capsys.readouterr().err
    assert "a worker died" in err and parallel.WORKERS_ENV in err and "__main__" in err


def test_a_pool_that_breaks_while_submitting_loses_no_item(monkeypatch, capsys):
    class BreaksOnThirdSubmit:
        """Runs the first two items, then refuses new work as a broken pool does."""

        def __init__(self, *args, **kwargs):
            self.submitted = 0

        def __enter__(self):
            return self

        def __exit__(self, *exc):
            return False

        def submit(self, fn, item):
            self.submitted += 1
            if self.submitted > 2:
                raise parallel.concurrent.futures.process.BrokenProcessPool("the pool broke")
            future = parallel.concurrent.futures.Future()
            future.set_result(fn(item))
            return future

    monkeypatch.setattr(parallel.concurrent.futures, "ProcessPoolExecutor", BreaksOnThirdSubmit)
    assert list(parallel.ordered_map(_square, range(12), workers=2, min_items=2, window=8)) == [i * i for i in range(12)]
    assert "the pool broke" in capsys.readouterr().err
