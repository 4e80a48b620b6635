"""Figures of one prompt experiment (docs/paper.md: results/{model}/figures/experiments/{exp}/): the logit lens, the
layer × position patching heatmaps, each chosen layer's neuron scores, attribution vs exact, and joint patching; the
heads and the direct effects (anneuron.experiments.head_figures)."""

from __future__ import annotations

import textwrap
from pathlib import Path

import matplotlib.pyplot as plt
import numpy as np
import polars as pl
from matplotlib.colors import TwoSlopeNorm

from anneuron.contracts import MIN_LD_GAP, experiment_files, neuron_name
from anneuron.experiments.head_figures import direct_figure, head_positions_figure, heads_figure, patterns_figure
from anneuron.figures import style
from anneuron.io import REBUILD, read_json, read_parquet, save_figure

COMPONENT_TITLES = {"resid_pre": "residual stream (resid_pre)", "attn_out": "attention output (attn_out)",
                    "mlp_out": "MLP output (mlp_out)"}
MAX_LABELS = 8  # standout neurons named on a figure


def _read(path: str | Path) -> pl.DataFrame:
    """An experiment table, NaN read as null: a missing score then drops out of filters and sorts, where polars
    would rank a NaN above every number."""
    return pl.from_arrow(read_parquet(path)).fill_nan(None)


def _abs_max(values: pl.Series) -> float:
    """The largest |value| (NaN when there is none)."""
    m = values.abs().max()
    return float("nan") if m is None else float(m)


def _tok(s: str) -> str:
    """A token as it reads on an axis: visible leading spaces, no newlines."""
    return s.replace("\n", "\\n").replace(" ", "\u2423") if s.strip() == "" else s.replace("\n", "\\n")


def _pair_title(exp: str, summary: dict) -> str:
    if "n_pairs" in summary:  # a task: its first pair's tokens, every score the aggregate over its pairs
        return f"{exp}: task of {summary['n_pairs']} pairs (first: {summary['answer']!r} vs {summary['wrong']!r})"
    return f"{exp}: {summary['answer']!r} vs {summary['wrong']!r}"


def _lens_block(before: str, after: str) -> str:
    """The block between two logit-lens labels: `{l}_pre` -> `{l}_mid` is attention l, `{l}_mid` -> the next
    `_pre` (or `final_post`) is MLP l."""
    layer, _, point = before.partition("_")
    return f"jump across {'attention' if point == 'pre' else 'MLP'} {layer}" if layer.isdigit() else \
        f"{before} -> {after}"


def logit_lens_figure(lens: pl.DataFrame, summary: dict, exp: str):
    """LD read off the residual stream at each point, both LayerNorm conventions."""
    style()
    by = {conv: lens.filter(pl.col("convention") == conv).sort("index") for conv in ("post", "recomputed")}
    labels = by["post"]["label"].to_list()
    fig, ax = plt.subplots(figsize=(max(6.0, 0.16 * len(labels) + 3), 4.2))
    for conv, colour, desc in (("post", "C0", "final LN scale of the last residual (the post's)"),
                               ("recomputed", "C1", "each entry normalised by its own LN")):
        t = by[conv]
        ax.plot(t["index"].to_numpy(), t["logit_diff"].to_numpy(), "o-", ms=3, color=colour, label=f"{conv}: {desc}")
    ax.axhline(0, color="0.3", lw=0.8)
    post = by["post"]["logit_diff"].to_numpy()
    if len(post) > 1:  # name the largest step: which attention or MLP block writes the answer
        j = int(np.argmax(np.abs(np.diff(post))))
        ax.annotate(f"{_lens_block(labels[j], labels[j + 1])}: {post[j + 1] - post[j]:+.2f}",
                    ((j + 0.5), (post[j] + post[j + 1]) / 2), xytext=(-8, 0), textcoords="offset points",
                    ha="right", va="center", fontsize=9, color="C0")
    step = 1 if len(labels) <= 30 else 2
    ax.set_xticks(range(0, len(labels), step))
    ax.set_xticklabels(labels[::step], rotation=0 if len(labels) <= 12 else 90, fontsize=8)
    ax.set_xlim(-0.5, len(labels) - 0.5)
    ax.set_ylabel(f"logit({summary['answer']!r}) − logit({summary['wrong']!r})")
    ax.set_title(f"Logit lens, clean prompt, last position — {_pair_title(exp, summary)}\n"
                 f"LD_clean = {summary['ld_clean']:.3f} (b_U excluded from the lens)", fontsize=10)
    ax.legend(fontsize=8, loc="upper left")
    return fig


def layer_patching_figure(layers: pl.DataFrame, component: str, summary: dict, exp: str):
    """Layer × position heatmap of one component's patch scores, token labels on the x axis."""
    style()
    t = layers.filter(pl.col("component") == component).sort("pos")  # columns in position order
    grid = t.pivot("pos", index="layer", values="score").sort("layer").drop("layer").to_numpy()
    n_layers, n_pos = grid.shape
    clean, corrupted = summary["tokens_clean"], summary["tokens_corrupted"]
    ticks = [_tok(c) if c == r else f"{_tok(c)} / {_tok(r)}" for c, r in zip(clean, corrupted)]
    fig, ax = plt.subplots(figsize=(max(5.0, 0.42 * n_pos + 2.5), max(3.0, 0.22 * n_layers + 1.8)))
    # the same ±1 scale for every component (tiny effects stay pale), wider only when scores exceed it
    m = max(1.0, float(np.nanmax(np.abs(grid))) if np.isfinite(grid).any() else 1.0)
    im = ax.imshow(grid, cmap="RdBu", norm=TwoSlopeNorm(0.0, -m, m), aspect="auto", interpolation="nearest")
    ax.grid(False)
    ax.set_xticks(range(n_pos))
    ax.set_xticklabels(ticks, rotation=60, ha="right", fontsize=8)
    for i, (c, r) in enumerate(zip(clean, corrupted)):
        if c != r:
            ax.get_xticklabels()[i].set_fontweight("bold")
    step = 1 if n_layers <= 24 else 2
    ax.set_yticks(range(0, n_layers, step))
    ax.set_ylabel("layer")
    if n_layers * n_pos <= 600:  # small grids: print the scores that matter
        for (l, p), v in np.ndenumerate(grid):
            if np.isfinite(v) and abs(v) >= 0.1:
                ax.text(p, l, f"{v:.2f}", ha="center", va="center", fontsize=7,
                        color="white" if abs(v) > 0.6 * m else "black")
    fig.colorbar(im, ax=ax, label="patch score (1 = clean LD restored)", shrink=0.9)
    ax.set_title(f"Patching {COMPONENT_TITLES[component]} one (layer, position) at a time\n"
                 f"{_pair_title(exp, summary)}; bold: tokens that differ (clean / corrupted)", fontsize=10)
    return fig


def _label_standouts(ax, rows: pl.DataFrame, x: str, y: str, scale: float) -> None:
    """Name the largest standouts, leaving out those too close to the bulk to tell apart at this scale and those
    whose label would sit on an earlier one."""
    rows = rows.filter(pl.col(y).abs() >= 0.1 * scale) if scale > 0 else rows
    ax.get_xlim(), ax.get_ylim()  # settle the autoscaled limits before measuring in axes units
    to_axes = ax.transData + ax.transAxes.inverted()
    placed: list[np.ndarray] = []
    for r in rows.iter_rows(named=True):
        if len(placed) == MAX_LABELS:
            break
        at = to_axes.transform((r[x], r[y]))
        if any(abs(at[0] - q[0]) < 0.22 and abs(at[1] - q[1]) < 0.05 for q in placed):
            continue
        placed.append(at)
        ax.annotate(f"{neuron_name(r['layer'], r['neuron'])} ({r[y]:.3f})", (r[x], r[y]), xytext=(4, 4),
                    textcoords="offset points", fontsize=8)


WRONG_SIDE = 0.1  # a negative score is named when it reaches this fraction of the layer's largest |score|


def _wrong_side(t: pl.DataFrame, col: str, scale: float, n: int = 3) -> pl.DataFrame:
    """The (at most n) most negative scores that are large enough to name: the neurons whose clean value pushes
    the corrupted run further toward the wrong token. Standouts are positive by construction, so these would
    otherwise go unnamed."""
    if not scale > 0:
        return t.clear()
    return t.filter(pl.col(col) <= -WRONG_SIDE * scale).sort(col, maintain_order=True).head(n)


def _by_exact(t: pl.DataFrame) -> pl.DataFrame:
    """Best exact score first (ties in table order, no score last)."""
    return t.sort("exact", descending=True, nulls_last=True, maintain_order=True)


def neuron_figure(neurons: pl.DataFrame, layer: int, summary: dict, exp: str):
    """Exact patch score of every neuron of one layer; standouts (robust z above the threshold) named."""
    style()
    t = neurons.filter(pl.col("layer") == layer)
    fig, ax = plt.subplots(figsize=(8, 4))
    flagged = _by_exact(t.filter(pl.col("standout")))
    rest = t.filter(~pl.col("standout"))
    ax.scatter(rest["neuron"].to_numpy(), rest["exact"].to_numpy(), s=6, color="0.55", lw=0, label="neurons")
    ax.scatter(flagged["neuron"].to_numpy(), flagged["exact"].to_numpy(), s=22, color="C3", lw=0,
               label=f"standout ({summary.get('standout_rule', 'robust z')}): {flagged.height}")
    scale = _abs_max(t["exact"])
    _label_standouts(ax, flagged, "neuron", "exact", scale)
    wrong = _wrong_side(t, "exact", scale)
    if wrong.height:
        ax.scatter(wrong["neuron"].to_numpy(), wrong["exact"].to_numpy(), s=22, color="C0", lw=0,
                   label=f"pushes to {summary['wrong']!r} (score <= {-WRONG_SIDE * scale:.2g})")
        _label_standouts(ax, wrong, "neuron", "exact", scale)
    ax.axhline(0, color="0.3", lw=0.8)
    ax.set_xlabel("neuron")
    ax.set_ylabel("exact patch score")
    ax.set_xlim(-0.01 * t.height, 1.01 * t.height)
    ax.set_title(f"Patching each neuron of layer {layer} alone (hook_post, every position)\n"
                 f"{_pair_title(exp, summary)}", fontsize=10)
    ax.legend(fontsize=8, loc="best")
    return fig


def _layer_colours(layers: list[int]) -> np.ndarray:
    """One viridis colour per layer, stopping short of its pale yellow (unreadable on white)."""
    return plt.get_cmap("viridis")(np.linspace(0, 0.85, max(2, len(layers))))


def _scatter_by_layer(ax, t: pl.DataFrame, layers: list[int], x: str, y: str) -> None:
    """One colour per layer, each labelled with its neuron count."""
    colours = _layer_colours(layers)
    for i, layer in enumerate(layers):
        s = t.filter(pl.col("layer") == layer)
        ax.scatter(s[x].to_numpy(), s[y].to_numpy(), s=10, color=colours[i], lw=0, label=f"layer {layer} ({s.height})")


def _exact_only(neurons: pl.DataFrame) -> tuple[pl.DataFrame, list[int]]:
    """The neurons patched exactly, and their layers in order."""
    t = neurons.filter(pl.col("exact").is_not_null())
    return t, sorted(t["layer"].unique().to_list())


def attribution_figure(neurons: pl.DataFrame, summary: dict, exp: str):
    """Attribution patching (first order, every neuron at once) against exact patching where both exist."""
    style()
    t, layers = _exact_only(neurons)
    fig, ax = plt.subplots(figsize=(5.6, 5))
    _scatter_by_layer(ax, t, layers, "exact", "attribution")
    values = np.append(t.select("exact", "attribution").to_numpy().ravel(), 0.0)  # the diagonal spans 0 too
    lo, hi = float(np.nanmin(values)), float(np.nanmax(values))
    pad = 0.05 * (hi - lo or 1.0)
    ax.plot([lo - pad, hi + pad], [lo - pad, hi + pad], "--", color="0.4", lw=0.8, label="attribution = exact")
    scale = _abs_max(t["attribution"])
    _label_standouts(ax, _by_exact(t.filter(pl.col("standout"))), "exact", "attribution", scale)
    _label_standouts(ax, _wrong_side(t, "exact", _abs_max(t["exact"])), "exact", "attribution", scale)
    ax.set_xlabel("exact patch score")
    ax.set_ylabel("attribution patching estimate")
    ax.set_title(f"Attribution vs exact neuron patching\n{_pair_title(exp, summary)}", fontsize=10)
    ax.legend(fontsize=7, loc="upper left", ncol=1 if len(layers) <= 8 else 2)
    return fig


def joint_figure(joint: pl.DataFrame, summary: dict, exp: str):
    """Patch score of a layer's top-k neurons patched together, for the answer side and the wrong side."""
    style()
    fig, ax = plt.subplots(figsize=(6, 4))
    for i, layer in enumerate(sorted(joint["layer"].unique().to_list())):
        for side, ls, desc in (("answer", "-", "top-k by single score"),
                               ("wrong", "--", f"bottom-k (push to {summary['wrong']!r})")):
            s = joint.filter((pl.col("layer") == layer) & (pl.col("side") == side)).sort("k")
            ax.plot(s["k"].to_numpy(), s["score"].to_numpy(), ls, marker="o", ms=4, color=f"C{i}",
                    label=f"layer {layer}, {desc}")
            for k, score in s.select("k", "score").iter_rows():
                ax.annotate(f"{score:.2f}", (k, score), xytext=(0, 5 if side == "answer" else -11),
                            textcoords="offset points", ha="center", fontsize=7, color=f"C{i}")
    ax.axhline(0, color="0.3", lw=0.8)
    ax.axhline(1, color="0.3", lw=0.8, ls=":")
    ax.margins(y=0.12)  # room for the printed scores
    ax.set_xscale("log")
    ks = sorted(joint["k"].unique().to_list())
    ax.set_xticks(ks)
    ax.set_xticklabels([str(k) for k in ks])
    ax.minorticks_off()
    ax.set_xlabel("k neurons patched together")
    ax.set_ylabel("patch score")
    ax.set_title(f"Joint patching of the top-k neurons of a layer\n{_pair_title(exp, summary)}", fontsize=10)
    ax.legend(fontsize=8, loc="best")
    return fig


def experiment_figures(exp_dir: str | Path, fig_dir: str | Path, exp: str) -> list[Path]:
    """Every figure of one experiment from its tables; returns the PNG paths."""
    files, out = experiment_files(exp_dir), Path(fig_dir)
    summary = read_json(files["summary"], REBUILD)
    read = lambda name: _read(files[name])  # noqa: E731
    layers, neurons = read("layers"), read("neurons")
    figs = {"logit_lens": logit_lens_figure(read("logit_lens"), summary, exp)}
    if not layers.is_empty():  # empty when both prompts give the same LD: nothing was patched (summary.json says so)
        for component in COMPONENT_TITLES:
            figs[f"patch_{component}"] = layer_patching_figure(layers, component, summary, exp)
        for layer in summary["neuron_layers"]:
            figs[f"patch_neurons_L{layer}"] = neuron_figure(neurons, layer, summary, exp)
        figs["attribution_vs_exact"] = attribution_figure(neurons, summary, exp)
        figs["joint"] = joint_figure(read("joint"), summary, exp)
        figs["contrast_vs_exact"] = contrast_figure(read("contrast"), neurons, summary, exp)
        title = _pair_title(exp, summary)
        figs["heads"] = heads_figure(read("heads"), title, f"{summary['standout_rule']}, z over all heads")
        figs["head_positions"] = head_positions_figure(read("head_positions"), title)
        figs["head_patterns"] = patterns_figure(read("patterns"), {"clean": summary["tokens_clean"],
                                                                   "corrupted": summary["tokens_corrupted"]}, title)
        figs["direct_vs_total"] = direct_figure(read("direct"), title)
    if summary["prompt_check"] != "ok":
        for fig in figs.values():
            note = textwrap.fill(f"prompt check: {summary['prompt_check']}", 110)
            fig.text(0.5, 1.0, note, color="C3", fontsize=8, ha="center", va="bottom")
    return [save_figure(fig, out / name)[0] for name, fig in figs.items()]


MAX_SUMMARY_ROWS = 30


def contrast_figure(contrast: pl.DataFrame, neurons: pl.DataFrame, summary: dict, exp: str):
    """Contrast congruence (each neuron's w_out · (u_answer − u_wrong)) against its exact patch score, for every
    neuron patched exactly: does the weight direction predict who restores LD?"""
    style()
    t, layers = _exact_only(neurons)
    t = t.join(contrast.rename({"score": "contrast"}), on=["layer", "neuron"], maintain_order="left")
    fig, ax = plt.subplots(figsize=(6, 4.6))
    _scatter_by_layer(ax, t, layers, "contrast", "exact")
    top = pl.concat([_by_exact(t).head(4), t.sort("rank", maintain_order=True).head(1)])
    for r in top.unique(["layer", "neuron"], keep="first", maintain_order=True).iter_rows(named=True):
        ax.annotate(f"{neuron_name(r['layer'], r['neuron'])} (contrast rank {r['rank']})", (r["contrast"], r["exact"]),
                    xytext=(4, 4), textcoords="offset points", fontsize=7)
    ax.axhline(0, color="0.3", lw=0.8)
    ax.axvline(0, color="0.3", lw=0.8)
    rho = summary.get("contrast_spearman")
    ax.set_xlabel(f"contrast congruence  w_out · (u[{summary['answer']!r}] − u[{summary['wrong']!r}])")
    ax.set_ylabel("exact patch score")
    rho_text = "n/a" if rho is None else f"{rho:.2f}"
    ax.set_title(f"Weights vs patching: Spearman {rho_text} over the patched layers\n{_pair_title(exp, summary)}",
                 fontsize=10)
    ax.legend(fontsize=7, loc="best")
    return fig


def summary_figure(summary: pl.DataFrame, neurons: dict[str, pl.DataFrame], not_counted: set[str] = frozenset(),
                   rule: str | None = None):
    """Neurons standing out in two or more experiments (rows) × every experiment (columns): each cell the neuron's
    exact score there (attribution where it has none, in italics; blank for an experiment with nothing to patch);
    a box around the experiments where it stands out. Experiments in `not_counted` (LD gap too small) are shown
    but nominate no one."""
    style()
    exps = list(neurons)
    rows = summary.head(MAX_SUMMARY_ROWS)
    fig, ax = plt.subplots(figsize=(max(5.0, 0.9 * len(exps) + 2.5), max(2.5, 0.35 * len(rows) + 1.8)))
    ax.grid(False)
    if rows.is_empty():
        ax.axis("off")
        ax.text(0.5, 0.5, "no neuron stands out in two or more experiments", ha="center", va="center")
        ax.set_title("Neurons standing out across experiments", fontsize=10)
        return fig
    grid = np.full((rows.height, len(exps)), np.nan)
    exact = np.zeros_like(grid, dtype=bool)
    rows = rows.to_dicts()
    for j, exp in enumerate(exps):
        scores = {(l, n): (e, a) for l, n, e, a in neurons[exp].select("layer", "neuron", "exact", "attribution")
                  .fill_nan(None).iter_rows()}
        for i, r in enumerate(rows):
            if (r["layer"], r["neuron"]) not in scores:  # an experiment whose prompts gave the same LD has no rows
                continue
            e, a = scores[(r["layer"], r["neuron"])]
            exact[i, j] = e is not None
            value = e if exact[i, j] else a
            grid[i, j] = np.nan if value is None else value
    m = max(1.0, float(np.nanmax(np.abs(grid))))
    im = ax.imshow(grid, cmap="RdBu", norm=TwoSlopeNorm(0.0, -m, m), aspect="auto", interpolation="nearest")
    for i, r in enumerate(rows):
        for j, exp in enumerate(exps):
            if np.isnan(grid[i, j]):
                continue
            ax.text(j, i, f"{grid[i, j]:.2f}", ha="center", va="center", fontsize=7,
                    style="normal" if exact[i, j] else "italic",
                    color="white" if abs(grid[i, j]) > 0.6 * m else "black")
            if exp in r["experiments"]:
                ax.add_patch(plt.Rectangle((j - 0.48, i - 0.45), 0.96, 0.9, fill=False, lw=1.5, color="C3"))
    ax.set_xticks(range(len(exps)))
    ax.set_xticklabels([f"{e} (LD gap < {MIN_LD_GAP:g}: not counted)" if e in not_counted else e for e in exps],
                       rotation=45, ha="right", fontsize=8)
    ax.set_yticks(range(len(rows)))
    ax.set_yticklabels([f"{neuron_name(r['layer'], r['neuron'])} ({r['n_experiments']})" for r in rows], fontsize=8)
    fig.colorbar(im, ax=ax, label="patch score (italic: attribution only)", shrink=0.9)
    more = f" (first {MAX_SUMMARY_ROWS} of {summary.height})" if summary.height > MAX_SUMMARY_ROWS else ""
    how = f" ({rule})" if rule else ""
    ax.set_title(f"Neurons standing out in two or more experiments{more}\nred box: stands out there{how}",
                 fontsize=10)
    return fig


def summary_figures(summary_file: str | Path, neuron_files: dict[str, str | Path], out_stem: str | Path,
                    not_counted: set[str] = frozenset(), rule: str | None = None) -> Path:
    neurons = {exp: _read(path) for exp, path in neuron_files.items()}
    return save_figure(summary_figure(_read(summary_file), neurons, not_counted, rule), out_stem)[0]
