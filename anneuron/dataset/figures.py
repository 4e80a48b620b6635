"""Figures of the dataset pass (docs/paper.md): the post's proportion curves (" an" / " though"), the multi-line
top-pairs curve, and the activation histograms of the watched neurons, all drawn from curves.parquet and
predictions.parquet.

x is the neuron's activation (bin centres), y the proportion of positions whose top-1 prediction is the neuron's
token. With `curves.binning: floor`, bins with fewer than `min_count` positions have no proportion (drawn apart, as
hits / count); with `post` every bin has one, as in the post. Each figure says which readout and binning drew it.
"""

from __future__ import annotations

from pathlib import Path

import matplotlib.pyplot as plt
import numpy as np
import polars as pl

from anneuron.contracts import neuron_name
from anneuron.figures import style
from anneuron.io import atomic_dir, save_figure


def _label(layer: int, neuron: int, token: str) -> str:
    return f"{neuron_name(layer, neuron)} → {token!r}"


READOUT_LABEL = {"logits": "argmax of the logits", "post": "the post's readout: normalised residual · W_E"}
BINNING_LABEL = {"floor": "floor bins of {w:g}; BOS excluded",
                 "post": "the post's bins, int(5·fp32 round(a, 1)); BOS included"}
COUNTS_LABEL = {"next": ("predicted", "occurred"),  # curves.counts -> (predicted, occurred) as the legend names them
                "post": ("top predictions (BOS incl.)", "in the input")}


def _width(c: pl.DataFrame) -> float:
    """The bins' width (the median: the post's bin 0 is wider than the others)."""
    return float(np.median((c["bin_hi"] - c["bin_lo"]).to_numpy())) if c.height else 0.0


def _binning_text(c: pl.DataFrame, binning: str) -> str:
    return BINNING_LABEL[binning].format(w=_width(c))


def _neuron(curves: pl.DataFrame, layer: int, neuron: int) -> pl.DataFrame:
    return curves.filter((pl.col("layer") == layer) & (pl.col("neuron") == neuron)).sort("bin_lo")


def curve_figure(c: pl.DataFrame, predicted: int | None, occurred: int | None, min_count: int,
                 counts_label: str = "predicted", occurred_label: str = "occurred", *, readout: str, binning: str):
    """One neuron: proportion of top predictions = its token vs activation (top), positions per bin (bottom)."""
    style()
    layer, neuron, token = c["layer"][0], c["neuron"][0], c["token_str"][0]
    fig, (ax, axc) = plt.subplots(2, 1, figsize=(6.4, 5.0), sharex=True, gridspec_kw={"height_ratios": [3, 1.3]})
    x = ((c["bin_lo"] + c["bin_hi"]) / 2).to_numpy()
    w = _width(c)
    p = c["proportion"].to_numpy().astype(float)  # null -> nan: a gap in the line
    counts = c["count"].to_numpy()
    if binning == "post":
        min_count = 1  # the post: every bin that holds a position has a proportion
    ax.plot(x, p, "o-", color="C0", ms=4, lw=1.5,
            label="every bin (no minimum count)" if binning == "post" else f"bins of ≥ {min_count} positions")
    thin = (counts > 0) & (counts < min_count)  # shown apart: too few positions for a proportion
    if thin.any():
        ax.plot(x[thin], c["hits"].to_numpy()[thin] / counts[thin], "o", mfc="none", mec="0.55", ms=5,
                label=f"bins of < {min_count} positions (hits / count)")
    # the counts head the legend, top left: a proportion curve rises to the right, so that corner stays empty
    title = (None if predicted is None
             else f"{token!r}: {counts_label} {predicted:,} / {occurred_label} {occurred:,}")
    ax.legend(loc="upper left", fontsize=8, title=title, title_fontsize=9, alignment="left", frameon=True,
              edgecolor="0.8")
    ax.set_ylim(-0.03, 1.03)
    ax.set_ylabel(f"proportion of top-1 = {token!r}")
    ax.set_title(f"{_label(layer, neuron, token)}: top prediction vs activation\n"
                 f"top-1 = {READOUT_LABEL[readout]}", fontsize=10)
    widths = (c["bin_hi"] - c["bin_lo"]).to_numpy() if binning == "post" else w  # the post's: 0.1-0.3 wide
    axc.bar(x, np.where(counts > 0, counts, np.nan), width=widths * 0.9, color="0.55")
    if binning != "post":
        axc.axhline(min_count, color="C3", lw=0.8, ls="--", label=f"min_count = {min_count}")
        axc.legend(loc="upper right", fontsize=8)
    axc.set_yscale("log")
    axc.set_ylabel("positions")
    axc.set_xlabel(f"activation ({_binning_text(c, binning)})")
    fig.align_ylabels([ax, axc])
    fig.tight_layout()
    return fig


def top_pairs_figure(curves: pl.DataFrame, pairs: pl.DataFrame, n: int = 5, *, readout: str, binning: str):
    """The top-n watched pairs (by rank) on one axis: each neuron's proportion curve for its paired token."""
    style()
    fig, ax = plt.subplots(figsize=(7.0, 4.4))
    drawn = 0
    for r in pairs.sort("rank").iter_rows(named=True):
        c = _neuron(curves, r["layer"], r["neuron"])
        if c.is_empty() or drawn == n:
            continue
        x = ((c["bin_lo"] + c["bin_hi"]) / 2).to_numpy()
        # curves often coincide: the better-ranked drawn wider and under the next, each with its own marker
        ax.plot(x, c["proportion"].to_numpy().astype(float), marker="osD^v"[drawn % 5], ms=7 - drawn,
                lw=4.5 - 0.8 * drawn, alpha=0.75, zorder=2 + drawn,
                label=f"#{r['rank']} {_label(r['layer'], r['neuron'], c['token_str'][0])}")
        drawn += 1
    ax.set_ylim(-0.03, 1.03)
    ax.set_xlabel(f"activation (bin centres; {_binning_text(curves, binning)})")
    ax.set_ylabel(f"proportion of top-1 = the neuron's token\n({READOUT_LABEL[readout]})", fontsize=9)
    ax.set_title(f"Top {drawn} mutually exclusive pairs: top prediction vs activation")
    if drawn:
        ax.legend(fontsize=8, loc="upper left")
    else:
        ax.text(0.5, 0.5, "no pair is watched (watch.top_pairs = 0)", ha="center", transform=ax.transAxes)
    fig.tight_layout()
    return fig


def histogram_figure(curves: pl.DataFrame, ncols: int = 4, *, binning: str = "floor"):
    """Activation histogram of every watched neuron (log counts), from the curve bins (each drawn its own width:
    the post's bins are 0.1-0.3 wide)."""
    style()
    keys = curves.select(["layer", "neuron", "token_str"]).unique(maintain_order=True).rows()
    nrows = max(1, -(-len(keys) // ncols))
    fig, axes = plt.subplots(nrows, ncols, figsize=(3.1 * ncols, 2.3 * nrows), squeeze=False)
    for ax, (layer, neuron, token) in zip(axes.flat, keys):
        c = _neuron(curves, layer, neuron)
        widths = (c["bin_hi"] - c["bin_lo"]).to_numpy()
        w = widths if binning == "post" else float(widths[0])
        counts = c["count"].to_numpy()
        ax.bar(c["bin_lo"].to_numpy(), np.where(counts > 0, counts, np.nan), width=w, align="edge", color="C0",
               edgecolor="white", linewidth=0.4)
        ax.set_yscale("log")
        ax.set_ylim(bottom=0.5)  # a bin of one position shows
        ax.set_title(_label(layer, neuron, token), fontsize=9)
        ax.tick_params(labelsize=7)
    for ax in list(axes.flat)[len(keys):]:
        ax.set_visible(False)
    fig.supxlabel(f"activation ({'BOS included' if binning == 'post' else 'BOS excluded'})", fontsize=9)
    fig.supylabel("positions (log)", fontsize=9)
    fig.suptitle("Activations of the watched neurons over the dataset", fontsize=11)
    fig.tight_layout()
    return fig


def dataset_figures(curves: pl.DataFrame, predictions: pl.DataFrame, pairs: pl.DataFrame | None,
                    curves_dir: str | Path, hist_stem: str | Path, min_count: int, *, readout: str, binning: str,
                    counts: str, top_n: int = 5) -> None:
    """All figures of the stage: curves_dir/L{l}N{n}.{png,svg} per watched neuron and curves_dir/top_pairs, built
    in a temporary folder and swapped in whole; hist_stem.{png,svg}. `pairs`: the watched pairs (rank, layer,
    neuron) or None. Counts use `predicted_post` when it was recorded (as the post counted), named after their
    definition (`counts`: COUNTS_LABEL)."""
    post = "predicted_post" in predictions.columns
    pcol = "predicted_post" if post else "predicted"
    predicted_label, occurred_label = COUNTS_LABEL[counts]
    by_id = {r["token_id"]: r for r in predictions.select(["token_id", pcol, "occurred"]).iter_rows(named=True)}
    keys = curves.select(["layer", "neuron"]).unique(maintain_order=True).rows()
    with atomic_dir(curves_dir) as tmp:
        for layer, neuron in keys:
            c = _neuron(curves, layer, neuron)
            r = by_id.get(c["token_id"][0])
            fig = curve_figure(c, r[pcol] if r else None, r["occurred"] if r else None, min_count,
                               f"{predicted_label} (pred_post)" if post else predicted_label, occurred_label,
                               readout=readout, binning=binning)
            save_figure(fig, Path(tmp) / neuron_name(layer, neuron))
        empty = pl.DataFrame(schema={"rank": pl.Int64, "layer": pl.Int64, "neuron": pl.Int64})
        save_figure(top_pairs_figure(curves, pairs if pairs is not None else empty, top_n, readout=readout,
                                     binning=binning), Path(tmp) / "top_pairs")
    save_figure(histogram_figure(curves, binning=binning), hist_stem)
