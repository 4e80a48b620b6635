"""The stages figures draw from the stage's tables and the weights pass's classes, byte-identical on a rerun."""

from __future__ import annotations

import numpy as np
import polars as pl
import pytest

from anneuron.stages.figures import class_shares, models_figure, stages_figure


def tables(n_layers: int, seed: int):
    rng = np.random.default_rng(seed)
    x = (np.arange(n_layers) + 1) / n_layers
    layers = pl.DataFrame({
        "layer": np.arange(n_layers), "relative_depth": x, "kl_to_final": 5 * (1 - x), "kl_to_final_se": 0.1 + 0 * x,
        "entropy": 3 + x, "entropy_se": 0.05 + 0 * x, "kl_to_final_post": 3 * (1 - x), "kl_to_final_post_se": 0 * x,
        "entropy_post": 4 + x, "entropy_post_se": 0 * x, "attn_out_norm": 1 + x, "mlp_out_norm": 2 + x ** 2,
        "prev5_attention": 0.5 - 0.3 * x, "positions": [1000] * n_layers, "lens_positions": [100] * n_layers})
    inter = pl.DataFrame({
        "intervention": ["delete"] * n_layers + ["swap"] * (n_layers - 1),
        "layer": list(range(n_layers)) + list(range(n_layers - 1)),
        "relative_depth": list(x) + list(x[:-1]), "kl": rng.uniform(0.01, 2, 2 * n_layers - 1),
        "kl_se": [0.01] * (2 * n_layers - 1), "top1_agreement": rng.uniform(0.5, 1, 2 * n_layers - 1),
        "top1_agreement_se": [0.01] * (2 * n_layers - 1), "positions": [500] * (2 * n_layers - 1)})
    classes = ["prediction", "suppression", "other", "other"]
    neurons = pl.DataFrame({"layer": np.repeat(np.arange(n_layers), 4), "neuron": np.tile(np.arange(4), n_layers),
                            "neuron_class": classes * n_layers})
    return layers, inter, neurons


def test_class_shares():
    _, _, neurons = tables(3, 0)
    shares = class_shares(neurons)
    assert shares["prediction"].to_list() == [0.25] * 3 and shares["suppression"].to_list() == [0.25] * 3
    assert shares["relative_depth"].to_list() == pytest.approx([1 / 3, 2 / 3, 1])


def test_figures_are_written_and_reproducible(tmp_path):
    one = tables(6, 0)
    paths = stages_figure(*one, tmp_path / "stages", title="m")
    assert [p.suffix for p in paths] == [".png", ".svg"] and all(p.stat().st_size > 10_000 for p in paths)
    first = paths[1].read_bytes()
    stages_figure(*one, tmp_path / "stages", title="m")
    assert paths[1].read_bytes() == first
    both = models_figure({"a": one, "b": tables(30, 1)}, tmp_path / "models")
    assert all(p.exists() for p in both)
