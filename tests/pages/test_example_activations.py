"""The targeted pass behind the neuron pages (anneuron.pages.example_activations): every example window's activations of
its neuron against a direct `run_with_cache` of the processed demo model, the window's maximum at the example's
position equal to the recorded `value`, the windows of max_examples' `text`, and only the rows that hold examples
run, each only as far as its last window."""

from __future__ import annotations

import numpy as np
import pyarrow.compute as pc
import pyarrow.parquet as pq
import pytest
import torch
from pages_demo import WINDOW, build_max_examples

from anneuron.contracts import EXAMPLE_ACTIVATIONS
from anneuron.dataset.engines import BridgeEngine, load_engine
from anneuron.dataset.max_examples import RowTokens, window_bounds
from anneuron.pages.example_activations import Examples, bounds, example_activations, run_pass
from anneuron.tokenizer import gpt2_tokenizer


@pytest.fixture(scope="module")
def demo_examples(demo_recorded, tmp_path_factory):
    return build_max_examples(demo_recorded, tmp_path_factory.mktemp("ex") / "max_examples.parquet")


@pytest.fixture(scope="module")
def demo_windows(demo_dir, demo_examples, demo_recorded, tmp_path_factory):
    out = tmp_path_factory.mktemp("ea") / "example_activations.parquet"
    engine = load_engine(str(demo_dir), device="cpu", dtype="float32", engine="auto")
    stats = run_pass(engine, demo_examples, demo_recorded["shards"], out, gpt2_tokenizer(), window=WINDOW,
                     batch_size=4, progress=False)
    return pq.read_table(out), stats


def test_windows_match_run_with_cache(demo_windows, demo_bridge, demo_recorded, ground_truth):
    table, _ = demo_windows
    assert table.schema.equals(EXAMPLE_ACTIVATIONS)  # the contract's columns and types, in order
    rows = RowTokens(demo_recorded["shards"])
    planted = {(t["layer"], t["neuron"]) for t in ground_truth["token_neurons"]}
    picks = [r for r in table.to_pylist() if (r["layer"], r["neuron"]) in planted and r["rank"] <= 2]
    picks += table.slice(0, 3).to_pylist() + table.slice(table.num_rows - 3, 3).to_pylist()  # random neurons too
    tok = gpt2_tokenizer()
    for r in picks:
        row = rows.row(r["chunk"])
        lo, hi = window_bounds(r["pos"], len(row), WINDOW)
        assert (r["start"], len(r["tokens"])) == (lo, hi - lo)
        assert r["tokens"] == [tok.decode([int(t)]) for t in row[lo:hi]]
        with torch.no_grad():
            _, cache = demo_bridge.run_with_cache(torch.as_tensor(row, dtype=torch.long)[None],
                                                  names_filter=f"blocks.{r['layer']}.mlp.hook_post")
        want = cache[f"blocks.{r['layer']}.mlp.hook_post"][0, lo:hi, r["neuron"]].float().numpy()
        np.testing.assert_allclose(r["activations"], want, atol=1e-5, rtol=0)


def test_maximum_sits_at_the_example(demo_windows, demo_examples, ground_truth):
    table, stats = demo_windows
    ex = pq.read_table(demo_examples)
    assert table.num_rows == ex.num_rows and stats["examples"] == ex.num_rows
    for c in ("layer", "neuron", "rank", "value", "chunk", "pos", "doc"):
        assert table.column(c).equals(ex.column(c))
    focus = (pc.subtract(table.column("pos"), table.column("start"))).to_numpy()
    acts = table.column("activations").to_pylist()
    at_pos = np.array([a[f] for a, f in zip(acts, focus)])
    np.testing.assert_allclose(at_pos, table.column("value").to_numpy(), atol=1e-5, rtol=0)
    assert stats["max_value_diff"] <= 1e-5
    # within its own document the example's position is the window's maximum; the planted neurons' windows peak there
    tokens = table.column("tokens").to_pylist()
    for tn in ground_truth["token_neurons"]:
        for i in np.flatnonzero((table.column("layer").to_numpy() == tn["layer"])
                                & (table.column("neuron").to_numpy() == tn["neuron"])):
            assert int(np.argmax(acts[i])) == focus[i]
            assert tokens[i][focus[i]] in tn["triggers"]


def test_runs_only_rows_with_examples_up_to_their_last_window(demo_dir, demo_examples, demo_recorded):
    ex = pq.read_table(demo_examples)
    sub = ex.filter((pc.field("layer") == 2) & (pc.field("neuron") == 892))
    engine = load_engine(str(demo_dir), device="cpu", dtype="float32", engine="auto")
    table, stats = example_activations(engine, Examples(sub), demo_recorded["shards"], gpt2_tokenizer(),
                                       window=WINDOW, batch_size=2, progress=False)
    rows = RowTokens(demo_recorded["shards"])
    assert stats["rows"] == len(set(sub.column("chunk").to_pylist())) < stats["rows_total"]
    ends = {}
    for c, p in zip(sub.column("chunk").to_pylist(), sub.column("pos").to_pylist()):
        ends[c] = max(ends.get(c, 0), int(bounds(np.array([p]), len(rows.row(c)), WINDOW)[1][0]))
    assert stats["tokens"] == sum(ends.values()) < stats["tokens_total"]
    assert stats["max_value_diff"] <= 1e-5


def test_bridge_engine_agrees(demo_bridge, demo_examples, demo_recorded, demo_windows):
    """The same pass through the TransformerLens bridge (processed weights: hook_post is unchanged)."""
    ex = pq.read_table(demo_examples).slice(0, 40)
    table, _ = example_activations(BridgeEngine(demo_bridge), Examples(ex), demo_recorded["shards"],
                                   gpt2_tokenizer(), window=WINDOW, batch_size=3, progress=False)
    want = demo_windows[0].slice(0, 40)
    assert table.column("tokens").equals(want.column("tokens"))
    for a, b in zip(table.column("activations").to_pylist(), want.column("activations").to_pylist()):
        np.testing.assert_allclose(a, b, atol=1e-5, rtol=0)


def test_bounds_are_window_bounds():
    for length in (2, 5, 30, 128):
        for window in (1, 4, 24):
            pos = np.arange(1, length)
            lo, hi = bounds(pos, length, window)
            assert [(int(a), int(b)) for a, b in zip(lo, hi)] == [window_bounds(int(p), length, window) for p in pos]


def test_missing_row_is_an_error(demo_dir, demo_examples, demo_recorded):
    ex = pq.read_table(demo_examples).slice(0, 5)
    engine = load_engine(str(demo_dir), device="cpu", dtype="float32", engine="auto")
    with pytest.raises(ValueError, match="in none of the token shards"):
        example_activations(engine, Examples(ex), demo_recorded["shards"][:0], gpt2_tokenizer(), window=WINDOW,
                            batch_size=8, progress=False)
