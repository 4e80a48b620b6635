"""Session fixtures of tiny random models of every family beyond GPT-2 and Llama (anneuron.demos.families:
GPT-NeoX/Pythia, Phi, Gemma 2, Gemma 3, Qwen3, OLMo-2), for the tests/*/test_family_*.py files (`from family_models
import *`): built once per test process (a module-level cache, since a fixture imported into several modules is a
separate fixture in each), offline, with the GPT-2 tokenizer. Every test using `family` runs on each variant
(GPT-NeoX twice: with and without its parallel residual)."""

from __future__ import annotations

from pathlib import Path

import pytest
from llama_models import _once  # one cache of built models per test process

from anneuron.demos.families import FAMILY_MODELS

__all__ = ["FAMILY_MODELS", "family", "family_dir", "family_bridge", "family_hf"]



@pytest.fixture(scope="session", params=list(FAMILY_MODELS))
def family(request) -> str:
    return request.param


@pytest.fixture(scope="session")
def family_dir(family, tmp_path_factory) -> Path:
    from anneuron.demos.families import random_family_model

    return _once(f"dir/{family}", lambda: random_family_model(tmp_path_factory.mktemp("family") / family, family))


@pytest.fixture(scope="session")
def family_bridge(family, family_dir):
    """Processed as the pipeline loads it (anneuron.models.load_model: fold_norms)."""
    from anneuron.models import load_model

    return _once(f"bridge/{family}", lambda: load_model(str(family_dir), device="cpu", dtype="float32"))


@pytest.fixture(scope="session")
def family_hf(family, family_dir):
    """The raw Hugging Face model (eager attention, float32): the references' source of weights."""
    from transformers import AutoModelForCausalLM

    return _once(f"hf/{family}", lambda: AutoModelForCausalLM.from_pretrained(
        family_dir, attn_implementation="eager").eval())
