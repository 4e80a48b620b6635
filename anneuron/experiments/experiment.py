"""One prompt experiment end to end (docs/science.md; its outputs: docs/contracts.md).

For a clean/corrupted pair: the top next tokens of both prompts, whether each prefers the right token, the logit
lens, layer × position patching of resid_pre / attn_out / mlp_out, attribution patching of every neuron, exact
patching of every neuron of the chosen layers and of the top neurons by |attribution| wherever they are, each
neuron's robust z within its layer, and joint patching of each chosen layer's top-k neurons (both signs); then the
heads (anneuron.experiments.heads) and every neuron's direct effect (anneuron.experiments.direct_effect). A task
(many pairs): anneuron.experiments.task_run.

`neuron_layers: auto` chooses the layers to patch neuron by neuron: with `auto_method: mlp_out` those whose mlp_out
at the last position restores at least `auto_threshold`; with `logit_lens` those whose MLP raises the clean
prompt's logit lens (`post` convention) by at least `auto_threshold` × (LD_clean − LD_corrupted). Best first, at
most `max_auto_layers`; when no layer passes, the single best one (the summary says so).
"""

from __future__ import annotations

import logging
import math
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Mapping

import numpy as np
import pyarrow as pa
import torch

from anneuron.contracts import EXPERIMENT_SCHEMAS as SCHEMAS
from anneuron.contracts import EXPERIMENT_TABLES, flat_name
from anneuron.experiments import patching as P
from anneuron.experiments.contrast import contrast_scores, contrast_summary, contrast_table
from anneuron.experiments.direct_effect import direct_table
from anneuron.experiments.heads import head_tables
from anneuron.experiments.logit_lens import logit_lens
from anneuron.experiments.prompts import make_pair, prediction_rows, prompt_check
from anneuron.experiments.standouts import robust_z, standout_mask, standout_rule
from anneuron.experiments.tasks import PairsModel, TaskRuns
from anneuron.io import write_json, write_parquet
from anneuron.models import body_dtype
from anneuron.stage_config import ExperimentConfig, PatchingConfig
from anneuron.weights.congruence import weights_of

log = logging.getLogger(__name__)

TOP_NEURONS = 10  # listed in summary.json


@dataclass
class ExperimentResult:
    tables: dict[str, pa.Table]  # EXPERIMENT_TABLES -> table
    summary: dict = field(default_factory=dict)

    def write(self, files: Mapping[str, str | Path]) -> None:
        """Each table and the summary to the path the rule declares for it (name -> path; for a plain folder:
        anneuron.contracts.experiment_files)."""
        for name in EXPERIMENT_TABLES:
            write_parquet(files[name], self.tables[name])
        write_json(files["summary"], self.summary)


def choose_layers(requested: str | tuple[int, ...], cfg: PatchingConfig, mlp_last: np.ndarray,
                  lens_jump: np.ndarray) -> tuple[list[int], str]:
    """The neuron layers of an experiment (`neuron_layers`: "auto" or a list) and how they were chosen (see the
    module docstring). mlp_last, lens_jump: [n_layers]."""
    n_layers = len(mlp_last)
    if requested != "auto":
        bad = [l for l in requested if not 0 <= l < n_layers]
        if bad:
            raise ValueError(f"neuron_layers {bad} out of range for a {n_layers}-layer model")
        return sorted(set(requested)), "configured"
    measure = mlp_last if cfg.auto_method == "mlp_out" else lens_jump
    measure = np.nan_to_num(measure, nan=-np.inf)
    order = [int(l) for l in np.argsort(-measure, kind="stable")]
    chosen = [l for l in order if measure[l] >= cfg.auto_threshold][: cfg.max_auto_layers]
    how = f"auto ({cfg.auto_method} >= {cfg.auto_threshold})"
    if not chosen:
        chosen = order[:1]
        how = f"auto ({cfg.auto_method}): no layer reached {cfg.auto_threshold}; took the best, L{chosen[0]}"
    return chosen, how


def joint_k_groups(exact: torch.Tensor, ks: tuple[int, ...]) -> list[tuple[str, list[tuple[int, list[int]]]]]:
    """The groups joint patching patches, per side: `answer` = the k highest exact scores of the layer, `wrong` =
    the k lowest (the neurons that push toward the wrong token); [(side, [(k, neurons), ...]), ...]."""
    ks = sorted({min(k, len(exact)) for k in ks})
    return [(side, [(k, order[:k].tolist()) for k in ks])
            for side, order in (("answer", torch.argsort(exact, descending=True, stable=True)),
                                ("wrong", torch.argsort(exact, stable=True)))]


def joint_rows(model: P.SuffixModel, runs: P.PairRuns, layer: int, exact: torch.Tensor, ks: tuple[int, ...],
               batch_size: int) -> list[dict]:
    """Top-k neurons of one layer by exact score patched together (joint_k_groups)."""
    rows = []
    for side, groups in joint_k_groups(exact, ks):
        scores = P.joint_scores(model, runs, layer, [g for _, g in groups], batch_size=batch_size)
        rows += [dict(layer=layer, side=side, k=k, score=float(s)) for (k, _), s in zip(groups, scores)]
    return rows


COMPONENT_TABLES = ("heads", "head_positions", "patterns", "direct")  # beyond the neurons: heads.py, direct_effect.py


def component_tables(bridge, task: TaskRuns, model: PairsModel, exact: torch.Tensor, clean_str: list[str],
                     cfg: PatchingConfig, min_agreement: float) -> tuple[dict[str, pa.Table], list[dict]]:
    """The heads' tables and the neurons' direct effects, for an experiment (one pair) or a task, and the top heads
    (heads.head_tables); refuses to write head scores the hooked reference disagrees with."""
    tables, error, top_heads = head_tables(bridge, task, model, clean_str, cfg, min_agreement)
    tolerance = P.ENGINE_TOLERANCE[body_dtype(bridge)]
    if error > tolerance:
        raise RuntimeError(f"head patching disagrees with a full hooked forward by {error:.3g} (relative LD; "
                           f"tolerance {tolerance}): refusing to write wrong scores")
    log.info("heads: engine check %.3g", error)
    return tables | {"direct": direct_table(bridge, task, model, exact)}, top_heads


def run_experiment(bridge, exp: ExperimentConfig) -> ExperimentResult:
    """Everything of one experiment."""
    t0 = time.perf_counter()
    cfg = exp.patching
    pair = make_pair(bridge, exp.clean, exp.corrupted, exp.answer, exp.wrong)
    runs = P.run_pair(bridge, pair)
    gap = runs.ld_clean - runs.ld_corrupted
    check = prompt_check(runs, exp.answer, exp.wrong)
    if check != "ok":
        log.warning("prompt check: %s", check)
    tok = bridge.tokenizer
    clean_str = [tok.decode([t]) for t in pair.clean[0].tolist()]
    corrupted_str = [tok.decode([t]) for t in pair.corrupted[0].tolist()]
    n_layers, d_mlp = bridge.cfg.n_layers, bridge.cfg.d_mlp

    lens = logit_lens(bridge, runs.clean.cache, pair.answer, pair.wrong)
    direction, _ = P.unembed_direction(bridge, pair.answer, pair.wrong)
    contrast = contrast_scores(weights_of(bridge).w_out, direction)  # [L, d_mlp]: needs no patching
    base = dict(ld_clean=runs.ld_clean, ld_corrupted=runs.ld_corrupted, prompt_check=check, answer=exp.answer,
                wrong=exp.wrong, answer_id=pair.answer, wrong_id=pair.wrong, tokens_clean=clean_str,
                tokens_corrupted=corrupted_str, first_diff=pair.start)
    tables = {"predictions": pa.Table.from_pylist(prediction_rows(bridge, runs), schema=SCHEMAS["predictions"]),
              "logit_lens": pa.Table.from_pylist(lens.rows(), schema=SCHEMAS["logit_lens"]),
              "contrast": contrast_table(contrast)}
    if gap == 0 or not math.isfinite(gap):
        # e.g. a default GPT-2 experiment on a model that never learnt its tokens: report it, never break the run
        log.warning("clean and corrupted give the same LD (%s): nothing to patch", runs.ld_clean)
        tables |= {name: SCHEMAS[name].empty_table() for name in ("layers", "neurons", "joint", *COMPONENT_TABLES)}
        return ExperimentResult(tables, dict(
            base, prompt_check=f"{check}; clean and corrupted give the same LD: nothing to patch", neuron_layers=[],
            top_neurons=[], n_exact=0, n_standout=0, contrast_spearman=None, contrast_rank_of_best_exact=None))
    model = P.SuffixModel(bridge, runs.corrupted, pair.start, pair.answer, pair.wrong)

    layer_rows, by_component = [], {}
    for component in P.COMPONENTS:
        scores = P.layer_position_scores(model, runs, component, batch_size=cfg.batch_size)
        by_component[component] = scores
        layer_rows += [dict(component=component, layer=l, pos=p, token_str=clean_str[p], score=float(scores[l, p]))
                       for l in range(n_layers) for p in range(pair.n_pos)]
    t_layers = time.perf_counter()

    attribution = P.attribution_scores(runs)  # [L, d_mlp]
    chosen, how = choose_layers(exp.neuron_layers, cfg, by_component["mlp_out"][:, -1].numpy(),
                                (lens.mlp_jumps("post") / gap).numpy())
    exact = torch.full((n_layers, d_mlp), float("nan"))
    for layer in chosen:
        exact[layer] = P.neuron_scores(model, runs, layer, batch_size=cfg.batch_size)
    top = torch.argsort(attribution.flatten().abs(), descending=True, stable=True)[: cfg.attribution_exact_top]
    extra = [int(i) for i in top if int(i) // d_mlp not in chosen]
    for layer in sorted({i // d_mlp for i in extra}):
        neurons = [i % d_mlp for i in extra if i // d_mlp == layer]
        exact[layer, neurons] = P.neuron_scores(model, runs, layer, neurons, batch_size=cfg.batch_size)
    t_neurons = time.perf_counter()

    score = torch.where(exact.isnan(), attribution, exact)
    z = robust_z(score)
    standout = standout_mask(score, z, cfg.standout_z, cfg.standout_min_score)
    exact_np = exact.flatten().double().numpy()
    neuron_rows = dict(
        layer=np.repeat(np.arange(n_layers), d_mlp), neuron=np.tile(np.arange(d_mlp), n_layers),
        attribution=attribution.flatten().double().numpy(), exact=pa.array(exact_np, mask=np.isnan(exact_np)),
        standout_z=z.flatten().numpy(), standout=standout.flatten().numpy(),
    )
    joint = []
    for layer in chosen:
        joint += joint_rows(model, runs, layer, exact[layer], cfg.joint_k, cfg.batch_size)

    best = torch.argsort(torch.nan_to_num(exact.flatten(), nan=-math.inf), descending=True)[:TOP_NEURONS]
    engine_error = P.check_engine(bridge, model, runs, int(best[0]) // d_mlp, int(best[0]) % d_mlp)
    # relative to the LD scale; why each: anneuron.experiments.patching
    tolerance = P.ENGINE_TOLERANCE[body_dtype(bridge)]
    if engine_error > tolerance:
        raise RuntimeError(f"fast patching disagrees with a full hooked forward by {engine_error:.3g} "
                           f"(relative LD; tolerance {tolerance}): refusing to write wrong scores")
    probs = {name: run.logits.float().softmax(-1) for name, run in (("clean", runs.clean),
                                                                  ("corrupted", runs.corrupted))}
    summary = dict(
        base, neuron_layers=chosen, neuron_layers_how=how,
        prob_answer_clean=float(probs["clean"][pair.answer]), prob_wrong_clean=float(probs["clean"][pair.wrong]),
        prob_answer_corrupted=float(probs["corrupted"][pair.answer]),
        prob_wrong_corrupted=float(probs["corrupted"][pair.wrong]),
        best_mlp_out_last=dict(layer=int(by_component["mlp_out"][:, -1].argmax()),
                               score=float(by_component["mlp_out"][:, -1].max())),
        top_neurons=[dict(name=flat_name(int(i), d_mlp), layer=int(i) // d_mlp,
                          neuron=int(i) % d_mlp, exact=float(exact.flatten()[i]),
                          attribution=float(attribution.flatten()[i]), standout_z=float(z.flatten()[i]))
                     for i in best if not exact.flatten()[i].isnan()],
        n_exact=int((~exact.isnan()).sum()), n_standout=int(standout.sum()),
        standout_rule=standout_rule(cfg.standout_z, cfg.standout_min_score),
        engine_check=engine_error,
        **contrast_summary(contrast, exact, chosen),
    )
    # wall times go to the log, not the summary: a rerun must give byte-identical outputs
    log.info("seconds: layers %.3f, neurons %.3f, total %.3f", t_layers - t0, t_neurons - t_layers,
             time.perf_counter() - t0)
    tables |= {
        "layers": pa.Table.from_pylist(layer_rows, schema=SCHEMAS["layers"]),
        "neurons": pa.table(neuron_rows).cast(SCHEMAS["neurons"]),
        "joint": pa.Table.from_pylist(joint, schema=SCHEMAS["joint"]),
    }
    task = TaskRuns([runs])  # one pair: the heads and direct effects share the tasks' code (their tables are new)
    tables |= component_tables(bridge, task, PairsModel(bridge, task), exact, clean_str, cfg, min_agreement=0.0)[0]
    return ExperimentResult(tables, summary)


