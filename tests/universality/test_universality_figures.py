"""The universality figures draw from the stage's tables (synthetic here), and the twins chosen are the neurons of
highest ϱ with their best match."""

from __future__ import annotations

import numpy as np
import polars as pl

from anneuron.universality.figures import draw_universality_figures, most_universal

L, D = 3, 40


def tables(seed: int = 0) -> dict[str, pl.DataFrame]:
    rng = np.random.default_rng(seed)
    n = L * D
    layer, neuron = np.arange(n) // D, np.arange(n) % D
    base = rng.uniform(0.1, 0.35, (2, n))
    best = np.where(rng.random((2, n)) < 0.1, rng.uniform(0.6, 0.99, (2, n)), base + rng.uniform(0, 0.2, (2, n)))
    rows = [dict(layer=int(layer[f]), neuron=int(neuron[f]), other_model=o, max_corr=float(best[k, f]),
                 max_layer=int(layer[f]), max_neuron=int((f * 7 + k) % D), min_corr=-0.2,
                 baseline_max_corr=float(base[k, f])) for f in range(n) for k, o in enumerate(("m2", "m3"))]
    varrho, bv = best.mean(0), base.mean(0)
    summary = pl.DataFrame(dict(layer=layer, neuron=neuron, varrho=varrho, baseline_varrho=bv, excess=varrho - bv,
                                universal=varrho > 0.5))
    props = pl.DataFrame(dict(layer=layer, neuron=neuron, act_frequency=rng.random(n), act_mean=rng.normal(size=n),
                              act_skew=rng.normal(size=n), act_kurt=3 + rng.gamma(2, size=n),
                              w_in_norm=rng.gamma(3, size=n), w_out_norm=rng.gamma(3, size=n),
                              in_out_cos=rng.uniform(-0.3, 0.3, n)))
    classes = pl.DataFrame(dict(layer=layer, neuron=neuron, wu_skew=rng.normal(size=n),
                                wu_kurt=3 + rng.gamma(2, size=n),
                                neuron_class=rng.choice(["prediction", "suppression", "partition", "other"], n)))
    return dict(summary=summary, neurons=pl.DataFrame(rows), properties=props, classes=classes)


def test_most_universal_and_every_figure(tmp_path):
    t = tables()
    twins = most_universal(t["summary"], t["neurons"], {"m2": "path/m2", "m3": "path/m3"}, k=3)
    top = t["summary"].sort("varrho", descending=True).head(3)
    assert [(a, b) for a, b, *_ in twins] == list(zip(top["layer"], top["neuron"]))
    for layer, n, other, name, tl, tn, rho in twins:
        rows = t["neurons"].filter((pl.col("layer") == layer) & (pl.col("neuron") == n))
        assert rho == rows["max_corr"].max() and name == f"path/{other}"
    rng = np.random.default_rng(1)
    data = [(x, 0.8 * x + 0.2 * rng.normal(size=500)) for x in rng.normal(size=(3, 500))]
    names = draw_universality_figures(tmp_path, t["summary"], t["neurons"], t["properties"], t["classes"], 0.5,
                                      data, twins)
    for name in names:
        assert (tmp_path / f"{name}.png").stat().st_size > 5000 and (tmp_path / f"{name}.svg").exists()
