"""Session fixtures of tiny random models of every family beyond GPT-2 and Llama (anneuron.demos.families:
GPT-NeoX/Pythia, Phi, Gemma 2, Gemma 3, Qwen3, OLMo-2), for the tests/*/test_family_*.py files (`from family_models
import *`): built once per test process (the module-level cache of tests/llama_models.py, since a fixture imported
into several modules is a separate fixture in each), offline, with the GPT-2 tokenizer. Every test using `family`
runs on each variant (GPT-NeoX twice: with and without its parallel residual); every test using `decoder` runs on
each of them and on each random Llama of tests/llama_models.py (LLAMAS): every decoder family beyond GPT-2."""

from __future__ import annotations

from pathlib import Path

import llama_models
import pytest
from llama_models import *  # noqa: F401,F403 (the Llamas' session fixtures, for the tests using `decoder`)
from llama_models import LLAMAS, _once, llama_folder, loaded, raw_hf

from anneuron.demos.families import FAMILY_MODELS

__all__ = [*llama_models.__all__, "FAMILY_MODELS", "DECODERS", "family", "family_dir", "family_bridge", "family_hf",
           "decoder", "decoder_dir", "decoder_bridge", "decoder_hf"]

DECODERS = [*LLAMAS, *FAMILY_MODELS]  # the random Llamas, then the other families' variants


def family_folder(variant: str, tmp_path_factory) -> Path:
    """The random model of FAMILY_MODELS[variant], built once per test process."""
    from anneuron.demos.families import random_family_model

    return _once(f"dir/{variant}", lambda: random_family_model(tmp_path_factory.mktemp("family") / variant, variant))


@pytest.fixture(scope="session", params=list(FAMILY_MODELS))
def family(request) -> str:
    return request.param


@pytest.fixture(scope="session")
def family_dir(family, tmp_path_factory) -> Path:
    return family_folder(family, tmp_path_factory)


@pytest.fixture(scope="session")
def family_bridge(family, family_dir):
    """Processed as the pipeline loads it (anneuron.models.load_model: fold_norms)."""
    return loaded(family, family_dir)


@pytest.fixture(scope="session")
def family_hf(family, family_dir):
    """The raw Hugging Face model (eager attention, float32): the references' source of weights."""
    return raw_hf(family, family_dir)


@pytest.fixture(scope="session", params=DECODERS)
def decoder(request) -> str:
    return request.param


@pytest.fixture(scope="session")
def decoder_dir(decoder, tmp_path_factory) -> Path:
    return llama_folder(decoder, tmp_path_factory) if decoder in LLAMAS else family_folder(decoder, tmp_path_factory)


@pytest.fixture(scope="session")
def decoder_bridge(decoder, decoder_dir):
    """Processed as the pipeline loads it (anneuron.models.load_model: fold_norms)."""
    return loaded(decoder, decoder_dir)


@pytest.fixture(scope="session")
def decoder_hf(decoder, decoder_dir):
    """The raw Hugging Face model (eager attention, float32): the references' source of weights."""
    return raw_hf(decoder, decoder_dir)
