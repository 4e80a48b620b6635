"""A task end to end (anneuron.experiments.tasks says what a task is and how its scores aggregate): the tables of
a single pair's experiment, each score the task's aggregate over its pairs, patched in batches across the pairs."""

from __future__ import annotations

import logging
import math
from typing import Sequence

import numpy as np
import pyarrow as pa
import torch

from anneuron.contracts import EXPERIMENT_SCHEMAS as SCHEMAS
from anneuron.contracts import TASK_NEURONS, flat_name
from anneuron.experiments import patching as P
from anneuron.experiments.contrast import contrast_scores, contrast_summary, contrast_table
from anneuron.experiments.experiment import (
    COMPONENT_TABLES,
    TOP_NEURONS,
    ExperimentResult,
    choose_layers,
    component_tables,
    joint_k_groups,
)
from anneuron.experiments.logit_lens import LogitLens, logit_lens
from anneuron.experiments.prompts import make_pair, prediction_rows, prompt_check
from anneuron.experiments.standouts import robust_z, standout_mask, standout_rule
from anneuron.experiments.tasks import (
    PairsModel,
    TaskRuns,
    agreement,
    check_engine,
    joint_lds,
    layer_position_lds,
    neuron_lds,
)
from anneuron.models import body_dtype
from anneuron.stage_config import TaskConfig
from anneuron.weights.congruence import weights_of

log = logging.getLogger(__name__)


def mean_lens(lenses: list[LogitLens]) -> LogitLens:
    """The logit lens averaged over pairs (each entry is linear in its pair's LD direction)."""
    return LogitLens(lenses[0].labels, torch.stack([x.post for x in lenses]).mean(0),
                     torch.stack([x.recomputed for x in lenses]).mean(0))


def pair_rows(cfg: TaskConfig, task: TaskRuns, checks: list[str]) -> list[dict]:
    """summary.json's `pairs`: each pair, its LDs and its prompt check."""
    return [dict(pair, ld_clean=runs.ld_clean, ld_corrupted=runs.ld_corrupted, prompt_check=check)
            for pair, runs, check in zip(cfg.pairs, task.runs, checks)]


def run_task(bridge, cfg: TaskConfig):
    """Everything of one task: the single-pair tables, each score being the task's aggregate (module docstring);
    neurons.parquet adds each neuron's spread and sign agreement (contracts.TASK_NEURONS); the predictions and the
    token strings are the first pair's, the logit lens the mean over pairs."""
    pc = cfg.patching
    pairs = [make_pair(bridge, p["clean"], p["corrupted"], p["answer"], p["wrong"]) for p in cfg.pairs]
    task = TaskRuns([P.run_pair(bridge, pair) for pair in pairs])
    checks = [prompt_check(r, p["answer"], p["wrong"]) for r, p in zip(task.runs, cfg.pairs)]
    failing = [i for i, c in enumerate(checks) if c != "ok"]
    check = "ok" if not failing else f"{len(failing)} of {task.n_pairs} pairs fail their prompt check: pairs {failing}"
    if failing:
        log.warning("prompt check: %s", check)
    first, tok = pairs[0], bridge.tokenizer
    clean_str = [tok.decode([t]) for t in first.clean[0].tolist()]
    n_layers, d_mlp = bridge.cfg.n_layers, bridge.cfg.d_mlp
    ld_clean, ld_corrupted = float(task.ld_clean.mean()), float(task.ld_corrupted.mean())
    gap = task.gap

    lens = mean_lens([logit_lens(bridge, r.clean.cache, r.pair.answer, r.pair.wrong) for r in task.runs])
    direction = torch.stack([P.unembed_direction(bridge, p.answer, p.wrong)[0] for p in pairs]).mean(0)
    contrast = contrast_scores(weights_of(bridge).w_out, direction)
    base = dict(ld_clean=ld_clean, ld_corrupted=ld_corrupted, prompt_check=check, answer=cfg.pairs[0]["answer"],
                wrong=cfg.pairs[0]["wrong"], answer_id=first.answer, wrong_id=first.wrong, tokens_clean=clean_str,
                tokens_corrupted=[tok.decode([t]) for t in first.corrupted[0].tolist()], first_diff=first.start,
                n_pairs=task.n_pairs, aggregate="ratio of mean LDs", min_agreement=cfg.min_agreement)
    tables = {"predictions": pa.Table.from_pylist(prediction_rows(bridge, task.runs[0]), schema=SCHEMAS["predictions"]),
              "logit_lens": pa.Table.from_pylist(lens.rows(), schema=SCHEMAS["logit_lens"]),
              "contrast": contrast_table(contrast)}
    if gap == 0 or not math.isfinite(gap):
        log.warning("clean and corrupted give the same mean LD (%s): nothing to patch", ld_clean)
        tables |= {name: SCHEMAS[name].empty_table() for name in ("layers", "joint", *COMPONENT_TABLES)}
        tables["neurons"] = TASK_NEURONS.empty_table()
        return ExperimentResult(tables, dict(
            base, prompt_check=f"{check}; clean and corrupted give the same mean LD: nothing to patch",
            pairs=pair_rows(cfg, task, checks), neuron_layers=[], top_neurons=[], n_exact=0, n_standout=0,
            contrast_spearman=None, contrast_rank_of_best_exact=None))
    model = PairsModel(bridge, task)

    layer_rows, mlp_last = [], np.zeros(n_layers)
    for component in P.COMPONENTS:
        lds = layer_position_lds(model, task, component, batch_size=pc.batch_size)  # [L, T, P]
        agg = task.scores(lds.flatten(0, 1)).aggregate.view(n_layers, -1)
        if component == "mlp_out":
            mlp_last = agg[:, -1].numpy()
        layer_rows += [dict(component=component, layer=l, pos=p, token_str=clean_str[p], score=float(agg[l, p]))
                       for l in range(n_layers) for p in range(first.n_pos)]

    per_pair_attr = torch.stack([P.attribution_scores(r).double() for r in task.runs])  # [P, L, d_mlp]
    attribution = task.combine(per_pair_attr)
    attr_agree = agreement(per_pair_attr.flatten(1).T, attribution.flatten()).view(n_layers, d_mlp)
    chosen, how = choose_layers(cfg.neuron_layers, pc, mlp_last, (lens.mlp_jumps("post") / gap).numpy())
    exact, std, agree = (torch.full((n_layers, d_mlp), float("nan"), dtype=torch.float64) for _ in range(3))
    best_per_pair = {}

    def put(layer: int, neurons: Sequence[int] | None) -> None:
        s = task.scores(neuron_lds(model, task, layer, neurons, batch_size=pc.batch_size))
        idx = slice(None) if neurons is None else list(neurons)
        exact[layer, idx], std[layer, idx], agree[layer, idx] = s.aggregate, s.std, s.agreement
        for j, n in enumerate(range(d_mlp) if neurons is None else neurons):
            best_per_pair[(layer, n)] = s.per_pair[j]

    for layer in chosen:
        put(layer, None)
    top = torch.argsort(attribution.flatten().abs(), descending=True, stable=True)[: pc.attribution_exact_top]
    extra = [int(i) for i in top if int(i) // d_mlp not in chosen]
    for layer in sorted({i // d_mlp for i in extra}):
        put(layer, [i % d_mlp for i in extra if i // d_mlp == layer])

    score = torch.where(exact.isnan(), attribution, exact)
    z = robust_z(score)
    consistent = torch.where(exact.isnan(), attr_agree, agree) >= cfg.min_agreement
    standout = standout_mask(score, z, pc.standout_z, pc.standout_min_score) & consistent
    columns = dict(layer=np.repeat(np.arange(n_layers), d_mlp), neuron=np.tile(np.arange(d_mlp), n_layers),
                   attribution=attribution.flatten().numpy(), standout_z=z.flatten().numpy(),
                   standout=standout.flatten().numpy())
    for name, values in (("exact", exact), ("exact_std", std), ("agreement", agree)):
        v = values.flatten().numpy()
        columns[name] = pa.array(v, mask=np.isnan(v))
    neurons_table = pa.table({f.name: columns[f.name] for f in TASK_NEURONS}).cast(TASK_NEURONS)

    joint = []
    for layer in chosen:
        for side, order in joint_k_groups(exact[layer], pc.joint_k):
            groups = [g for _, g in order]
            agg = task.scores(joint_lds(model, task, layer, groups, batch_size=pc.batch_size)).aggregate
            joint += [dict(layer=layer, side=side, k=k, score=float(s)) for (k, _), s in zip(order, agg)]

    best = torch.argsort(torch.nan_to_num(exact.flatten(), nan=-math.inf), descending=True)[:TOP_NEURONS]
    b0 = int(best[0])
    engine_error = check_engine(bridge, model, task, b0 // d_mlp, b0 % d_mlp)
    tolerance = P.ENGINE_TOLERANCE[body_dtype(bridge)]
    if engine_error > tolerance:
        raise RuntimeError(f"fast patching disagrees with a full hooked forward by {engine_error:.3g} "
                           f"(relative LD; tolerance {tolerance}): refusing to write wrong scores")
    rule = standout_rule(pc.standout_z, pc.standout_min_score) + f" and sign agreement >= {cfg.min_agreement:g}"
    flat = dict(exact=exact.flatten(), std=std.flatten(), agree=agree.flatten(), attr=attribution.flatten(),
                z=z.flatten())
    summary = dict(
        base, pairs=pair_rows(cfg, task, checks), neuron_layers=chosen, neuron_layers_how=how,
        top_neurons=[dict(name=flat_name(int(i), d_mlp), layer=int(i) // d_mlp, neuron=int(i) % d_mlp,
                          exact=float(flat["exact"][i]), exact_std=float(flat["std"][i]),
                          agreement=float(flat["agree"][i]), attribution=float(flat["attr"][i]),
                          standout_z=float(flat["z"][i]),
                          per_pair=[float(x) for x in best_per_pair[(int(i) // d_mlp, int(i) % d_mlp)]])
                     for i in best if not flat["exact"][i].isnan()],
        n_exact=int((~exact.isnan()).sum()), n_standout=int(standout.sum()), standout_rule=rule,
        engine_check=engine_error, **contrast_summary(contrast, exact.float(), chosen),
    )
    tables |= {
        "layers": pa.Table.from_pylist(layer_rows, schema=SCHEMAS["layers"]),
        "neurons": neurons_table,
        "joint": pa.Table.from_pylist(joint, schema=SCHEMAS["joint"]),
    }
    components, summary["top_heads"] = component_tables(bridge, task, model, exact, clean_str, pc, cfg.min_agreement)
    return ExperimentResult(tables | components, summary)

