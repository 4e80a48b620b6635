"""The stages figure of one model (the paper's Figures 1, 3, 6, 7 and 8 on one relative-depth axis) and the same
curves for every model of a run side by side. x = relative depth (ℓ+1)/L: the residual after block ℓ, block ℓ
deleted or swapped with ℓ+1, block ℓ's neurons. Read from layers.parquet, interventions.parquet and the weights
pass's neurons.parquet (the classes: prediction and suppression shares per layer)."""

from __future__ import annotations

from pathlib import Path

import matplotlib.pyplot as plt
import numpy as np
import polars as pl

from anneuron.figures import style
from anneuron.io import save_figure


def class_shares(neurons: pl.DataFrame) -> pl.DataFrame:
    """Per layer: the share of its neurons classed prediction and suppression, and relative_depth (ℓ+1)/L."""
    n_layers = int(neurons["layer"].max()) + 1
    return (neurons.group_by("layer")
            .agg((pl.col("neuron_class") == "prediction").mean().alias("prediction"),
                 (pl.col("neuron_class") == "suppression").mean().alias("suppression"))
            .sort("layer")
            .with_columns(((pl.col("layer") + 1) / n_layers).alias("relative_depth")))


def _band(ax, x, mean, se, **kw) -> None:
    line, = ax.plot(x, mean, "o-", ms=3, lw=1.5, **kw)
    ax.fill_between(x, mean - 2 * se, mean + 2 * se, color=line.get_color(), alpha=0.2, lw=0)


def stages_figure(layers: pl.DataFrame, interventions: pl.DataFrame, neurons: pl.DataFrame, out_stem: str | Path,
                  title: str) -> list[Path]:
    """Four panels on one relative-depth axis: the logit lens (KL to the final distribution in both conventions,
    ±2 standard errors, and the recomputed entropy), the interventions (KL from the intact model, top-1
    agreement), the output norms and the attention to the previous five tokens, the neuron class shares."""
    style()
    fig, axes = plt.subplots(4, 1, figsize=(7.2, 10.5), sharex=True)
    x = layers["relative_depth"].to_numpy()
    ax = axes[0]
    _band(ax, x, layers["kl_to_final"].to_numpy(), layers["kl_to_final_se"].to_numpy(), color="C0",
          label="KL(final ‖ layer), recomputed norm")
    _band(ax, x, layers["kl_to_final_post"].to_numpy(), layers["kl_to_final_post_se"].to_numpy(), color="C9",
          label="KL(final ‖ layer), final residual's scale")
    ax.set_ylabel("KL (nats)")
    ax.set_title(f"{title}: logit lens over the corpus ({int(layers['lens_positions'][0]):,} positions)")
    tw = ax.twinx()
    tw.plot(x, layers["entropy"].to_numpy(), "s--", ms=3, color="C3", label="entropy of the lens (recomputed)")
    tw.set_ylabel("entropy (nats)", color="C3")
    tw.grid(False)
    _legend(ax, tw)
    ax = axes[1]
    for kind, color in (("delete", "C1"), ("swap", "C4")):
        d = interventions.filter(pl.col("intervention") == kind).sort("layer")
        ax.semilogy(d["relative_depth"].to_numpy(), d["kl"].to_numpy(), "o-", ms=3, color=color,
                    label=f"{kind}: KL(intact ‖ intervened)")
    ax.set_ylabel("KL (nats, log)")
    n_int = int(interventions["positions"][0]) if interventions.height else 0
    ax.set_title(f"block ℓ deleted, or ℓ and ℓ+1 swapped ({n_int:,} positions)")
    tw = ax.twinx()
    for kind, color in (("delete", "C1"), ("swap", "C4")):
        d = interventions.filter(pl.col("intervention") == kind).sort("layer")
        tw.plot(d["relative_depth"].to_numpy(), d["top1_agreement"].to_numpy(), "^:", ms=3, color=color,
                label=f"{kind}: top-1 agreement")
    tw.set_ylim(0, 1.02)
    tw.set_ylabel("top-1 agreement")
    tw.grid(False)
    _legend(ax, tw)
    ax = axes[2]
    ax.plot(x, layers["attn_out_norm"].to_numpy(), "o-", ms=3, color="C2", label="‖attn_out‖")
    ax.plot(x, layers["mlp_out_norm"].to_numpy(), "o-", ms=3, color="C5", label="‖mlp_out‖")
    ax.set_yscale("log")
    ax.set_ylabel("mean norm (log)")
    ax.set_title(f"block outputs ({int(layers['positions'][0]):,} positions)")
    tw = ax.twinx()
    tw.plot(x, layers["prev5_attention"].to_numpy(), "d--", ms=3, color="C6",
            label="attention to the previous 5 tokens")
    tw.set_ylim(0, 1.02)
    tw.set_ylabel("attention mass")
    tw.grid(False)
    _legend(ax, tw)
    ax = axes[3]
    shares = class_shares(neurons)
    xs = shares["relative_depth"].to_numpy()
    ax.plot(xs, 100 * shares["prediction"].to_numpy(), "o-", ms=3, color="C2", label="prediction neurons")
    ax.plot(xs, 100 * shares["suppression"].to_numpy(), "o-", ms=3, color="C3", label="suppression neurons")
    ax.set_ylabel("% of the layer's neurons")
    ax.set_title("neuron classes (weights pass)")
    ax.legend(loc="upper left", fontsize=8)
    ax.set_xlabel("relative depth (ℓ+1)/L")
    ax.set_xlim(0, 1.02)
    fig.tight_layout()
    paths = save_figure(fig, out_stem)
    plt.close(fig)
    return paths


def _legend(ax, tw) -> None:
    handles = ax.get_legend_handles_labels()[0] + tw.get_legend_handles_labels()[0]
    # on the twin axis, which is drawn last: the legend stays above both axes' lines
    tw.legend(handles, [h.get_label() for h in handles], loc="best", fontsize=7, frameon=True, framealpha=0.85)


def models_figure(runs: dict[str, tuple[pl.DataFrame, pl.DataFrame, pl.DataFrame]], out_stem: str | Path
                  ) -> list[Path]:
    """Every model's curves against relative depth, one colour per model: {model: (layers, interventions,
    neurons)}. Norms are divided by the model's largest ‖mlp_out‖, so models of other widths compare."""
    style()
    fig, axes = plt.subplots(2, 3, figsize=(13, 7.5), sharex=True)
    for i, (name, (layers, inter, neurons)) in enumerate(sorted(runs.items())):
        c = f"C{i % 10}"
        x = layers["relative_depth"].to_numpy()
        axes[0, 0].plot(x, layers["kl_to_final"].to_numpy(), "o-", ms=3, color=c, label=name)
        axes[0, 1].plot(x, layers["entropy"].to_numpy(), "o-", ms=3, color=c, label=name)
        d = inter.filter(pl.col("intervention") == "delete").sort("layer")
        axes[0, 2].semilogy(d["relative_depth"].to_numpy(), d["kl"].to_numpy(), "o-", ms=3, color=c, label=name)
        top = float(np.nanmax(layers["mlp_out_norm"].to_numpy()))
        axes[1, 0].plot(x, layers["mlp_out_norm"].to_numpy() / top, "o-", ms=3, color=c, label=f"{name} MLP")
        axes[1, 0].plot(x, layers["attn_out_norm"].to_numpy() / top, "s:", ms=3, color=c, label=f"{name} attention")
        axes[1, 1].plot(x, layers["prev5_attention"].to_numpy(), "o-", ms=3, color=c, label=name)
        shares = class_shares(neurons)
        xs = shares["relative_depth"].to_numpy()
        axes[1, 2].plot(xs, 100 * shares["prediction"].to_numpy(), "o-", ms=3, color=c, label=f"{name} prediction")
        axes[1, 2].plot(xs, 100 * shares["suppression"].to_numpy(), "s:", ms=3, color=c,
                        label=f"{name} suppression")
    titles = [["logit lens: KL(final ‖ layer) (nats)", "logit lens: entropy (nats)",
               "block deleted: KL(intact ‖ deleted) (nats)"],
              ["norms / the model's largest ‖mlp_out‖ (solid MLP, dotted attention)",
               "attention to the previous 5 tokens", "% prediction (solid) / suppression (dotted) neurons"]]
    for r in range(2):
        for k in range(3):
            axes[r, k].set_title(titles[r][k], fontsize=9)
            axes[r, k].legend(fontsize=7)
            if r == 1:
                axes[r, k].set_xlabel("relative depth (ℓ+1)/L")
    fig.tight_layout()
    paths = save_figure(fig, out_stem)
    plt.close(fig)
    return paths
