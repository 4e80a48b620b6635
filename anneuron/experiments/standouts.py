"""Which neurons stand out, within one experiment and across experiments (docs/science.md "Standout").

Within an experiment a neuron stands out when its robust z-score (exact patch score, attribution where no exact
score exists, against its own layer's median and MAD) exceeds `patching.standout_z`, and, where a floor is set,
when it moves LD by at least `patching.standout_min_score`. Across experiments only those whose LD gap is at least
MIN_LD_GAP count: their patch scores divide by that gap (a default prompt on a model that never learnt its tokens
otherwise contributes scores of ±3 out of noise). The dataset pass imports this module to watch the standouts.
"""

from __future__ import annotations

import logging
import math
from pathlib import Path

import numpy as np
import pyarrow as pa
import torch

from anneuron.contracts import EXPERIMENTS_OVERVIEW, EXPERIMENTS_SUMMARY, MIN_LD_GAP
from anneuron.io import REBUILD, read_json, read_parquet, write_parquet

log = logging.getLogger(__name__)

MAD_TO_SD = 1.4826  # MAD of a normal distribution × this = its standard deviation


def robust_z(values: torch.Tensor) -> torch.Tensor:
    """(x − median) / (1.4826 · MAD) along the last dimension; where the MAD is 0, the mean absolute deviation
    from the median (× 1.2533, normal-consistent) instead; 0 where even that is 0."""
    x = values.double()
    med = x.quantile(0.5, dim=-1, keepdim=True)  # the midpoint for even counts, like numpy
    dev = (x - med).abs()
    scale = MAD_TO_SD * dev.quantile(0.5, dim=-1, keepdim=True)
    fallback = math.sqrt(math.pi / 2) * dev.mean(-1, keepdim=True)
    scale = torch.where(scale > 0, scale, fallback)
    return torch.where(scale > 0, (x - med) / scale, torch.zeros_like(x))


def standout_mask(score: torch.Tensor, z: torch.Tensor, standout_z: float, min_score: float) -> torch.Tensor:
    """z above the threshold and, when `min_score` > 0, |score| at least that floor."""
    mask = z > standout_z
    return mask & (score.abs() >= min_score) if min_score > 0 else mask


def standout_rule(standout_z: float, min_score: float) -> str:
    """The rule in words, for summaries and figure captions."""
    rule = f"robust z > {standout_z:g}"
    return rule + (f" and |score| >= {min_score:g}" if min_score > 0 else "")


def counted(summary: dict) -> bool:
    """Whether an experiment (its summary.json) counts across experiments: its LD gap is at least MIN_LD_GAP, so its
    LD-normalised scores are not a small difference blown up."""
    gap = summary["ld_clean"] - summary["ld_corrupted"]
    return bool(math.isfinite(gap) and abs(gap) >= MIN_LD_GAP)


def stable_experiments(summary_files: dict[str, str | Path]) -> list[str]:
    """The experiments (name -> summary.json) that count (`counted`): only they may nominate neurons across
    experiments."""
    out = []
    for exp, path in summary_files.items():
        s = read_json(path, REBUILD)
        gap = s["ld_clean"] - s["ld_corrupted"]
        if counted(s):
            out.append(exp)
        else:
            log.info("%s: LD gap %.3g is not at least %g: its standouts are not counted", exp, gap, MIN_LD_GAP)
    return out


def experiment_answers(summary_files: dict[str, str | Path]) -> dict[str, str]:
    """Experiment name -> the answer token it ran with (name -> summary.json)."""
    return {exp: read_json(path, REBUILD)["answer"] for exp, path in summary_files.items()}


def summarize_experiments(neuron_files: dict[str, str | Path]) -> pa.Table:
    """Neurons standing out in at least two experiments (experiment name -> its neurons.parquet; pass only the
    stable_experiments), most experiments first, then highest mean z."""
    seen: dict[tuple[int, int], list[tuple[str, float | None, float]]] = {}
    for exp, path in sorted(neuron_files.items()):
        t = read_parquet(path, columns=["layer", "neuron", "exact", "standout_z", "standout"],
                         filters=[("standout", "=", True)])
        for r in t.to_pylist():
            seen.setdefault((r["layer"], r["neuron"]), []).append((exp, r["exact"], r["standout_z"]))
    rows = []
    for (layer, neuron), hits in seen.items():
        if len(hits) < 2:
            continue
        exacts = [e for _, e, _ in hits if e is not None]
        rows.append(dict(layer=layer, neuron=neuron, experiments=[h[0] for h in hits], n_experiments=len(hits),
                         max_exact=max(exacts) if exacts else None, mean_z=float(np.mean([h[2] for h in hits]))))
    rows.sort(key=lambda r: (-r["n_experiments"], -r["mean_z"], r["layer"], r["neuron"]))
    return pa.Table.from_pylist(rows, schema=EXPERIMENTS_SUMMARY)


def write_summary(neuron_files: dict[str, str | Path], out: str | Path) -> None:
    write_parquet(out, summarize_experiments(neuron_files))


def overview_table(summary_files: dict[str, str | Path], stable: list[str]) -> pa.Table:
    """One row per experiment (name -> summary.json): its LDs, whether it counts across experiments, the layers it
    patched, its best exact neuron, how many neurons stand out and by which rule, and whether the weights predicted
    its neurons (Spearman of contrast congruence vs exact score over the patched layers; the contrast rank of its
    best exact neuron)."""
    rows = []
    for exp, path in summary_files.items():
        s = read_json(path, REBUILD)
        best = s.get("top_neurons") or [{}]
        rows.append(dict(experiment=exp, ld_clean=s["ld_clean"], ld_corrupted=s["ld_corrupted"],
                         counted=exp in stable, prompt_check=s["prompt_check"], neuron_layers=s["neuron_layers"],
                         best_neuron=best[0].get("name"), best_exact=best[0].get("exact"),
                         n_standout=s.get("n_standout", 0), contrast_spearman=s.get("contrast_spearman"),
                         contrast_rank_of_best_exact=s.get("contrast_rank_of_best_exact"),
                         standout_rule=s.get("standout_rule")))
    return pa.Table.from_pylist(rows, schema=EXPERIMENTS_OVERVIEW)


def standout_entries(neuron_files: dict[str, str | Path], answers: dict[str, str]) -> list[tuple[int, int, str]]:
    """(layer, neuron, token) of every neuron standing out in an experiment: most experiments first, ties by the
    largest |exact| (attribution where none), then by (layer, neuron).

    `neuron_files` maps experiment name → its neurons.parquet; `answers` experiment name → its answer token. The
    token is the answer of the experiment where the neuron's |exact| is largest (standouts are one-sided: patching
    them moves LD towards the answer), so the curve asks "does this neuron track the token the experiment is about?"
    and a neuron that helps by switching off gets a falling curve.
    """
    found: dict[tuple[int, int], list] = {}  # (layer, neuron) -> [n experiments, best |exact|, its token]
    for exp, path in neuron_files.items():
        t = read_parquet(path, columns=["layer", "neuron", "attribution", "exact", "standout"],
                         filters=[("standout", "=", True)])
        cols = (t.column(c).to_pylist() for c in ("layer", "neuron", "attribution", "exact"))
        for layer, neuron, attribution, exact in zip(*cols):
            score = abs(attribution if exact is None else exact)  # what its standout flag was judged on
            entry = found.setdefault((int(layer), int(neuron)), [0, -1.0, None])
            entry[0] += 1
            if score > entry[1]:
                entry[1], entry[2] = score, answers[exp]
    ranked = sorted(found.items(), key=lambda kv: (-kv[1][0], -kv[1][1], kv[0]))
    return [(layer, neuron, tok) for (layer, neuron), (_, _, tok) in ranked]
