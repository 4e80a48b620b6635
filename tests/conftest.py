"""Session fixtures: tiny models built once, offline (HF_HUB_OFFLINE=1 is set for the whole suite)."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest
import torch

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
torch.set_num_threads(1)  # measured: 1 thread is much faster than 2 for these tiny shapes on a shared 2-core box

REPO = Path(__file__).resolve().parents[1]
# `make test` runs the suite on two workers, file by file (pytest -n 2 --dist loadfile --no-loadscope-reorder). The
# two files that run the whole pipeline go first, one to each worker, so that neither waits behind the other and the
# unit tests (one thread each) fill the cores beside them.
PIPELINE_FILES = ("test_resume.py", "test_workflow.py")


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    items.sort(key=lambda item: item.path.name not in PIPELINE_FILES)  # stable: every other file keeps its order


def build_random_gpt2(folder: Path, n_layer: int = 3, d_model: int = 64, d_mlp: int = 256, n_head: int = 4,
                      n_ctx: int = 64, seed: int = 0, tied: bool = True) -> Path:
    """A tiny random GPT-2 with the real tokenizer, RANDOMISED LayerNorms (so folding matters), random biases and
    weights ×5 (so activations, LN and attention are far from trivial)."""
    from anneuron.demos.gpt2 import random_gpt2

    return random_gpt2(folder, n_layer=n_layer, d_model=d_model, d_mlp=d_mlp, n_head=n_head, n_ctx=n_ctx, seed=seed,
                       ln_noise=0.2, bias_noise=0.05, weight_scale=5.0, tied=tied)


@pytest.fixture(scope="session")
def tiny_dir(tmp_path_factory) -> Path:
    """3 layers, d_model 64, d_mlp 256, full GPT-2 vocabulary, random LayerNorms."""
    return build_random_gpt2(tmp_path_factory.mktemp("models") / "tiny-random")


@pytest.fixture(scope="session")
def tiny_bridge(tiny_dir):
    from anneuron.models import load_model

    return load_model(str(tiny_dir), device="cpu", dtype="float32")


@pytest.fixture(scope="session")
def demo_dir(tmp_path_factory) -> Path:
    """The planted demo model (docs/demos.md), with ground_truth.json beside it."""
    from anneuron.demos.planted import write_planted_model

    folder = tmp_path_factory.mktemp("models") / "demo-planted"
    write_planted_model(folder, seed=0)
    return folder


@pytest.fixture(scope="session")
def demo_bridge(demo_dir):
    from anneuron.models import load_model

    return load_model(str(demo_dir), device="cpu", dtype="float32")


@pytest.fixture(scope="session")
def ground_truth(demo_dir) -> dict:
    from anneuron.demos.planted import load_ground_truth

    return load_ground_truth(demo_dir)


def no_entropy(n: int) -> dict:
    """Entropy columns for tables built from a bare congruence matrix (no weights): NaN, as for a zero w_out."""
    return {"w_out_norm": np.full(n, np.nan), "null_share": np.full(n, np.nan)}


def write_token_shards(texts: list[str], folder: Path, n_shards: int, seq_len: int, chunking: str = "concat"):
    """Token shards of a list of texts (GPT-2 tokenizer), as the tokenize stage writes them."""
    from anneuron.data import chunk_rows, tokenize_documents, write_shards
    from anneuron.tokenizer import gpt2_tokenizer

    tok = gpt2_tokenizer()
    rows = chunk_rows(tokenize_documents(texts, tok), seq_len, chunking, tok.bos_token_id, tok.eos_token_id,
                      max_tokens=None)
    paths = [folder / f"shard-{i}.parquet" for i in range(n_shards)]
    write_shards(rows, paths)
    return paths


@pytest.fixture(scope="session")
def demo_recorded(demo_dir, ground_truth, tmp_path_factory) -> dict:
    """The dataset pass (anneuron.dataset.record, default engine) over a small planted-demo corpus in 2 shards, watching
    the planted token neurons and the prediction neuron: {shards, tokens, topk, watched}."""
    from anneuron.dataset.engines import load_engine
    from anneuron.dataset.record import record_shard
    from anneuron.demos.planted import demo_documents

    folder = tmp_path_factory.mktemp("demo_record")
    shards = write_token_shards(demo_documents(30, seed=7), folder, 2, seq_len=128)
    watched = [(t["layer"], t["neuron"]) for t in ground_truth["token_neurons"]]
    watched += [(p["layer"], p["neuron"]) for p in ground_truth["prediction_neurons"]]
    out = dict(shards=shards, tokens=[], topk=[], watched=watched)
    engine = load_engine(str(demo_dir), device="cpu", dtype="float32", engine="auto")
    for i, s in enumerate(shards):
        out["tokens"].append(folder / f"tokens-{i}.parquet")
        out["topk"].append(folder / f"topk-{i}.parquet")
        record_shard(engine, s, out["tokens"][-1], out["topk"][-1], watched, batch_size=8, top_k=5,
                     pred_post=False, pred_topk=0, progress=False)
    return out


@pytest.fixture(scope="session")
def demo_congruence(demo_bridge) -> dict:
    """The weights pass (anneuron.weights.congruence, basis we, fp32, default chunking) over the planted demo, as the
    rules write it: {result, tokens, neurons (no classes), weights}."""
    from anneuron.weights.congruence import congruence_pass, neurons_table, token_strings, tokens_table, weights_of
    from anneuron.weights.entropy import entropy_columns

    weights = weights_of(demo_bridge)
    res = congruence_pass(weights, basis="we", top_k=16, chunk_neurons="auto", device="cpu", dtype=torch.float32,
                          progress=False)
    entropy = entropy_columns(weights.w_out, weights.W_U, 12)
    return dict(result=res, weights=weights, neurons=neurons_table(res, entropy),
                tokens=tokens_table(res, token_strings(demo_bridge.tokenizer, weights.d_vocab)))


@pytest.fixture(scope="session")
def demo_site(demo_dir, demo_congruence, demo_recorded, demo_bridge, tmp_path_factory) -> Path:
    """The planted demo's neuron pages (tests/pages_demo.py); returns their index.html."""
    from pages_demo import build_demo_site

    return build_demo_site(tmp_path_factory.mktemp("pages-demo"), demo_dir, demo_congruence, demo_recorded,
                           demo_bridge)
