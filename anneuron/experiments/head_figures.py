"""Figures of an experiment's heads and direct effects (beside anneuron.experiments.figures, which calls them): the
layer × head maps of patching and direct logit attribution, the top heads position by position, their attention
patterns on both prompts, and each neuron's direct effect against its exact (total) effect."""

from __future__ import annotations

import matplotlib.pyplot as plt
import numpy as np
import polars as pl
from matplotlib.colors import TwoSlopeNorm

from anneuron.contracts import neuron_name
from anneuron.figures import style

MAX_PATTERNS = 4  # top heads whose patterns are drawn
LABELLED = 5  # neurons named on the direct-vs-total figure


def _grid(heads: pl.DataFrame, column: str) -> np.ndarray:
    n_layers, n_heads = heads["layer"].max() + 1, heads["head"].max() + 1
    grid = np.full((n_layers, n_heads), np.nan)
    grid[heads["layer"].to_numpy(), heads["head"].to_numpy()] = heads[column].to_numpy()
    return grid


def _diverging(ax, grid: np.ndarray, label: str):
    m = float(np.nanmax(np.abs(grid))) if np.isfinite(grid).any() else 1.0
    im = ax.imshow(grid, cmap="RdBu", norm=TwoSlopeNorm(0.0, -(m or 1.0), m or 1.0), aspect="auto",
                   interpolation="nearest", origin="lower")
    plt.colorbar(im, ax=ax, label=label, fraction=0.05)
    return im


def heads_figure(heads: pl.DataFrame, title: str, rule: str):
    """Two layer × head maps: the patch score of each head's output (all positions) and its direct logit
    attribution on the clean prompt; the standout heads boxed."""
    style()
    n_layers, n_heads = heads["layer"].max() + 1, heads["head"].max() + 1
    fig, axes = plt.subplots(1, 2, figsize=(min(16.0, 2.0 + 0.5 * n_heads * 2), max(3.5, 0.22 * n_layers + 1.8)))
    for ax, (column, label) in zip(axes, (("patch", "patch score (head output, all positions)"),
                                          ("dla", "direct logit attribution, clean (logits)"))):
        ax.grid(False)
        _diverging(ax, _grid(heads, column), label)
        for r in heads.filter(pl.col("standout")).iter_rows(named=True):
            ax.add_patch(plt.Rectangle((r["head"] - 0.5, r["layer"] - 0.5), 1, 1, fill=False, ec="k", lw=1.5))
        ax.set_xlabel("head")
        ax.set_ylabel("layer")
        ax.set_xticks(range(n_heads))
        ax.set_title(label.split(" (")[0], fontsize=9)
    fig.suptitle(f"Attention heads: {title}\nboxed: standout ({rule})", fontsize=10)
    fig.tight_layout()
    return fig


def head_positions_figure(positions: pl.DataFrame, title: str):
    """The top heads (rows, by |patch|) patched at one position at a time (columns: the first pair's tokens)."""
    style()
    heads = positions.select("layer", "head").unique(maintain_order=True).rows()
    tokens = positions.filter((pl.col("layer") == heads[0][0]) & (pl.col("head") == heads[0][1]))["token_str"]
    grid = np.array([positions.filter((pl.col("layer") == l) & (pl.col("head") == h)).sort("pos")["score"].to_numpy()
                     for l, h in heads])
    fig, ax = plt.subplots(figsize=(max(6.0, 0.45 * len(tokens) + 2.5), 0.45 * len(heads) + 2.2))
    ax.grid(False)
    _diverging(ax, grid, "patch score")
    ax.set_yticks(range(len(heads)))
    ax.set_yticklabels([f"L{l}H{h}" for l, h in heads])
    ax.set_xticks(range(len(tokens)))
    ax.set_xticklabels([t.replace("\n", "\\n") for t in tokens], rotation=60, ha="right", fontsize=7)
    ax.invert_yaxis()
    ax.set_title(f"Top heads patched position by position\n{title}", fontsize=10)
    fig.tight_layout()
    return fig


def patterns_figure(patterns: pl.DataFrame, tokens: dict[str, list[str]], title: str):
    """Attention patterns (query rows × key columns) of the top heads on the clean and the corrupted prompt."""
    style()
    heads = patterns.select("layer", "head").unique(maintain_order=True).rows()[:MAX_PATTERNS]
    n = len(tokens["clean"])
    fig, axes = plt.subplots(2, len(heads), figsize=(2.0 + 2.9 * len(heads), 6.4), squeeze=False)
    for j, (l, h) in enumerate(heads):
        for i, prompt in enumerate(("clean", "corrupted")):
            ax = axes[i, j]
            ax.grid(False)
            t = patterns.filter((pl.col("layer") == l) & (pl.col("head") == h) & (pl.col("prompt") == prompt))
            grid = np.full((n, n), np.nan)
            grid[t["query"].to_numpy(), t["key"].to_numpy()] = t["weight"].to_numpy()
            ax.imshow(grid, cmap="Blues", vmin=0, vmax=1, interpolation="nearest")
            labels = [s.replace("\n", "\\n") for s in tokens[prompt]]
            ax.set_xticks(range(n))
            ax.set_xticklabels(labels, rotation=90, fontsize=5)
            ax.set_yticks(range(n))
            ax.set_yticklabels(labels if j == 0 else [], fontsize=5)
            ax.set_title(f"L{l}H{h}, {prompt}", fontsize=8)
    fig.suptitle(f"Attention patterns of the top heads (query rows, key columns)\n{title}", fontsize=10)
    fig.tight_layout()
    return fig


def direct_figure(direct: pl.DataFrame, title: str):
    """Each exactly patched neuron's direct effect (x: through the final norm only) against its exact total effect
    (y). On the diagonal: it writes the answer itself; near x = 0 with a large y: it acts through later layers."""
    style()
    t = direct.filter(pl.col("exact").is_not_null())
    fig, ax = plt.subplots(figsize=(5.8, 5))
    layers = sorted(t["layer"].unique().to_list())
    colours = plt.get_cmap("viridis")(np.linspace(0, 0.9, max(1, len(layers))))
    for c, layer in zip(colours, layers):
        s = t.filter(pl.col("layer") == layer)
        ax.scatter(s["direct"].to_numpy(), s["exact"].to_numpy(), s=10, color=c, lw=0,
                   label=f"layer {layer} ({s.height})")
    values = np.append(t.select("direct", "exact").to_numpy().ravel(), 0.0)
    lo, hi = float(np.nanmin(values)), float(np.nanmax(values))
    pad = 0.05 * (hi - lo or 1.0)
    ax.plot([lo - pad, hi + pad], [lo - pad, hi + pad], "--", color="0.4", lw=0.8, label="direct = total")
    top = t.sort(pl.col("exact").abs(), descending=True, maintain_order=True).head(LABELLED)
    for r in top.iter_rows(named=True):
        ax.annotate(neuron_name(r["layer"], r["neuron"]), (r["direct"], r["exact"]), xytext=(4, 4),
                    textcoords="offset points", fontsize=7)
    ax.axhline(0, color="0.3", lw=0.6)
    ax.axvline(0, color="0.3", lw=0.6)
    ax.set_xlabel("direct effect (through the final norm, scale frozen)")
    ax.set_ylabel("exact patch score (total effect)")
    ax.set_title(f"Direct vs total effect of each patched neuron\n{title}", fontsize=10)
    ax.legend(fontsize=7, loc="best")
    return fig
