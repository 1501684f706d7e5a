"""A process pool for the build that survives the death of a worker.

`concurrent.futures.ProcessPoolExecutor` breaks as a whole when one worker process dies (killed by the OS for
memory, a C decoder crashing, a signal from outside): every task in flight fails with `BrokenProcessPool`
and the pool takes no more. `WorkerPool.run` keeps a build going through that: the chunks that were lost are
run again one file at a time in a pool of one worker, so that a death is pinned on the one file that caused
it (which gets the caller's "died" result, with the signal or exit code); then a fresh pool takes the rest.
"""

from __future__ import annotations

import concurrent.futures
import importlib
import multiprocessing
import signal
from collections import deque
from collections.abc import Callable, Iterator
from concurrent.futures.process import BrokenProcessPool
from typing import Any, TypeVar

Item = TypeVar("Item")
Result = TypeVar("Result")


def import_plugins(modules: tuple[str, ...]) -> None:
    """Import each module (a decoder plugin registers itself with pydicom when imported).

    Raises:
        ValueError: a module cannot be imported, named as the option ``--decoder-plugins``.
    """
    for name in modules:
        try:
            importlib.import_module(name)
        except Exception as error:
            raise ValueError(f"--decoder-plugins: cannot import {name!r}: {error}") from None


def _initialise_worker(initializer: Callable[[], None], plugins: tuple[str, ...]) -> None:
    initializer()
    import_plugins(plugins)


def describe_exit(exitcode: int | None) -> str:
    """``killed by signal SIGKILL`` / ``exit code 3`` / ``exit status unknown``."""
    if exitcode is None:
        return "exit status unknown"
    if exitcode < 0:
        try:
            return f"killed by signal {signal.Signals(-exitcode).name}"
        except ValueError:
            return f"killed by signal {-exitcode}"
    return f"exit code {exitcode}"


class WorkerPool:
    """Worker processes (spawned: they start clean, without the parent's threads) that are renewed when one dies.

    Args:
        num_proc: worker processes.
        initializer: run in each worker when it starts.
        plugins: modules each worker imports after `initializer` (see `import_plugins`).
    """

    def __init__(self, num_proc: int, initializer: Callable[[], None], plugins: tuple[str, ...] = ()):
        self.num_proc = num_proc
        self._init_args = (initializer, plugins)
        self._executor: concurrent.futures.ProcessPoolExecutor | None = None  # started by `start`
        self.deaths = 0  # worker processes that died under this pool

    def start(self) -> None:
        """Start the worker processes now, if they are not running (`run` starts them too): call it ahead of
        other work of the caller's, so that the workers' start-up overlaps it. A pool never started costs nothing."""
        if self._executor is None:
            self._executor = self._new_executor(self.num_proc)

    def _new_executor(self, workers: int) -> concurrent.futures.ProcessPoolExecutor:
        executor = concurrent.futures.ProcessPoolExecutor(
            workers, mp_context=multiprocessing.get_context("spawn"), initializer=_initialise_worker, initargs=self._init_args
        )
        # start every worker now (the executor would spawn them at the first real task): their start-up (a second
        # of imports each) then overlaps the caller's own until its work arrives
        for _ in range(workers):
            executor.submit(int)
        return executor

    def shutdown(self) -> None:
        if self._executor is not None:
            self._executor.shutdown(wait=True, cancel_futures=True)
            self._executor = None

    def run(
        self,
        chunks: list[list[Item]],
        function: Callable[[list[Item]], list[Result]],
        died: Callable[[Item, str], Result],
    ) -> Iterator[list[Result]]:
        """Yield ``function(chunk)`` for every chunk, in order, with at most a few chunks in flight (memory stays flat).

        Args:
            chunks: the work, in the order the results are wanted.
            function: a picklable function of one chunk, returning one result per item.
            died: the result of an item whose worker died while holding it, given the item and how it died.
        """
        self.start()
        in_flight: deque = deque()
        window = 4 * self.num_proc
        next_chunk = 0
        while next_chunk < len(chunks) or in_flight:
            try:
                while next_chunk < len(chunks) and len(in_flight) < window:
                    in_flight.append((chunks[next_chunk], self._executor.submit(function, chunks[next_chunk])))
                    next_chunk += 1
                result = in_flight[0][1].result()
            except BrokenProcessPool:  # a worker died: seen by the chunk waited for, or by a submission
                yield from self._recover(list(in_flight), function, died)
                in_flight.clear()
                continue
            in_flight.popleft()
            yield result

    def _recover(self, in_flight: list, function: Callable, died: Callable) -> Iterator[list]:
        """After a death: keep what finished, rerun what was lost one item at a time, then renew the pool.

        Args:
            in_flight: (chunk, future) of every chunk submitted and not yet yielded, in order.
        """
        self.deaths += 1
        assert self._executor is not None
        self._executor.shutdown(wait=True, cancel_futures=True)
        lone = self._new_executor(1)
        try:
            for chunk, future in in_flight:
                if not future.cancelled() and future.exception() is None:
                    yield future.result()
                    continue
                results = []
                for item in chunk:
                    result, lone = self._run_alone(lone, function, item, died)
                    results.append(result)
                yield results
        finally:
            lone.shutdown(wait=True)
            self._executor = self._new_executor(self.num_proc)

    def _run_alone(self, lone, function: Callable, item: Any, died: Callable) -> tuple[Any, Any]:
        """One item in the one-worker pool `lone`; returns its result and the pool to go on with."""
        future = lone.submit(function, [item])
        # the one worker, seen before it can die: its exit code says how (the executor keeps no record of it)
        processes = list(getattr(lone, "_processes", {}).values())
        try:
            return future.result()[0], lone
        except BrokenProcessPool:
            self.deaths += 1
            lone.shutdown(wait=True)
            for process in processes:
                process.join(timeout=5)
            how = describe_exit(processes[0].exitcode if processes else None)
            return died(item, how), self._new_executor(1)
