"""Glue shared by the thin rule scripts: send logging and stderr to the rule's log file; the job's GPU."""

import logging
import sys
from pathlib import Path

# This checkout's library first: a job's environment (a conda env built from envs/*.yaml) need not install it.
REPO = str(Path(__file__).resolve().parents[1])
if REPO not in sys.path:
    sys.path.insert(0, REPO)


def setup_logging(snakemake) -> None:
    """Route this job's logging, warnings and tracebacks to its `log:` file (progress bars too)."""
    if snakemake.log:
        fh = open(snakemake.log[0], "w", buffering=1)
        sys.stderr = fh
        logging.basicConfig(stream=fh, level=logging.INFO, format="%(asctime)s %(name)s %(message)s", force=True)


def gpu_requested(snakemake) -> int:
    """The GPUs the rule asked the scheduler for (its `gpu` resource; 0 for CPU jobs)."""
    return int(getattr(snakemake.resources, "gpu", 0) or 0)
