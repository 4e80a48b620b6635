"""The dataset pass on tiny random models of every family beyond GPT-2 and Llama (tests/family_models.py): the Hugging
Face engine (SDPA, or eager for Gemma 2; pre-hooks on each MLP's output projection and on the final norm) and the
bridge engine, every recorded column against the processed bridge's run_with_cache (the same check as
tests/dataset/test_llama_record.py)."""

from __future__ import annotations

import pytest
from family_models import *  # noqa: F401,F403 (session fixtures)
from test_llama_record import assert_columns_match_a_plain_forward, shards  # noqa: F401 (a fixture)

from anneuron import architecture as A
from anneuron.dataset.engines import BridgeEngine, HFEngine, load_engine


@pytest.fixture(scope="module")
def hf_engine(family_dir):
    engine = load_engine(str(family_dir), device="cpu", dtype="float32", engine="auto")
    assert isinstance(engine, HFEngine)
    want = "sdpa" if engine.family.sdpa else "eager"
    assert engine.model.config._attn_implementation == want
    return engine


def test_hf_engine_runs_the_raw_weights(hf_engine, family_hf):
    """The Hugging Face engine loads the raw model (nothing folded): its norms are the raw ones."""
    fam = hf_engine.family
    raw, ours = A.module(family_hf, fam.final_norm), hf_engine.final_norm
    assert (raw.weight == ours.weight).all() and not (A.gain(ours, fam) == 1).all()


@pytest.mark.parametrize("engine,chunking", [("hf", "concat"), ("hf", "truncate"), ("bridge", "truncate")])
def test_columns_match_a_plain_forward(family, family_bridge, hf_engine, shards, tmp_path, engine,  # noqa: F811
                                       chunking):
    eng = hf_engine if engine == "hf" else BridgeEngine(family_bridge)
    assert_columns_match_a_plain_forward(family_bridge, eng, shards[chunking], tmp_path,
                                         f"{family} {engine}/{chunking}")
