"""A task end to end on the planted demo (ground_truth.json: " picked" fires L2N892, which writes " an"): the planted
neuron is the task's top neuron on every pair, with full sign agreement, and the task's tables are the per-pair
experiments' tables aggregated as docs/science.md "Tasks" defines."""

from __future__ import annotations

import json
import math

from configs import experiment_config, task_config

import pytest
import torch

from anneuron.contracts import TASK_NEURONS, experiment_files
from anneuron.experiments.experiment import run_experiment
from anneuron.experiments.task_run import run_task

FRUITS = ["apple", "pear", "plum", "cherry", "lemon", "peach", "orange", "fig", "olive", "banana"]
TASK = {"template": {"clean": "I climbed up the {fruit} tree and picked",
                     "corrupted": "I climbed up the {fruit} tree and walked", "answer": " an", "wrong": " a"},
        "fills": [{"fruit": f} for f in FRUITS[:4]]}


@pytest.fixture(scope="module")
def task_result(demo_bridge, tmp_path_factory):
    res = run_task(demo_bridge, task_config("an_task", TASK, batch_size=16))
    out = tmp_path_factory.mktemp("task")
    res.write(experiment_files(out))
    return res, out


@pytest.fixture(scope="module")
def per_pair(demo_bridge):
    pairs = [{k: v.format(**fill) for k, v in TASK["template"].items()} for fill in TASK["fills"]]
    return [run_experiment(demo_bridge, experiment_config(dict(p, name=f"p{i}")))
            for i, p in enumerate(pairs)]


def test_the_planted_neuron_stands_out_in_the_task_on_every_pair(task_result):
    res, _ = task_result
    t = res.tables["neurons"].to_pandas()
    assert res.tables["neurons"].schema == TASK_NEURONS
    top = t.dropna(subset=["exact"]).sort_values("exact", ascending=False).iloc[0]
    assert (top.layer, top.neuron) == (2, 892) and top.exact >= 0.8 and top.agreement == 1, top
    assert top.standout and t.standout.sum() == 1
    s = res.summary
    assert s["n_pairs"] == 4 and s["prompt_check"] == "ok" and s["top_neurons"][0]["name"] == "L2N892"
    assert all(x >= 0.8 for x in s["top_neurons"][0]["per_pair"])
    assert s["engine_check"] < 1e-5
    assert len(s["top_heads"]) == 5 and all(len(h["per_pair"]) == 4 for h in s["top_heads"])


def test_task_scores_are_the_ratio_of_mean_lds_of_the_single_pairs(task_result, per_pair):
    """The same patches as four single-pair experiments: the task's exact / layers / joint rows are their
    gap-weighted means (where both patched a neuron), the spread their standard deviation."""
    res, _ = task_result
    gaps = torch.tensor([r.summary["ld_clean"] - r.summary["ld_corrupted"] for r in per_pair], dtype=torch.float64)

    def combined(column: str, table: str, key: list[str]) -> tuple[dict, dict]:
        ours = {tuple(r[k] for k in key): r[column] for r in res.tables[table].to_pylist()}
        theirs = [{tuple(r[k] for k in key): r[column] for r in p.tables[table].to_pylist()} for p in per_pair]
        return ours, theirs

    for table, column, key in (("neurons", "exact", ["layer", "neuron"]), ("layers", "score", ["component", "layer",
                                                                                             "pos"]),
                               ("neurons", "attribution", ["layer", "neuron"]), ("heads", "patch", ["layer", "head"]),
                               ("direct", "direct", ["layer", "neuron"])):
        ours, theirs = combined(column, table, key)
        n = 0
        for k, v in ours.items():
            values = [t[k] for t in theirs]
            if v is None or any(x is None for x in values):
                continue
            expected = float((torch.tensor(values, dtype=torch.float64) * gaps).sum() / gaps.sum())
            assert abs(v - expected) < 1e-4 * max(1.0, abs(expected)), (table, k, v, expected)
            n += 1
        assert n > 0, table
    std = {(r["layer"], r["neuron"]): r["exact_std"] for r in res.tables["neurons"].to_pylist()}
    singles = [p.tables["neurons"].to_pandas().set_index(["layer", "neuron"]).exact for p in per_pair]
    assert abs(std[(2, 892)] - float(torch.tensor([s[(2, 892)] for s in singles]).std(correction=0))) < 1e-4


def test_heads_and_direct_tables_of_a_task(task_result):
    res, out = task_result
    direct = res.tables["direct"].to_pandas().set_index(["layer", "neuron"])
    # the planted neuron writes " an" itself: most of its exact effect is direct
    assert direct.loc[(2, 892)].direct >= 0.5 * direct.loc[(2, 892)].exact
    summary = json.loads((out / "summary.json").read_text())
    assert len(summary["pairs"]) == 4 and all(math.isfinite(p["ld_clean"]) for p in summary["pairs"])
    assert len(res.tables["heads"]) == 4 * 4  # the demo: 4 layers x 4 heads


def test_the_cross_experiment_summary_reads_a_task_as_an_experiment(task_result, per_pair, tmp_path):
    from anneuron.experiments.standouts import overview_table, stable_experiments, summarize_experiments

    _, out = task_result
    per_pair[0].write(experiment_files(tmp_path / "p0"))
    dirs = {"an_task": out, "p0": tmp_path / "p0"}
    summaries = {e: experiment_files(d)["summary"] for e, d in dirs.items()}
    stable = stable_experiments(summaries)
    assert stable == ["an_task", "p0"]
    rows = summarize_experiments({e: experiment_files(d)["neurons"] for e, d in dirs.items()}).to_pylist()
    assert [(r["layer"], r["neuron"], r["experiments"]) for r in rows] == [(2, 892, ["an_task", "p0"])]
    overview = overview_table(summaries, stable).to_pylist()
    assert [r["best_neuron"] for r in overview] == ["L2N892", "L2N892"] and overview[0]["prompt_check"] == "ok"


PLANTED = {"planted_an": "L2N892", "planted_though": "L1N421", "planted_off": "L3N77", "planted_km": "L0N137"}


@pytest.mark.parametrize("name", list(PLANTED))
def test_each_shipped_planted_task_finds_its_planted_neuron(demo_bridge, name):
    """workflow/configs/tasks-planted.yaml (its first 3 pairs): the planted neuron is the top neuron, consistent over
    the pairs, and the only one standing out."""
    from configs import REPO

    import yaml

    from anneuron.contracts import parse_neuron

    entry = yaml.safe_load((REPO / "workflow/configs/tasks-planted.yaml").read_text())["experiments"][name]
    res = run_task(demo_bridge, task_config(name, dict(entry, fills=entry["fills"][:3]), batch_size=32))
    t = res.tables["neurons"].to_pandas()
    top = t.dropna(subset=["exact"]).sort_values("exact", ascending=False).iloc[0]
    assert (top.layer, top.neuron) == parse_neuron(PLANTED[name]) and top.agreement == 1 and top.exact >= 0.8
    assert top.standout and t.standout.sum() == 1
