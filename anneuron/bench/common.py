"""Shared measuring helpers for the benchmarks."""

from __future__ import annotations

import json
import resource
import time
from typing import Callable


def peak_rss_gb() -> float:
    """Peak resident set size of this process so far (Linux reports KiB)."""
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20


def best_time(fn: Callable[[], object], repeat: int = 3) -> float:
    """Best wall time of `repeat` calls: the least disturbed by other load on a shared machine."""
    best = float("inf")
    for _ in range(repeat):
        t = time.perf_counter()
        fn()
        best = min(best, time.perf_counter() - t)
    return best


def emit(result: dict) -> None:
    """The benchmark contract: one JSON object on the last line."""
    print(json.dumps(result, sort_keys=True))
