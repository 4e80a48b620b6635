"""The rule scripts' shared glue, each script's first import (`from anneuron.jobs import setup_logging`): every job
but a fetch is offline; a job's logging, warnings and tracebacks go to its `log:` file; a failure the user can act
on (anneuron.io.OneLineError: an unusable input file, a model missing offline, ...) ends that log with ONE line
naming the rule, the culprit and what to do. It never imports Snakemake: a script passes its `snakemake` object in.
Jobs import this checkout's library because the Snakefile puts the checkout first on PYTHONPATH
(docs/architecture.md).
"""

from __future__ import annotations

import logging
import os
import sys
from pathlib import Path

# Every job but a fetch reads local files only (the fetch rules run on the submit host and download once, into
# resources/): a hidden hub call on a compute node without internet then fails at once, naming what it wanted,
# instead of hanging until a network timeout. Set on import, before any Hugging Face library is imported (they read
# it on import): scripts import this module first (pyproject.toml's isort section `jobs`). Only in a rule's script,
# which Snakemake runs as `.snakemake/scripts/tmpXXXXXXXX.<script>.py`: importing this module elsewhere changes
# nothing.
NETWORK_SCRIPTS = ("fetch.py",)
_SCRIPT = Path(sys.argv[0] if sys.argv and sys.argv[0] else ".")
if _SCRIPT.parent.parts[-2:] == (".snakemake", "scripts") and _SCRIPT.name.split(".", 1)[-1] not in NETWORK_SCRIPTS:
    os.environ["HF_HUB_OFFLINE"] = os.environ["HF_DATASETS_OFFLINE"] = "1"

_JOB: dict[str, str | None] = {"log": None, "rule": None}  # set by setup_logging


def export_library(checkout: str) -> None:
    """Put `checkout` (the workflow's own) first on PYTHONPATH for every job this process starts, so that jobs import
    its library whatever else is installed. The Snakefile calls it while it parses: local jobs inherit the variable,
    as SLURM jobs do (their `snakemake` parses the Snakefile again), and conda jobs keep it with
    `conda-not-block-search-path-envvars` (the slurm profile sets it). Snakemake itself only appends its own path to a
    script's, after any installed copy."""
    inherited = [p for p in os.environ.get("PYTHONPATH", "").split(os.pathsep) if p]
    os.environ["PYTHONPATH"] = os.pathsep.join(dict.fromkeys([checkout, *inherited]))


def failure_line(err: Exception, rule: str | None) -> str:
    """The one line a job's log ends with when an input cannot be used: `anneuron: <rule>: <file>: <what is wrong>:
    <what to do>`."""
    detail = getattr(err, "detail", str(err))
    return f"anneuron: {rule}: {detail}" if rule else f"anneuron: {detail}"


def _excepthook(kind, err, tb) -> None:
    """A failure said in one line (anneuron.io.OneLineError: an input the job cannot use, a model missing offline, no
    GPU where one was asked for, a package that cannot be fetched) ends the log with that line, also shown on the
    terminal; anything else gets the usual traceback."""
    from anneuron.io import OneLineError

    if not isinstance(err, OneLineError):
        return sys.__excepthook__(kind, err, tb)
    sys.stderr.flush()
    log = _JOB["log"]
    if log and os.path.getsize(log):  # a progress bar may have left the last line open
        with open(log, "rb") as f:
            f.seek(-1, os.SEEK_END)
            if f.read(1) != b"\n":
                sys.stderr.write("\n")
    line = failure_line(err, _JOB["rule"])
    print(line, file=sys.stderr, flush=True)
    if sys.stderr is not sys.__stderr__:
        print(line, file=sys.__stderr__, flush=True)


def setup_logging(snakemake) -> None:
    """Route this job's logging, warnings and tracebacks to its `log:` file (progress bars too); an input error
    (anneuron.io.OneLineError) ends the log with its one line, naming the rule, instead of a traceback."""
    sys.excepthook = _excepthook
    _JOB["rule"] = getattr(snakemake, "rule", None)
    if snakemake.log:
        _JOB["log"] = snakemake.log[0]
        fh = open(_JOB["log"], "w", buffering=1)
        sys.stderr = fh
        logging.basicConfig(stream=fh, level=logging.INFO, format="%(asctime)s %(name)s %(message)s", force=True)
    if "SLURM_JOB_ID" in os.environ:  # where the job ran and which GPU it was given, for whoever reads its log
        logging.getLogger("anneuron.job").info(
            "SLURM job %s on %s; CUDA_VISIBLE_DEVICES=%s", os.environ["SLURM_JOB_ID"],
            os.environ.get("SLURMD_NODENAME", "?"), os.environ.get("CUDA_VISIBLE_DEVICES", "unset"))


def gpu_requested(snakemake) -> int:
    """The GPUs the rule asked the scheduler for (its `gpu` resource; 0 for CPU jobs)."""
    return int(getattr(snakemake.resources, "gpu", 0) or 0)
