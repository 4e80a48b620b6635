"""Robust z, the standout rule and the cross-experiment bookkeeping (anneuron/experiments/standouts.py)."""

from __future__ import annotations

import json

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import torch

from anneuron.contracts import EXPERIMENT_SCHEMAS, MIN_LD_GAP
from anneuron.experiments import standouts as S


def test_robust_z():
    x = torch.tensor([[0.0, 1, 2, 3, 4, 100], [5, 5, 5, 5, 5, 5], [0, 0, 0, 0, 0, 1]])
    z = S.robust_z(x)
    assert z[0, 5] == pytest.approx((100 - 2.5) / (1.4826 * 1.5))
    assert (z[1] == 0).all()  # no spread at all
    assert z[2, 5] > 0 and z[2, 5] == z[2].max()  # MAD 0: mean absolute deviation instead


def test_standout_mask_floor_applies_only_when_set():
    score = torch.tensor([0.01, 0.2, 0.03])
    z = torch.tensor([9.0, 9.0, 2.0])
    assert S.standout_mask(score, z, 8, 0).tolist() == [True, True, False]
    assert S.standout_mask(score, z, 8, 0.05).tolist() == [False, True, False]
    assert S.standout_rule(8, 0) == "robust z > 8"
    assert S.standout_rule(8, 0.05) == "robust z > 8 and |score| >= 0.05"


def test_stable_experiments_need_an_ld_gap_of_min_ld_gap(tmp_path):
    files = {}
    for name, clean, corrupted in [("ok", 2.0, -1.0), ("tiny", 0.2, 0.0), ("edge", 0.25, -0.25), ("neg", -3.0, 1.0)]:
        files[name] = tmp_path / f"{name}.json"
        files[name].write_text(json.dumps({"ld_clean": clean, "ld_corrupted": corrupted}))
    assert MIN_LD_GAP == 0.5
    assert S.stable_experiments(files) == ["ok", "edge", "neg"]  # the gap's size counts, not its sign


def _neurons(path, rows):
    table = pa.Table.from_pylist([dict(attribution=0.0, standout_z=9.0, **r) for r in rows],
                                 schema=EXPERIMENT_SCHEMAS["neurons"])
    pq.write_table(table, path)
    return path


def test_summary_and_entries_rank_by_experiments_then_score(tmp_path):
    a = _neurons(tmp_path / "a.parquet", [dict(layer=1, neuron=2, exact=0.5, standout=True),
                                          dict(layer=0, neuron=3, exact=0.9, standout=True)])
    b = _neurons(tmp_path / "b.parquet", [dict(layer=1, neuron=2, exact=0.7, standout=True),
                                          dict(layer=0, neuron=3, exact=None, standout=False)])
    summary = S.summarize_experiments({"a": a, "b": b}).to_pylist()
    assert [(r["layer"], r["neuron"], r["experiments"], r["max_exact"]) for r in summary] == [(1, 2, ["a", "b"], 0.7)]
    entries = S.standout_entries({"a": a, "b": b}, {"a": " an", "b": " though"})
    assert entries == [(1, 2, " though"), (0, 3, " an")]  # L1N2 in two; its token from b, where |exact| is largest
