"""Fail fast instead of degrading silently, and say where a result came from (anneuron/provenance.py)."""

from __future__ import annotations

import pytest
import torch

from anneuron import provenance as PV


def test_a_slurm_gpu_job_without_cuda_fails_at_start_on_one_line(monkeypatch):
    if torch.cuda.is_available():
        pytest.skip("this machine has a GPU")
    monkeypatch.setenv("SLURM_JOB_ID", "42")
    monkeypatch.delenv(PV.FAKE_GPUS, raising=False)
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "0")
    for device in ("auto", "cuda"):
        with pytest.raises(PV.DeviceError) as e:
            PV.require_gpu(device, 1)
        msg = str(e.value)
        assert "\n" not in msg and "refusing to fall back to the CPU" in msg and "CUDA_VISIBLE_DEVICES=0" in msg
    PV.require_gpu("cpu", 1)  # device cpu: the CPU was asked for
    PV.require_gpu("auto", 0)  # no GPU requested
    monkeypatch.setenv(PV.FAKE_GPUS, "1")
    PV.require_gpu("auto", 1)  # the SLURM test's fake GPUs
    monkeypatch.delenv("SLURM_JOB_ID")
    monkeypatch.delenv(PV.FAKE_GPUS)
    PV.require_gpu("auto", 1)  # one machine, no scheduler: auto means the CPU here


def test_provenance_names_versions_revisions_and_commit(tmp_path):
    folder = tmp_path / "m"
    folder.mkdir()
    (folder / "fetched.json").write_text('{"repo_id": "openai-community/gpt2-large", "revision": null, '
                                         '"commit": "abc", "files": []}')
    p = PV.provenance(str(folder), "some/dataset", device="cpu", dtype="float32")
    assert p["model"] == dict(name=str(folder), repo_id="openai-community/gpt2-large", revision=None, commit="abc")
    assert p["dataset"] == dict(name="some/dataset")
    assert p["versions"]["torch"].startswith("2.13") and p["device"] == "cpu" and p["dtype"] == "float32"
    assert p["pipeline_commit"] == "unknown" or len(p["pipeline_commit"].split("-")[0]) == 40
    assert PV.provenance(str(folder)) == PV.provenance(str(folder))  # no times or hosts: reruns write the same bytes
