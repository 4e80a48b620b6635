"""Glue shared by the thin rule scripts: send logging and stderr to the rule's log file."""

import logging
import sys


def setup_logging(snakemake) -> None:
    """Route this job's logging, warnings and tracebacks to its `log:` file (progress bars too)."""
    if snakemake.log:
        fh = open(snakemake.log[0], "w", buffering=1)
        sys.stderr = fh
        logging.basicConfig(stream=fh, level=logging.INFO, format="%(asctime)s %(name)s %(message)s", force=True)
