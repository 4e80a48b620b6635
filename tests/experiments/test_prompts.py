"""Prompt pairs: tokenising with BOS and the prompt check (anneuron/experiments/prompts.py)."""

from __future__ import annotations

from types import SimpleNamespace

import pytest

from anneuron.experiments.prompts import make_pair, prompt_check


@pytest.mark.parametrize("ld_clean, ld_corrupted, expected", [
    (2.0, -1.0, ["ok"]),
    (-0.1, -1.0, ["clean prompt prefers ' a'"]),
    (2.0, 0.5, ["corrupted prompt prefers ' an'"]),
    (1.2, 1.0, ["corrupted prompt prefers", "only 0.2", "unstable"]),
])
def test_prompt_check_names_each_problem(ld_clean, ld_corrupted, expected):
    check = prompt_check(SimpleNamespace(ld_clean=ld_clean, ld_corrupted=ld_corrupted), " an", " a")
    assert all(e in check for e in expected), check


def test_make_pair_prepends_bos_and_refuses_multi_token_answers(demo_bridge):
    pair = make_pair(demo_bridge, "I picked", "I walked", " an", " a")
    assert pair.clean[0, 0].item() == demo_bridge.tokenizer.bos_token_id
    assert (pair.answer, pair.wrong, pair.start) == (281, 257, 2)
    with pytest.raises(ValueError, match="not a single token"):
        make_pair(demo_bridge, "I picked", "I walked", " an apple", " a")
