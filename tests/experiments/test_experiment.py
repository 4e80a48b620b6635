"""Whole experiments on the planted demo (ground_truth.json says which neuron carries each prompt pair), the output
contract of docs/contracts.md, and the small decisions (robust z, auto layers, joint groups)."""

from __future__ import annotations

import json

from configs import experiment_config

import numpy as np
import pyarrow.parquet as pq
import pytest
import torch

from anneuron.contracts import experiment_files, parse_neuron
from anneuron.experiments import experiment as E
from anneuron.experiments.prompts import make_pair
from anneuron.experiments.standouts import stable_experiments, write_summary


@pytest.fixture(scope="module")
def demo_results(demo_bridge, ground_truth, tmp_path_factory):
    """Every planted experiment run and written, plus the cross-experiment summary."""
    out = tmp_path_factory.mktemp("experiments")
    results = {}
    for exp in ground_truth["experiments"]:
        res = E.run_experiment(demo_bridge, experiment_config(exp))
        res.write(experiment_files(out / exp["name"]))
        results[exp["name"]] = res
    write_summary({name: out / name / "neurons.parquet" for name in results}, out / "summary.parquet")
    return out, results


def _experiments(ground_truth):
    return [(e["name"], e["neuron"]) for e in ground_truth["experiments"]]


def test_each_planted_neuron_is_its_experiment_top_exact_neuron(demo_results, ground_truth):
    _, results = demo_results
    for name, neuron in _experiments(ground_truth):
        layer, n = parse_neuron(neuron)
        t = results[name].tables["neurons"].to_pandas()
        exact = t.dropna(subset=["exact"]).sort_values("exact", ascending=False)
        top = exact.iloc[0]
        assert (top.layer, top.neuron) == (layer, n), (name, exact.head(3))
        assert top.exact >= 0.8, (name, top.exact)
        assert bool(top.standout), name
        # the planted neuron is the only one that matters (the next best moves LD by < 2%): nothing else stands out
        others = t[t.standout & ~((t.layer == layer) & (t.neuron == n))]
        assert others.empty, (name, others.head())
        assert results[name].summary["prompt_check"] == "ok", name
        assert layer in results[name].summary["neuron_layers"], name


def test_planted_layer_mlp_out_at_the_last_position_is_the_top_mlp_cell(demo_results, ground_truth):
    _, results = demo_results
    for name, neuron in _experiments(ground_truth):
        layer, _ = parse_neuron(neuron)
        t = results[name].tables["layers"].to_pandas()
        mlp = t[t.component == "mlp_out"]
        best = mlp.loc[mlp.score.idxmax()]
        assert (best.layer, best.pos) == (layer, mlp.pos.max()), (name, best)


def test_attribution_ranks_the_planted_neuron_in_its_layer_top_3(demo_results, ground_truth):
    _, results = demo_results
    for name, neuron in _experiments(ground_truth):
        layer, n = parse_neuron(neuron)
        t = results[name].tables["neurons"].to_pandas()
        ranked = t[t.layer == layer].sort_values("attribution", ascending=False).neuron.tolist()
        assert n in ranked[:3], (name, ranked[:5])


def test_two_trigger_neuron_stands_out_across_experiments(demo_results, ground_truth):
    out, _ = demo_results
    rows = pq.read_table(out / "summary.parquet").to_pylist()
    shared = [e for e in ground_truth["experiments"] if e["neuron"] == "L1N421"]
    assert len(shared) == 2
    hit = [r for r in rows if (r["layer"], r["neuron"]) == (1, 421)]
    assert hit, rows
    assert set(hit[0]["experiments"]) >= {e["name"] for e in shared}
    assert hit[0]["n_experiments"] == len(hit[0]["experiments"]) >= 2
    assert hit[0]["max_exact"] >= 0.8
    assert all(r["n_experiments"] >= 2 for r in rows)


def test_outputs_follow_the_data_contract(demo_results, demo_bridge):
    out, results = demo_results
    from anneuron.contracts import EXPERIMENT_SCHEMAS

    files = experiment_files(out / "an_picked")
    for table, schema in EXPERIMENT_SCHEMAS.items():
        assert pq.read_schema(files[table]).remove_metadata() == schema, table
    summary = json.loads(files["summary"].read_text())
    for key in ("ld_clean", "ld_corrupted", "prompt_check", "neuron_layers"):
        assert key in summary
    assert summary["engine_check"] < 1e-5
    neurons = pq.read_table(files["neurons"])
    cfg = demo_bridge.cfg
    assert neurons.num_rows == cfg.n_layers * cfg.d_mlp
    exact = neurons.column("exact")
    assert exact.null_count > 0  # null where not computed, never NaN
    n_exact = neurons.num_rows - exact.null_count
    assert n_exact >= cfg.d_mlp * len(summary["neuron_layers"])
    preds = pq.read_table(files["predictions"]).to_pandas()
    top = preds[(preds.prompt == "clean") & (preds["rank"] == 1)].iloc[0]
    assert top.token_str == " an"  # the planted neuron makes its token the top prediction
    assert summary["prob_answer_clean"] == pytest.approx(top.prob)


def test_contrast_congruence_ranks_each_planted_neuron_first(demo_results, demo_bridge, ground_truth):
    """Each planted neuron writes its token's unembedding direction, so its w_out · (u_answer − u_wrong) is the
    largest of all neurons in its own experiment; the table matches a dense product."""
    from anneuron.experiments import patching as P
    from anneuron.weights.congruence import weights_of

    _, results = demo_results
    w = weights_of(demo_bridge)
    for name, neuron in _experiments(ground_truth):
        layer, n = parse_neuron(neuron)
        t = results[name].tables["contrast"].to_pandas()
        top = t.loc[t["rank"] == 1].iloc[0]
        assert (top.layer, top.neuron) == (layer, n), (name, t.nsmallest(3, "rank"))
        s = results[name].summary
        assert s["contrast_rank_of_best_exact"] == 1 and s["contrast_spearman"] is not None
        d, _ = P.unembed_direction(demo_bridge, s["answer_id"], s["wrong_id"])
        dense = torch.cat([x.double() for x in w.w_out]) @ d.double()
        assert np.allclose(t.sort_values(["layer", "neuron"]).score.to_numpy(), dense.numpy(), atol=1e-9)
        assert sorted(t["rank"]) == list(range(1, len(t) + 1))


def test_the_overview_says_the_weights_predicted_each_planted_neuron(demo_results, ground_truth):
    """experiments/overview.parquet, read back from the written summaries: per experiment its best exact neuron (the
    planted one), that neuron's contrast rank (1) and the Spearman of contrast vs exact scores as in summary.json."""
    from anneuron.experiments.standouts import overview_table

    out, results = demo_results
    names = [name for name, _ in _experiments(ground_truth)]
    summaries = {name: experiment_files(out / name)["summary"] for name in names}
    rows = {r["experiment"]: r for r in overview_table(summaries, stable_experiments(summaries)).to_pylist()}
    for name, neuron in _experiments(ground_truth):
        r, s = rows[name], results[name].summary
        assert (r["best_neuron"], r["contrast_rank_of_best_exact"], r["counted"]) == (neuron, 1, True), r
        assert r["contrast_spearman"] == s["contrast_spearman"] and r["ld_clean"] == s["ld_clean"]
        assert -1 <= r["contrast_spearman"] <= 1


def test_joint_patching_k1_is_the_single_neuron_score_and_grows_on_the_answer_side(demo_results):
    _, results = demo_results
    res = results["an_picked"]
    joint = res.tables["joint"].to_pandas()
    neurons = res.tables["neurons"].to_pandas()
    for layer in res.summary["neuron_layers"]:
        exact = neurons[neurons.layer == layer].exact
        j = joint[joint.layer == layer]
        assert sorted(j.k.unique()) == [1, 2, 5, 10, 20, 50]
        assert j[(j.side == "answer") & (j.k == 1)].score.iloc[0] == pytest.approx(exact.max(), abs=1e-5)
        assert j[(j.side == "wrong") & (j.k == 1)].score.iloc[0] == pytest.approx(exact.min(), abs=1e-5)


def test_joint_patching_equals_a_hook_loop_on_the_demo(demo_bridge, demo_results, ground_truth):
    """Each (layer, side, k) of an_picked: its neurons set to their clean values in one full hooked forward."""
    from anneuron.experiments import patching as P

    _, results = demo_results
    res = results["an_picked"]
    exp = next(e for e in ground_truth["experiments"] if e["name"] == "an_picked")
    pair = make_pair(demo_bridge, exp["clean"], exp["corrupted"], exp["answer"], exp["wrong"])
    runs = P.run_pair(demo_bridge, pair, grad=False)
    neurons, joint = res.tables["neurons"].to_pandas(), res.tables["joint"].to_pandas()
    pair = runs.pair
    for r in joint.itertuples():
        exact = neurons[neurons.layer == r.layer].set_index("neuron").exact
        group = (exact.sort_values(ascending=r.side == "wrong", kind="stable").index[: r.k]).tolist()
        hook = P.set_neurons_hook(runs.clean.acts["post"][r.layer], group)
        ld = P.hooked_logit_diff(demo_bridge, pair.corrupted, pair.answer, pair.wrong,
                                 [(f"blocks.{r.layer}.mlp.hook_post", hook)])
        assert abs(float(runs.score(torch.tensor(ld))) - r.score) < 1e-5, r


def test_joint_k_is_capped_at_d_mlp(demo_bridge, ground_truth):
    exp = dict(ground_truth["experiments"][0], neuron_layers=[0])
    cfg = experiment_config(exp, joint_k=[1, 5000, 100000], attribution_exact_top=0)
    joint = E.run_experiment(demo_bridge, cfg).tables["joint"].to_pandas()
    assert sorted(joint.k.unique()) == [1, demo_bridge.cfg.d_mlp]


def test_choose_layers():
    exp = dict(clean="a", corrupted="b", answer="c", wrong="d")
    cfg = experiment_config(exp, auto_threshold=0.2, max_auto_layers=2).patching
    mlp = np.array([0.1, 0.5, 0.3, 0.9])
    assert E.choose_layers("auto", cfg, mlp, np.zeros(4))[0] == [3, 1]
    assert E.choose_layers((2, 0, 2), cfg, mlp, np.zeros(4))[0] == [0, 2]
    layers, how = E.choose_layers("auto", cfg, np.array([0.01, 0.05, np.nan]), np.zeros(3))
    assert layers == [1] and "no layer reached" in how
    lens_cfg = experiment_config(exp, auto_method="logit_lens", max_auto_layers=1).patching
    assert E.choose_layers("auto", lens_cfg, mlp, np.array([0.0, 0.1, 0.7, 0.3]))[0] == [2]
    with pytest.raises(ValueError, match="out of range"):
        E.choose_layers((7,), cfg, mlp, np.zeros(4))


def test_logit_lens_auto_method_finds_the_planted_layer(demo_bridge, ground_truth):
    exp = next(e for e in ground_truth["experiments"] if e["name"] == "an_picked")
    cfg = experiment_config(exp, auto_method="logit_lens", max_auto_layers=1, attribution_exact_top=0)
    res = E.run_experiment(demo_bridge, cfg)
    assert res.summary["neuron_layers"] == [parse_neuron(exp["neuron"])[0]]


def test_figures_have_the_design_names(demo_results, tmp_path):
    from anneuron.experiments.figures import experiment_figures, summary_figures

    out, results = demo_results
    layers = results["though_as"].summary["neuron_layers"]
    pngs = experiment_figures(out / "though_as", tmp_path / "though_as", "though_as")
    expected = {"logit_lens", "patch_resid_pre", "patch_attn_out", "patch_mlp_out", "attribution_vs_exact", "joint",
                "contrast_vs_exact", "heads", "head_positions", "head_patterns", "direct_vs_total"}
    assert {p.stem for p in pngs} == expected | {f"patch_neurons_L{l}" for l in layers}
    assert all(p.exists() and p.with_suffix(".svg").exists() for p in pngs)
    files = {name: out / name / "neurons.parquet" for name in results}
    assert summary_figures(out / "summary.parquet", files, tmp_path / "summary").exists()


def test_prompts_with_the_same_ld_give_outputs_not_a_crash(demo_bridge, demo_results, tmp_path, monkeypatch):
    """A default experiment on a model that never learnt its tokens (both prompts give the same LD, e.g. both
    tokens have zero unembedding rows) must report it and never break the run."""
    import dataclasses

    from anneuron.experiments import patching as P
    from anneuron.experiments.figures import experiment_figures, summary_figures

    run_pair = P.run_pair

    def same_ld(bridge, pair):
        runs = run_pair(bridge, pair)
        return dataclasses.replace(runs, corrupted=dataclasses.replace(runs.corrupted, ld=runs.clean.ld))

    monkeypatch.setattr(P, "run_pair", same_ld)
    exp = dict(name="same", clean="The train runs at 90 km", corrupted="The train runs at 90 miles",
               answer="/", wrong=" per")
    res = E.run_experiment(demo_bridge, experiment_config(exp))
    assert "nothing to patch" in res.summary["prompt_check"]
    assert res.tables["neurons"].num_rows == 0 and res.tables["logit_lens"].num_rows > 0
    res.write(experiment_files(tmp_path / "same"))
    pngs = experiment_figures(tmp_path / "same", tmp_path / "figs", "same")
    assert [p.stem for p in pngs] == ["logit_lens"]
    # ... it nominates no one across experiments, and the cross-experiment figure still draws its (blank) column
    out, results = demo_results
    names = [*results, "same"]
    files = {name: (out if name in results else tmp_path) / name / "neurons.parquet" for name in names}
    stable = stable_experiments({name: files[name].with_name("summary.json") for name in names})
    assert stable == list(results)
    write_summary({e: files[e] for e in stable}, tmp_path / "summary.parquet")
    assert pq.read_table(tmp_path / "summary.parquet").num_rows > 0
    assert summary_figures(tmp_path / "summary.parquet", files, tmp_path / "summary", not_counted={"same"}).exists()
    import polars as pl

    from anneuron.experiments.figures import summary_figure

    summary = pl.read_parquet(tmp_path / "summary.parquet")
    fig = summary_figure(summary, {e: pl.read_parquet(f) for e, f in files.items()}, not_counted={"same"})
    ax = fig.axes[0]
    labels = [t.get_text() for t in ax.get_xticklabels()]
    assert labels[:-1] == list(results) and labels[-1].startswith("same (") and "not counted" in labels[-1]
    column = len(names) - 1
    assert len(ax.texts) == len(summary.head(30)) * (len(names) - 1)  # one number per cell, none in "same"
    assert all(round(t.get_position()[0]) != column for t in ax.texts)
