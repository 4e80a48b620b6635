"""Where a result came from, and no silent degradation: every stage's config file carries the device, dtype,
library versions, the model's and dataset's revisions and the pipeline's git commit (anneuron.report.manifest
gathers them for the report); a job that was given a GPU refuses to run on the CPU instead."""

from __future__ import annotations

import functools
import subprocess
from importlib import metadata
from pathlib import Path

from anneuron.fetch import fetched
from anneuron.io import OneLineError

REPO = Path(__file__).resolve().parents[1]
PACKAGES = ("torch", "transformer-lens", "transformers", "huggingface-hub", "datasets", "snakemake")


class DeviceError(OneLineError, RuntimeError):
    """A GPU job that cannot see its GPU; one line."""


FAKE_GPUS = "ANNEURON_FAKE_GPUS"  # set by `make test-slurm`, whose cluster's GPUs are character devices


def require_gpu(device: str, gpu_requested: int | str | None) -> None:
    """Fail at start when a scheduler gave the job a GPU (its rule's `gpu` resource, inside a SLURM job) and its
    device is auto/cuda, but torch sees no CUDA device: a silent CPU fallback would run for hours and be retried.
    On one machine `device: auto` without a GPU is the CPU, as asked."""
    import os

    if not gpu_requested or int(gpu_requested) < 1 or device == "cpu" or "SLURM_JOB_ID" not in os.environ:
        return
    import torch

    if os.environ.get(FAKE_GPUS):
        return
    if not torch.cuda.is_available():
        raise DeviceError(
            f"device: {device}: this job was given a GPU but torch {torch.__version__} (CUDA "
            f"{torch.version.cuda or 'none: a CPU build'}) sees no CUDA device (CUDA_VISIBLE_DEVICES="
            f"{os.environ.get('CUDA_VISIBLE_DEVICES', 'unset')}); refusing to fall back to the CPU")


@functools.lru_cache(maxsize=1)
def git_commit() -> str:
    """The pipeline's commit (with `-dirty` when the tree has changes), or `unknown` outside a git checkout."""
    try:
        head = subprocess.run(["git", "-C", str(REPO), "rev-parse", "HEAD"], capture_output=True, text=True,
                              timeout=10, check=True).stdout.strip()
        dirty = subprocess.run(["git", "-C", str(REPO), "status", "--porcelain", "--untracked-files=no"],
                               capture_output=True, text=True, timeout=10).stdout.strip()
        return head + ("-dirty" if dirty else "")
    except (OSError, subprocess.SubprocessError):
        return "unknown"


def versions() -> dict[str, str]:
    out = {}
    for p in PACKAGES:
        try:
            out[p] = metadata.version(p)
        except metadata.PackageNotFoundError:
            out[p] = "not installed"
    return out


def provenance(model: str | None = None, dataset: str | None = None, device: str | None = None,
               dtype: str | None = None) -> dict:
    """What a job ran on: device and dtype as resolved, versions (and CUDA), the model's and dataset's origin and
    revision (a fetched folder's fetched.json), and the pipeline's commit. No host names or times: a rerun on the
    same software writes the same bytes."""
    out: dict = dict(pipeline_commit=git_commit(), versions=versions())
    if device is not None:
        out["device"] = device
        if device.startswith("cuda"):
            import torch

            out["cuda"] = dict(version=torch.version.cuda, gpu=torch.cuda.get_device_name(0))
    if dtype is not None:
        out["dtype"] = dtype
    for key, path in (("model", model), ("dataset", dataset)):
        if path is not None:
            rec = fetched(path) if Path(path).is_dir() else None
            out[key] = dict(name=path, **({k: rec[k] for k in ("repo_id", "revision", "commit")} if rec else {}))
    return out
