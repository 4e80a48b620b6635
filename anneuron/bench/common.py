"""Shared measuring helpers for the benchmarks."""

from __future__ import annotations

import json
import resource


def peak_rss_gb() -> float:
    """Peak resident set size of this process so far (Linux reports KiB)."""
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20


def emit(result: dict) -> None:
    """The benchmark contract: one JSON object on the last line."""
    print(json.dumps(result, sort_keys=True))
