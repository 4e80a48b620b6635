"""Session fixtures of tiny Llama-architecture models, for the tests/*/test_llama_*.py files (`from llama_models import
*`): built once per test process (a module-level cache, since a fixture imported into several modules is a
separate fixture in each), offline, with the GPT-2 tokenizer.

Four random variants, every test running on each: `tied-swiglu` (tied unembedding, silu-gated MLP, like
SmolLM2), `untied-geglu` (untied, gelu-tanh-gated MLP), and the Llama-layout model types the `llama` family also
takes: `qwen2-qkv-bias` (Qwen2: biases on the query/key/value projections, untied) and `mistral` (tied). All:
3 layers, d_model 64, d_mlp 128, 4 query heads over 2 key/value heads (GQA), RoPE, RMSNorm gains randomised,
weights ×5. Seeds chosen so that the IOI-style
prompt pair of the patching tests has an LD gap above 0.6. Plus the planted Llama of anneuron.demos.llama.
"""

from __future__ import annotations

from pathlib import Path
from typing import Callable

import pytest

__all__ = ["LLAMAS", "llama_kind", "llama_dir", "llama_bridge", "llama_hf", "planted_llama_dir",
           "planted_llama_bridge", "planted_truth"]

LLAMAS = {
    "tied-swiglu": dict(seed=7, tied=True, act="silu"),
    "untied-geglu": dict(seed=0, tied=False, act="gelu_pytorch_tanh"),
    "qwen2-qkv-bias": dict(seed=8, tied=False, act="silu", arch="qwen2"),
    "mistral": dict(seed=8, tied=True, act="silu", arch="mistral"),
}
_CACHE: dict[str, object] = {}


def _once(key: str, build: Callable[[], object]):
    if key not in _CACHE:
        _CACHE[key] = build()
    return _CACHE[key]


@pytest.fixture(scope="session", params=list(LLAMAS))
def llama_kind(request) -> str:
    return request.param


def llama_folder(kind: str, tmp_path_factory) -> Path:
    """The random Llama `kind` (LLAMAS), built once per test process."""
    from anneuron.demos.llama import random_llama

    return _once(f"dir/{kind}", lambda: random_llama(
        tmp_path_factory.mktemp("llama") / kind, n_layer=3, d_model=64, d_mlp=128, n_head=4, n_kv_head=2,
        **LLAMAS[kind]))


def loaded(key: str, folder: Path):
    """The model in `folder` processed as the pipeline loads it (anneuron.models.load_model: norms folded), once."""
    from anneuron.models import load_model

    return _once(f"bridge/{key}", lambda: load_model(str(folder), device="cpu", dtype="float32"))


def raw_hf(key: str, folder: Path):
    """The raw Hugging Face model in `folder` (eager attention, float32), once: the references' source of weights."""
    from transformers import AutoModelForCausalLM

    return _once(f"hf/{key}", lambda: AutoModelForCausalLM.from_pretrained(
        folder, attn_implementation="eager").eval())


@pytest.fixture(scope="session")
def llama_dir(llama_kind, tmp_path_factory) -> Path:
    return llama_folder(llama_kind, tmp_path_factory)


@pytest.fixture(scope="session")
def llama_bridge(llama_kind, llama_dir):
    """Processed as the pipeline loads it (anneuron.models.load_model): RMSNorm gains folded, nothing centred."""
    return loaded(llama_kind, llama_dir)


@pytest.fixture(scope="session")
def llama_hf(llama_kind, llama_dir):
    return raw_hf(llama_kind, llama_dir)


@pytest.fixture(scope="session")
def planted_llama_dir(tmp_path_factory) -> Path:
    from anneuron.demos.llama import write_planted_llama

    def build() -> Path:
        folder = tmp_path_factory.mktemp("llama") / "planted"
        write_planted_llama(folder)
        return folder

    return _once("dir/planted", build)


@pytest.fixture(scope="session")
def planted_truth(planted_llama_dir) -> dict:
    import json

    return json.loads((planted_llama_dir / "ground_truth.json").read_text())


@pytest.fixture(scope="session")
def planted_llama_bridge(planted_llama_dir):
    return loaded("planted", planted_llama_dir)
