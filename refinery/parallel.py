"""Work spread over threads, results in order: the shape of every pass over a folder; and what
the machine gives it (cores, memory used)."""

from __future__ import annotations

import os
from collections import deque
from collections.abc import Callable, Generator, Iterable
from concurrent.futures import Future, ThreadPoolExecutor
from itertools import islice
from typing import TypeVar

T = TypeVar("T")
# A progress reporter: called with (label, total) once, returns a function advanced by n.
Progress = Callable[[str, int], Callable[[int], None]]
R = TypeVar("R")


def cpu_count() -> int:
    """Cores this process may run on (a container's limit, not the host's core count)."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # macOS, Windows
        return os.cpu_count() or 1


def peak_memory_mb() -> float:
    """The most memory this process has held in RAM so far (peak RSS), in MB.

    On Linux from /proc (VmHWM: since this program started, not counting what a parent held
    when it forked it, which getrusage's ru_maxrss does count); elsewhere from getrusage.
    """
    try:
        with open("/proc/self/status") as f:
            for line in f:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1]) / 1024
    except OSError:
        pass
    import resource
    import sys

    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return peak / 2**20 if sys.platform == "darwin" else peak / 1024  # bytes on macOS, KB elsewhere


def ordered_map(fn: Callable[[T], R], items: Iterable[T], workers: int, ahead: int) -> Generator[R, None, None]:
    """`fn` over `items` on `workers` threads, yielding results in the order of `items`.

    At most `ahead` items are in flight, which bounds memory on any size of input. If the
    consumer stops (an error, Ctrl-C), work not yet started is cancelled.
    """
    pool = ThreadPoolExecutor(max_workers=max(1, workers))
    try:
        todo = iter(items)
        pending: deque[Future[R]] = deque(pool.submit(fn, x) for x in islice(todo, max(1, ahead)))
        while pending:
            result = pending.popleft().result()
            pending.extend(pool.submit(fn, x) for x in islice(todo, 1))
            yield result
    finally:
        pool.shutdown(wait=True, cancel_futures=True)
