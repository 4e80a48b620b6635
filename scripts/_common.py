"""Glue shared by the thin rule scripts: offline jobs; logging and stderr to the rule's log file; the job's GPU."""

import logging
import os
import sys
from pathlib import Path

# This checkout's library first: a job's environment (a conda env built from envs/*.yaml) need not install it.
REPO = str(Path(__file__).resolve().parents[1])
if REPO not in sys.path:
    sys.path.insert(0, REPO)

# Every job but a fetch reads local files only (the fetch rules run on the submit host and download once, into
# resources/): a hidden hub call on a compute node without internet then fails at once, naming what it wanted,
# instead of hanging until a network timeout. Set here, before any Hugging Face library is imported: they read it
# on import. Snakemake runs a rule's script as `.snakemake/scripts/tmpXXXXXXXX.<script>.py`.
NETWORK_SCRIPTS = ("fetch.py",)
if Path(sys.argv[0]).name.split(".", 1)[-1] not in NETWORK_SCRIPTS:
    os.environ["HF_HUB_OFFLINE"] = os.environ["HF_DATASETS_OFFLINE"] = "1"

_LOG = None  # the job's log file, once setup_logging has opened it


def _excepthook(kind, err, tb) -> None:
    """An input the job cannot use (anneuron.io.InputError: a truncated or corrupted file, a bad dataset) ends the log
    with its one line, which names the file; anything else gets the usual traceback."""
    from anneuron.io import InputError

    if not isinstance(err, InputError):
        return sys.__excepthook__(kind, err, tb)
    sys.stderr.flush()
    if _LOG and os.path.getsize(_LOG):  # a progress bar may have left the last line open
        with open(_LOG, "rb") as f:
            f.seek(-1, os.SEEK_END)
            if f.read(1) != b"\n":
                sys.stderr.write("\n")
    print(str(err), file=sys.stderr, flush=True)


def setup_logging(snakemake) -> None:
    """Route this job's logging, warnings and tracebacks to its `log:` file (progress bars too); an input error
    (anneuron.io.InputError) ends the log with its one line instead of a traceback."""
    global _LOG
    sys.excepthook = _excepthook
    if snakemake.log:
        _LOG = snakemake.log[0]
        fh = open(_LOG, "w", buffering=1)
        sys.stderr = fh
        logging.basicConfig(stream=fh, level=logging.INFO, format="%(asctime)s %(name)s %(message)s", force=True)
    if "SLURM_JOB_ID" in os.environ:  # where the job ran and which GPU it was given, for whoever reads its log
        logging.getLogger("anneuron.job").info(
            "SLURM job %s on %s; CUDA_VISIBLE_DEVICES=%s", os.environ["SLURM_JOB_ID"],
            os.environ.get("SLURMD_NODENAME", "?"), os.environ.get("CUDA_VISIBLE_DEVICES", "unset"))


def gpu_requested(snakemake) -> int:
    """The GPUs the rule asked the scheduler for (its `gpu` resource; 0 for CPU jobs)."""
    return int(getattr(snakemake.resources, "gpu", 0) or 0)
