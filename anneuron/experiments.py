"""One prompt experiment end to end (docs/science.md, docs/contracts.md), and what stands out across experiments.

For a clean/corrupted pair: the top next tokens of both prompts, whether each prefers the right token, the logit
lens, layer × position patching of resid_pre / attn_out / mlp_out, attribution patching of every neuron, exact
patching of every neuron of the chosen layers and of the top neurons by |attribution| wherever they are, each
neuron's robust z within its layer, and joint patching of each chosen layer's top-k neurons (both signs).

`neuron_layers: auto` chooses the layers to patch neuron by neuron: with `auto_method: mlp_out` those whose mlp_out
at the last position restores at least `auto_threshold`; with `logit_lens` those whose MLP raises the clean
prompt's logit lens (`post` convention) by at least `auto_threshold` × (LD_clean − LD_corrupted). Best first, at
most `max_auto_layers`; when no layer passes, the single best one (the summary says so).
"""

from __future__ import annotations

import json
import logging
import math
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import torch

from anneuron import patching as P
from anneuron.io import write_json, write_parquet
from anneuron.logit_lens import logit_lens
from anneuron.tokenizer import single_token

log = logging.getLogger(__name__)

TOP_K_PREDICTIONS = 10
TOP_NEURONS = 10  # listed in summary.json
MAD_TO_SD = 1.4826  # MAD of a normal distribution × this = its standard deviation
TABLES = ("predictions", "logit_lens", "layers", "neurons", "joint")

SCHEMAS = {
    "predictions": pa.schema([("prompt", pa.string()), ("rank", pa.int32()), ("token_id", pa.int32()),
                              ("token_str", pa.string()), ("prob", pa.float64()), ("logit", pa.float64())]),
    "logit_lens": pa.schema([("index", pa.int32()), ("label", pa.string()), ("convention", pa.string()),
                             ("logit_diff", pa.float64())]),
    "layers": pa.schema([("component", pa.string()), ("layer", pa.int32()), ("pos", pa.int32()),
                         ("token_str", pa.string()), ("score", pa.float64())]),
    "neurons": pa.schema([("layer", pa.int32()), ("neuron", pa.int32()), ("attribution", pa.float64()),
                          ("exact", pa.float64()), ("standout_z", pa.float64()), ("standout", pa.bool_())]),
    "joint": pa.schema([("layer", pa.int32()), ("side", pa.string()), ("k", pa.int32()), ("score", pa.float64())]),
    "summary": pa.schema([("layer", pa.int32()), ("neuron", pa.int32()), ("experiments", pa.list_(pa.string())),
                          ("n_experiments", pa.int32()), ("max_exact", pa.float64()), ("mean_z", pa.float64())]),
}


@dataclass(frozen=True)
class PatchingConfig:
    """The `patching:` config keys (docs/config.md; defaults in the schema)."""

    auto_threshold: float = 0.2
    auto_method: str = "mlp_out"
    max_auto_layers: int = 2
    attribution_exact_top: int = 50
    standout_z: float = 8.0
    standout_min_score: float = 0.05
    batch_size: int = 64
    joint_k: tuple[int, ...] = (1, 2, 5, 10, 20, 50)

    @classmethod
    def from_config(cls, cfg: dict) -> "PatchingConfig":
        known = {k: v for k, v in cfg.items() if k in cls.__dataclass_fields__}
        if "joint_k" in known:
            known["joint_k"] = tuple(known["joint_k"])
        return cls(**known)


@dataclass
class ExperimentResult:
    tables: dict[str, pa.Table]
    summary: dict = field(default_factory=dict)

    def write(self, out_dir: str | Path) -> None:
        out = Path(out_dir)
        for name in TABLES:
            write_parquet(out / f"{name}.parquet", self.tables[name])
        write_json(out / "summary.json", self.summary)


def make_pair(bridge, exp: dict) -> P.PromptPair:
    """Tokenize (BOS first) and check what the config check already checked, for callers outside the workflow."""
    tok = bridge.tokenizer
    ids = {}
    for key in ("answer", "wrong"):
        ids[key] = single_token(tok, exp[key])
        if ids[key] is None:
            raise ValueError(f"experiment: {key} {exp[key]!r} is not a single token")
    clean, corrupted = bridge.to_tokens(exp["clean"]), bridge.to_tokens(exp["corrupted"])
    return P.PromptPair(clean, corrupted, ids["answer"], ids["wrong"])


MIN_LD_GAP = 0.5  # logits; below it the clean and corrupted runs barely differ and patch scores mean nothing


def prompt_check(runs: P.PairRuns, answer: str, wrong: str) -> str:
    """"ok" when the clean prompt prefers the answer and the corrupted one the wrong token; else what is wrong."""
    problems = []
    if not runs.ld_clean > 0:
        problems.append(f"clean prompt prefers {wrong!r} over {answer!r} (LD {runs.ld_clean:.3g})")
    if not runs.ld_corrupted < 0:
        problems.append(f"corrupted prompt prefers {answer!r} over {wrong!r} (LD {runs.ld_corrupted:.3g})")
    gap = runs.ld_clean - runs.ld_corrupted
    if abs(gap) < MIN_LD_GAP:
        problems.append(f"LD_clean - LD_corrupted is only {gap:.3g}: every patch score divides by it, so scores "
                        "are unstable")
    return "ok" if not problems else "; ".join(problems)


def prediction_rows(bridge, runs: P.PairRuns, k: int = TOP_K_PREDICTIONS) -> list[dict]:
    rows = []
    for name, run in (("clean", runs.clean), ("corrupted", runs.corrupted)):
        logits = run.logits.float()
        probs = logits.softmax(-1)
        top = probs.topk(k)
        for rank, (p, t) in enumerate(zip(top.values.tolist(), top.indices.tolist()), start=1):
            rows.append(dict(prompt=name, rank=rank, token_id=t, token_str=bridge.tokenizer.decode([t]), prob=p,
                             logit=float(logits[t])))
    return rows


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


def choose_layers(exp: dict, cfg: PatchingConfig, mlp_last: np.ndarray, lens_jump: np.ndarray) -> tuple[list[int], str]:
    """The neuron layers of an experiment and how they were chosen (see the module docstring)."""
    n_layers = len(mlp_last)
    requested = exp.get("neuron_layers", "auto")
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


def joint_rows(model: P.SuffixModel, runs: P.PairRuns, layer: int, exact: torch.Tensor, ks: tuple[int, ...],
               batch_size: int) -> list[dict]:
    """Top-k neurons of one layer by exact score patched together: `answer` side = the k highest scores,
    `wrong` side = the k lowest (the neurons that push toward the wrong token)."""
    ks = sorted({min(k, len(exact)) for k in ks})
    rows = []
    for side, order in (("answer", torch.argsort(exact, descending=True, stable=True)),
                        ("wrong", torch.argsort(exact, stable=True))):
        groups = [order[:k].tolist() for k in ks]
        scores = P.joint_scores(model, runs, layer, groups, batch_size)
        rows += [dict(layer=layer, side=side, k=k, score=float(s)) for k, s in zip(ks, scores)]
    return rows


def run_experiment(bridge, exp: dict, cfg: PatchingConfig) -> ExperimentResult:
    """Everything of one experiment; `exp` is one entry of the `experiments:` config."""
    t0 = time.perf_counter()
    pair = make_pair(bridge, exp)
    runs = P.run_pair(bridge, pair)
    gap = runs.ld_clean - runs.ld_corrupted
    check = prompt_check(runs, exp["answer"], exp["wrong"])
    if check != "ok":
        log.warning("prompt check: %s", check)
    tok = bridge.tokenizer
    clean_str = [tok.decode([t]) for t in pair.clean[0].tolist()]
    corrupted_str = [tok.decode([t]) for t in pair.corrupted[0].tolist()]
    n_layers, d_mlp = bridge.cfg.n_layers, bridge.cfg.d_mlp

    lens = logit_lens(bridge, runs.clean.cache, pair.answer, pair.wrong)
    base = dict(ld_clean=runs.ld_clean, ld_corrupted=runs.ld_corrupted, prompt_check=check, answer=exp["answer"],
                wrong=exp["wrong"], answer_id=pair.answer, wrong_id=pair.wrong, tokens_clean=clean_str,
                tokens_corrupted=corrupted_str, first_diff=pair.start)
    tables = {"predictions": pa.Table.from_pylist(prediction_rows(bridge, runs), schema=SCHEMAS["predictions"]),
              "logit_lens": pa.Table.from_pylist(lens.rows(), schema=SCHEMAS["logit_lens"])}
    if gap == 0 or not math.isfinite(gap):
        # e.g. a default GPT-2 experiment on a model that never learnt its tokens: report it, never break the run
        log.warning("clean and corrupted give the same LD (%s): nothing to patch", runs.ld_clean)
        tables |= {name: SCHEMAS[name].empty_table() for name in ("layers", "neurons", "joint")}
        return ExperimentResult(tables, dict(
            base, prompt_check=f"{check}; clean and corrupted give the same LD: nothing to patch", neuron_layers=[],
            top_neurons=[], n_exact=0, n_standout=0))
    model = P.SuffixModel(bridge, runs.corrupted, pair.start, pair.answer, pair.wrong)

    layer_rows, by_component = [], {}
    for component in P.COMPONENTS:
        scores = P.layer_position_scores(model, runs, component, cfg.batch_size)
        by_component[component] = scores
        layer_rows += [dict(component=component, layer=l, pos=p, token_str=clean_str[p], score=float(scores[l, p]))
                       for l in range(n_layers) for p in range(pair.n_pos)]
    t_layers = time.perf_counter()

    attribution = P.attribution_scores(runs)  # [L, d_mlp]
    chosen, how = choose_layers(exp, cfg, by_component["mlp_out"][:, -1].numpy(),
                                (lens.mlp_jumps("post") / gap).numpy())
    exact = torch.full((n_layers, d_mlp), float("nan"))
    for layer in chosen:
        exact[layer] = P.neuron_scores(model, runs, layer, batch_size=cfg.batch_size)
    top = torch.argsort(attribution.flatten().abs(), descending=True, stable=True)[: cfg.attribution_exact_top]
    extra = [int(i) for i in top if int(i) // d_mlp not in chosen]
    for layer in sorted({i // d_mlp for i in extra}):
        neurons = [i % d_mlp for i in extra if i // d_mlp == layer]
        exact[layer, neurons] = P.neuron_scores(model, runs, layer, neurons, cfg.batch_size)
    t_neurons = time.perf_counter()

    score = torch.where(exact.isnan(), attribution, exact)
    z = robust_z(score)
    # z alone flags neurons that are far from a very tight bulk yet move LD by ~1%: require a real effect too
    standout = (z > cfg.standout_z) & (score.abs() >= cfg.standout_min_score)
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
    tolerance = 1e-4 if next(bridge.parameters()).dtype == torch.float32 else 5e-2
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
        top_neurons=[dict(name=f"L{int(i) // d_mlp}N{int(i) % d_mlp}", layer=int(i) // d_mlp,
                          neuron=int(i) % d_mlp, exact=float(exact.flatten()[i]),
                          attribution=float(attribution.flatten()[i]), standout_z=float(z.flatten()[i]))
                     for i in best if not exact.flatten()[i].isnan()],
        n_exact=int((~exact.isnan()).sum()), n_standout=int(standout.sum()),
        standout_rule=f"robust z > {cfg.standout_z:g} and |score| >= {cfg.standout_min_score:g}",
        engine_check=engine_error,
        seconds=dict(layers=round(t_layers - t0, 3), neurons=round(t_neurons - t_layers, 3),
                     total=round(time.perf_counter() - t0, 3)),
    )
    tables |= {
        "layers": pa.Table.from_pylist(layer_rows, schema=SCHEMAS["layers"]),
        "neurons": pa.table(neuron_rows).cast(SCHEMAS["neurons"]),
        "joint": pa.Table.from_pylist(joint, schema=SCHEMAS["joint"]),
    }
    return ExperimentResult(tables, summary)


def stable_experiments(summary_files: dict[str, str | Path]) -> list[str]:
    """The experiments (name -> summary.json) whose LD gap is at least MIN_LD_GAP: only their patch scores, which
    divide by that gap, may nominate neurons across experiments (a defaults prompt on a model that never learnt
    its tokens otherwise contributes scores of ±3 out of noise)."""
    out = []
    for exp, path in summary_files.items():
        s = json.loads(Path(path).read_text())
        gap = s["ld_clean"] - s["ld_corrupted"]
        if math.isfinite(gap) and abs(gap) >= MIN_LD_GAP:
            out.append(exp)
        else:
            log.info("%s: LD gap %.3g is not at least %g: its standouts are not counted", exp, gap, MIN_LD_GAP)
    return out


def summarize_experiments(neuron_files: dict[str, str | Path]) -> pa.Table:
    """Neurons standing out in at least two experiments (experiment name -> its neurons.parquet; pass only the
    stable_experiments), most experiments first, then highest mean z."""
    seen: dict[tuple[int, int], list[tuple[str, float | None, float]]] = {}
    for exp, path in sorted(neuron_files.items()):
        t = pq.read_table(path, columns=["layer", "neuron", "exact", "standout_z", "standout"],
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
    return pa.Table.from_pylist(rows, schema=SCHEMAS["summary"])


def write_summary(neuron_files: dict[str, str | Path], out: str | Path) -> None:
    write_parquet(out, summarize_experiments(neuron_files))
