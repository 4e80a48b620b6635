"""Figures of the universality stage (results/{model}/figures/universality/): the share of universal neurons by
layer against the baseline, max ρ against the baseline's max ρ by layer, universal vs other neurons on each property
by layer, and the most universal neurons' activations against their twins'."""

from __future__ import annotations

from pathlib import Path
from typing import Sequence

import matplotlib.pyplot as plt
import numpy as np
import polars as pl
import torch

from anneuron.contracts import neuron_name
from anneuron.dataset.engines import load_engine
from anneuron.figures import style
from anneuron.io import save_figure
from anneuron.universality.tiles import batches, layer_activations, token_rows

# property column -> label; the last two come from the weights pass's neuron table (vocabulary moments of W_U w_out)
PROPERTIES = {"act_frequency": "activation frequency (> 0)", "act_mean": "activation mean",
              "act_skew": "activation skew", "act_kurt": "activation kurtosis", "w_in_norm": "‖w_in‖",
              "w_out_norm": "‖w_out‖", "in_out_cos": "cos(w_in, w_out)", "wu_skew": "vocab skew (W_U w_out)",
              "wu_kurt": "vocab kurtosis (W_U w_out)"}
N_TWINS = 4


def share_by_layer(ax, summary: pl.DataFrame, threshold: float) -> None:
    by = summary.group_by("layer").agg(pl.col("universal").mean().alias("u"),
                                       (pl.col("baseline_varrho") > threshold).mean().alias("b")).sort("layer")
    x = by["layer"].to_numpy()
    ax.bar(x - 0.2, 100 * by["u"].to_numpy(), 0.4, label="ϱ > threshold", color="C0")
    ax.bar(x + 0.2, 100 * by["b"].to_numpy(), 0.4, label="baseline ϱ > threshold", color="C7")
    top = float(max(100 * by["u"].max(), 100 * by["b"].max(), 1.0))
    ax.set(xlabel="layer", ylabel="% of the layer's neurons", xticks=x, ylim=(0, top * 1.3),
           title=f"universal neurons by layer (threshold {threshold})")
    ax.legend(loc="upper center", ncol=2)


def corr_vs_baseline(ax, neurons: pl.DataFrame, threshold: float) -> None:
    n_layers = int(neurons["layer"].max()) + 1
    cmap = plt.get_cmap("viridis", n_layers)
    for layer in range(n_layers):
        d = neurons.filter(pl.col("layer") == layer)
        ax.scatter(d["baseline_max_corr"], d["max_corr"], s=6, alpha=0.6, color=cmap(layer), label=f"L{layer}",
                   rasterized=True)
    lo = float(min(neurons["baseline_max_corr"].min(), neurons["max_corr"].min(), 0))
    ax.plot([lo, 1], [lo, 1], color="k", lw=0.8, label="ρ = baseline")
    ax.axhline(threshold, color="C3", lw=0.8, ls="--", label="threshold")
    ax.set(xlabel="baseline max ρ (rotated other model)", ylabel="max ρ (other model)", xlim=(lo, 1.02),
           ylim=(lo, 1.02), title="each neuron's best match in each other model, by layer")
    ax.legend(fontsize=7, ncol=2, markerscale=2)


def class_shares(ax, table: pl.DataFrame) -> None:
    """The weights pass's classes among universal and among other neurons (% of each group)."""
    classes = ["prediction", "suppression", "partition", "other"]
    for x, (universal, label) in enumerate(((True, "universal"), (False, "other"))):
        d = table.filter(pl.col("universal") == universal)
        bottom = 0.0
        for k, c in enumerate(classes):
            share = 100 * float((d["neuron_class"] == c).sum()) / max(1, d.height)
            ax.bar(x, share, 0.6, bottom=bottom, color=f"C{k}", label=c if x == 0 else None)
            bottom += share
        ax.text(x, 101, f"n = {d.height}", ha="center", fontsize=8)
    ax.set(xticks=[0, 1], xticklabels=["universal", "other"], ylabel="% of the group", ylim=(0, 108),
           title="neuron class (weights pass)")
    ax.legend(fontsize=8, loc="center left", bbox_to_anchor=(1.02, 0.5))


def properties_figure(path: Path, table: pl.DataFrame) -> None:
    """One panel per property: its median by layer for universal and for other neurons (quartiles shaded); and
    the classes of each group."""
    cols = [c for c in PROPERTIES if c in table.columns]
    ncol = 3
    rows = -(-(len(cols) + 1) // ncol)
    fig, axes = plt.subplots(rows, ncol, figsize=(12, 3.2 * rows), squeeze=False)
    for ax, col in zip(axes.flat, cols):
        for universal, colour, label in ((True, "C0", "universal"), (False, "C7", "other")):
            d = (table.filter(pl.col("universal") == universal).group_by("layer")
                 .agg(pl.col(col).quantile(q).alias(f"q{q}") for q in (0.25, 0.5, 0.75)).sort("layer"))
            if d.height:
                ax.plot(d["layer"], d["q0.5"], "o-", color=colour, label=label, ms=4)
                ax.fill_between(d["layer"].to_numpy(), d["q0.25"].to_numpy(), d["q0.75"].to_numpy(), color=colour,
                                alpha=0.15)
        ax.set(title=PROPERTIES[col], xlabel="layer")
        ax.set_xticks(sorted(table["layer"].unique().to_list()))
    axes.flat[0].legend()
    class_shares(axes.flat[len(cols)], table)
    for ax in list(axes.flat)[len(cols) + 1:]:
        ax.set_visible(False)
    fig.suptitle("universal vs other neurons: median by layer (shaded: quartiles)")
    fig.tight_layout()
    save_figure(fig, path)
    plt.close(fig)


def twin_activations(model: str, twins: Sequence[tuple[int, int, str, str, int, int, float]],
                     shards: Sequence[str | Path], n_tokens: int, device: str, dtype: str,
                     engine: str) -> list[tuple[np.ndarray, np.ndarray]]:
    """For each (layer, neuron, other id, other model, its layer, its neuron, ρ): both activations over the first
    `n_tokens` counted positions."""
    def acts(name: str, wanted: list[tuple[int, int]]) -> list[np.ndarray]:
        e = load_engine(name, device=device, dtype=dtype, engine=engine)
        top = max(layer for layer, _ in wanted)
        out: list[list[np.ndarray]] = [[] for _ in wanted]
        for toks, mask in batches(token_rows(shards, n_tokens), 8):
            a = layer_activations(e, toks, range(top + 1))
            for k, (layer, n) in enumerate(wanted):
                out[k].append(a[layer][mask.to(a[layer].device)][:, n].cpu().numpy())
        return [np.concatenate(o) for o in out]

    mine = acts(model, [(t[0], t[1]) for t in twins])
    theirs: dict[int, np.ndarray] = {}
    for other in sorted({t[3] for t in twins}):
        ks = [k for k, t in enumerate(twins) if t[3] == other]
        for k, a in zip(ks, acts(other, [(twins[k][4], twins[k][5]) for k in ks])):
            theirs[k] = a
    return [(mine[k], theirs[k]) for k in range(len(twins))]


def twins_figure(path: Path, twins: Sequence[tuple], pairs: list[tuple[np.ndarray, np.ndarray]]) -> None:
    fig, axes = plt.subplots(1, max(1, len(twins)), figsize=(3.4 * max(1, len(twins)), 3.4), squeeze=False)
    for ax, t, (x, y) in zip(axes.flat, twins, pairs):
        ax.scatter(x, y, s=3, alpha=0.4, rasterized=True)
        ax.set(xlabel=f"{neuron_name(t[0], t[1])} (this model)", ylabel=f"{neuron_name(t[4], t[5])} in {t[2]}",
               title=f"ρ = {t[6]:.3f}")
    if not twins:
        axes.flat[0].text(0.5, 0.5, "no neuron", ha="center")
    fig.suptitle(f"the most universal neurons against their twins ({len(pairs[0][0]) if pairs else 0} tokens)")
    fig.tight_layout()
    save_figure(fig, path)
    plt.close(fig)


def draw_universality_figures(out: Path, summary: pl.DataFrame, neurons: pl.DataFrame, properties: pl.DataFrame,
                              classes: pl.DataFrame, threshold: float,
                              twin_data: list[tuple[np.ndarray, np.ndarray]] | None = None,
                              twins: Sequence[tuple] = ()) -> list[str]:
    """Every figure into `out`; returns their names."""
    style()
    out = Path(out)
    fig, ax = plt.subplots(figsize=(6, 4))
    share_by_layer(ax, summary, threshold)
    fig.tight_layout()
    save_figure(fig, out / "universal_by_layer")
    plt.close(fig)
    fig, ax = plt.subplots(figsize=(5.5, 5))
    corr_vs_baseline(ax, neurons, threshold)
    fig.tight_layout()
    save_figure(fig, out / "corr_vs_baseline")
    plt.close(fig)
    keys = ["layer", "neuron"]
    cast = [pl.col(k).cast(pl.Int64) for k in keys]
    table = (summary.with_columns(cast).join(properties.with_columns(cast), on=keys)
             .join(classes.select(*keys, "wu_skew", "wu_kurt", "neuron_class").with_columns(cast), on=keys, how="left"))
    properties_figure(out / "properties", table)
    twins_figure(out / "twins", twins, twin_data or [])
    return ["universal_by_layer", "corr_vs_baseline", "properties", "twins"]


def most_universal(summary: pl.DataFrame, neurons: pl.DataFrame, others: dict[str, str],
                   k: int = N_TWINS) -> list[tuple]:
    """The k neurons of highest ϱ, each with its best twin over the other models: (layer, neuron, other id, other
    model name, twin layer, twin neuron, ρ)."""
    top = summary.sort(["varrho", "layer", "neuron"], descending=[True, False, False]).head(k)
    out = []
    for layer, n in zip(top["layer"], top["neuron"]):
        row = (neurons.filter((pl.col("layer") == layer) & (pl.col("neuron") == n))
               .sort(["max_corr", "other_model"], descending=[True, False]).row(0, named=True))
        out.append((layer, n, row["other_model"], others[row["other_model"]], row["max_layer"], row["max_neuron"],
                    row["max_corr"]))
    return out


def figures_job(out: str | Path, summary: str | Path, neurons: str | Path, properties: str | Path,
                classes: str | Path, model: str, others: dict[str, str], shards: Sequence[str | Path], cfg) -> None:
    """The `universality_figures` job (cfg: UniversalityFiguresConfig): the tables in, every figure out."""
    from anneuron.io import atomic_dir, read_parquet

    s, n, p, c = (pl.from_arrow(read_parquet(f)) for f in (summary, neurons, properties, classes))
    twins = most_universal(s, n, others)
    torch.set_grad_enabled(False)
    data = twin_activations(model, twins, shards, cfg.twin_tokens, cfg.device, cfg.dtype, cfg.engine)
    with atomic_dir(out) as tmp:
        draw_universality_figures(Path(tmp), s, n, p, c, cfg.threshold, data, twins)
