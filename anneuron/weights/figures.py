"""Figures of the weights pass (docs/paper.md, results/{model}/figures/weights/): a neuron's output and input weights
against all tokens, a token against all neurons, each token's highest neuron congruence and each neuron's highest
token congruence, the top-2 differences both ways, the top mutually exclusive pairs, and the vocabulary moments and
classes by depth (Gurnee et al. 2024, Fig. 5-6)."""

from __future__ import annotations

from pathlib import Path
from typing import Sequence

import matplotlib.pyplot as plt
import numpy as np
import polars as pl

from anneuron.contracts import flat_name, neuron_name
from anneuron.figures import style
from anneuron.io import save_figure

BASIS_LABEL = {"we": "w_out · W_E[t]", "wu": "w_out · W_U[:, t]", "cosine": "cos(w_out, W_U[:, t])"}
CLASS_COLOURS = {"prediction": "C2", "suppression": "C3", "partition": "C0"}
N_LABELS = 5  # points named on a "vs all" figure
N_TOP = 10  # points named on a top-2 difference figure
TOP_PAIR_FIGURES = 5  # the best pairs whose neuron gets a "vs all tokens" figure
TOP_PAIRS_SHOWN = 20  # pairs on the top_pairs figure


def _tok(s: str) -> str:
    """A token as it reads on a figure: quoted, so leading spaces show; no raw newlines or dollar signs."""
    return repr(s).replace("$", r"\$")


def _layer_axis(ax, n_layers: int, d_mlp: int) -> None:
    """x axis over flat neuron ids: grid lines at layer starts, each layer's name centred on its band."""
    ax.set_xticks([l * d_mlp for l in range(n_layers + 1)])
    ax.set_xticklabels([])
    ax.tick_params(axis="x", length=0)
    step = max(1, -(-n_layers // 18))
    ax.set_xticks([(l + 0.5) * d_mlp for l in range(0, n_layers, step)], minor=True)
    ax.set_xticklabels([f"L{l}" for l in range(0, n_layers, step)], minor=True)
    ax.tick_params(axis="x", which="minor", length=0)
    ax.set_xlim(0, n_layers * d_mlp)
    ax.set_xlabel("neuron (flat id, grouped by layer)")


DENSE = 20_000  # points above which a scatter draws its bulk as a density and only its tails as crisp points
TAIL = 0.0002  # the fraction of points farthest from the median drawn crisp on a dense scatter


def _tails(y: np.ndarray, fraction: float = TAIL) -> np.ndarray:
    """Mask of the `fraction` of finite points farthest from the median (at least one)."""
    dev = np.abs(y - np.nanmedian(y))
    k = max(1, int(round(fraction * np.isfinite(dev).sum())))
    mask = np.zeros(len(y), bool)
    mask[np.argsort(-np.nan_to_num(dev, nan=-np.inf), kind="stable")[:k]] = True
    return mask


def _scatter(ax, x: np.ndarray, y: np.ndarray, colour, tails: np.ndarray | None = None) -> None:
    """Rasterised points. Up to DENSE points: small and half transparent. Beyond (GPT-2 Large: 184,320 neurons, a
    few hundred per pixel column) the bulk is drawn tiny and faint, so that overlapping points build up a density
    instead of a solid block, and the tails (`tails`: the points that matter, far from the bulk) on top, crisp."""
    if len(y) <= DENSE or tails is None:
        ax.scatter(x, y, s=2, color=colour, alpha=0.5, lw=0, rasterized=True)
        return
    ax.scatter(x[~tails], y[~tails], s=1, color=colour, alpha=0.25, lw=0, rasterized=True)
    ax.scatter(x[tails], y[tails], s=3, color=colour, alpha=0.9, lw=0, rasterized=True)


def _layer_scatter(ax, y: np.ndarray, n_layers: int, d_mlp: int) -> None:
    """One colour per layer (alternating), rasterised: up to 184,320 points (see _scatter)."""
    x = np.arange(len(y))
    layer = x // d_mlp
    tails = _tails(y) if len(y) > DENSE else None
    for parity, colour in ((0, "C0"), (1, "#0b6e6e")):
        m = layer % 2 == parity
        _scatter(ax, x[m], y[m], colour, None if tails is None else tails[m])
    _layer_axis(ax, n_layers, d_mlp)
    if tails is not None:
        ax.text(0.995, 0.015, f"{len(y):,} points: faint = bulk (density), crisp = the {tails.sum():,} farthest "
                "from the median", transform=ax.transAxes, ha="right", va="bottom", fontsize=7, color="0.35")


# offsets (points) tried in turn for a label beside its point: right, then left, then further up or down
_OFFSETS = [(6, 0), (6, -11), (6, 11), (-6, 0), (-6, -11), (-6, 11), (6, -22), (6, 22), (-6, -22), (-6, 22),
            (6, -33), (6, 33)]


def _label_points(ax, xs, ys, labels, colour: str = "C3", fontsize: float = 8,
                  placed: list[tuple[float, float, float, float]] | None = None) -> None:
    """Mark points and label them without overlaps: each label takes the first offset around its point whose
    box (estimated from its length) neither overlaps a label already placed (in `placed`, shared between calls on
    the same axes; boxes in points) nor leaves the axes. Call once the axes' limits are final."""
    fig = ax.figure
    ax.scatter(xs, ys, s=22, color=colour, zorder=3)
    axes_box = ax.get_window_extent()
    scale = 72 / fig.dpi  # pixels -> points
    x0a, y0a, x1a, y1a = (v * scale for v in axes_box.extents)
    placed = [] if placed is None else placed
    width_pt, height_pt = 0.62 * fontsize, 1.25 * fontsize
    for x, y, label in zip(xs, ys, labels):
        px, py = (v * scale for v in ax.transData.transform((x, y)))
        w = width_pt * len(label) + 4
        for dx, dy in _OFFSETS:
            left = px + dx if dx > 0 else px + dx - w
            box = (left, py + dy - height_pt / 2, left + w, py + dy + height_pt / 2)
            inside = box[0] >= x0a and box[2] <= x1a + 40 and box[1] >= y0a and box[3] <= y1a
            if inside and not any(box[0] < b[2] and b[0] < box[2] and box[1] < b[3] and b[1] < box[3]
                                  for b in placed):
                break
        else:
            dx, dy = _OFFSETS[0]
        placed.append(box)
        ax.annotate(label, (x, y), xytext=(dx, dy), textcoords="offset points", fontsize=fontsize, color=colour,
                    ha="left" if dx > 0 else "right", va="center",
                    arrowprops=dict(arrowstyle="-", color=colour, lw=0.5, shrinkA=0, shrinkB=3),
                    bbox=dict(boxstyle="square,pad=0.1", fc="white", ec="none", alpha=0.75))


def _label_numbered(ax, xs, ys, labels, colour: str = "C3") -> None:
    """Number the points (1 = best) and list them beside the axes: many outliers can sit close together."""
    _label_points(ax, xs, ys, [str(j + 1) for j in range(len(labels))], colour, fontsize=7)
    text = "\n".join(f"{j + 1:>2}. {label}" for j, label in enumerate(labels))
    ax.text(1.01, 1.0, text, transform=ax.transAxes, ha="left", va="top", fontsize=8, family="monospace")


def _margin(ax, frac: float = 0.08) -> None:
    """Widen the y limits a little so that labels of the extreme points stay inside the axes."""
    lo, hi = ax.get_ylim()
    pad = frac * (hi - lo)
    ax.set_ylim(lo - pad, hi + pad)


INPUT_LABEL = "w_in · W_E[t]"  # the notebook's neuron_in_dot_vocab_fig (cell 32): input weights, embedding basis


def neuron_vs_tokens(row: np.ndarray, layer: int, neuron: int, token_strs: Sequence[str], basis: str,
                     stats: dict | None = None, *, side: str = "out"):
    """One neuron's congruence with every token (the post's congruence illustration): token ids on x, the top
    tokens (red) and bottom tokens (blue) named; right, the distribution (log counts) with its moments.
    side="in": the same for its input weights against every token embedding (the notebook's
    neuron_in_dot_vocab_fig, cell 32), which tokens the neuron reads rather than writes; `basis` is then unused."""
    style()
    fig, (ax, axh) = plt.subplots(1, 2, figsize=(11, 4), gridspec_kw=dict(width_ratios=[3, 1]), sharey=True)
    ax.scatter(np.arange(len(row)), row, s=2, color="0.45", alpha=0.5, lw=0, rasterized=True)
    ax.axhline(0, color="0.3", lw=0.6)
    ax.set_xlim(-0.005 * len(row), 1.005 * len(row))
    axh.hist(row, bins=120, orientation="horizontal", color="0.45", log=True)
    _margin(ax)
    top, bottom, placed = np.argsort(-row)[:N_LABELS], np.argsort(row)[:2], []
    _label_points(ax, top, row[top], [_tok(token_strs[t]) for t in top], placed=placed)
    _label_points(ax, bottom, row[bottom], [_tok(token_strs[t]) for t in bottom], colour="C0", placed=placed)
    ax.set_xlabel("token id")
    if side == "in":
        ax.set_ylabel(f"input weights  {INPUT_LABEL}")
        ax.set_title(f"{neuron_name(layer, neuron)} input weights vs all {len(row):,} token embeddings: "
                     f"top {N_LABELS} tokens in red, bottom 2 in blue", fontsize=10)
    else:
        ax.set_ylabel(f"congruence  {BASIS_LABEL[basis]}")
        ax.set_title(f"{neuron_name(layer, neuron)} vs all {len(row):,} tokens (basis {basis}): "
                     f"top {N_LABELS} tokens in red, "
                     "bottom 2 in blue", fontsize=10)
    axh.set_xlabel("tokens (log scale)")
    axh.set_title("distribution", fontsize=10)
    if stats:
        text = "\n".join(f"{k} = {v:.3g}" if isinstance(v, float) else f"{k}: {v}" for k, v in stats.items())
        axh.text(0.97, 0.97, text, transform=axh.transAxes, ha="right", va="top", fontsize=8,
                 bbox=dict(boxstyle="round", fc="white", ec="0.7"))
    fig.tight_layout()
    return fig


def token_vs_neurons(col: np.ndarray, token_id: int, token_str: str, n_layers: int, d_mlp: int, basis: str):
    """One token's congruence with every neuron (the post's " an" vs all neurons): the top neurons named."""
    style()
    fig, ax = plt.subplots(figsize=(11, 4))
    _layer_scatter(ax, col, n_layers, d_mlp)
    ax.axhline(0, color="0.3", lw=0.6)
    _margin(ax)
    top = np.argsort(-col)[:N_LABELS]
    _label_points(ax, top, col[top], [flat_name(n, d_mlp) for n in top])
    ax.set_ylabel(f"congruence  {BASIS_LABEL[basis]}")
    ax.set_title(f"Token {_tok(token_str)} (id {token_id}) vs all {len(col):,} neurons (basis {basis}): "
                 f"top {N_LABELS} named")
    fig.tight_layout()
    return fig


def _per_token(d: np.ndarray, tokens: pl.DataFrame, d_mlp: int, ylabel: str, title: str):
    """One value per token over token ids, the best N_TOP numbered and listed with their top neuron."""
    style()
    strs = tokens["token_str"].to_list()
    top1 = tokens["top_neurons"].list.first().to_numpy()
    fig, ax = plt.subplots(figsize=(11, 4))
    ax.scatter(np.arange(len(d)), d, s=2, color="0.45", alpha=0.5, lw=0, rasterized=True)
    ax.set_xlim(-0.005 * len(d), 1.005 * len(d))
    _margin(ax)
    top = np.argsort(-d)[:N_TOP]
    _label_numbered(ax, top, d[top], [f"{_tok(strs[t])} {flat_name(top1[t], d_mlp)} {d[t]:.3g}" for t in top])
    ax.set_xlabel("token id")
    ax.set_ylabel(ylabel)
    ax.set_title(title)
    return fig, ax


def top2_diff_per_token(tokens: pl.DataFrame, d_mlp: int, basis: str):
    """d_tok = top-1 minus top-2 neuron congruence, for every token: tokens with one dedicated neuron stand out."""
    fig, _ = _per_token(tokens["d_tok"].to_numpy(), tokens, d_mlp, "d_tok = top-1 − top-2\nneuron congruence",
                        f"Top-1 − top-2 neuron congruence per token (basis {basis}); "
                        f"best {N_TOP}: token, its top neuron, d_tok")
    fig.tight_layout()
    return fig


N_HIGHEST = 100  # the tokens the notebook's top_neuron_for_each_token_fig names (cell 37)


def top_neuron_per_token(tokens: pl.DataFrame, d_mlp: int, basis: str):
    """Each token's highest neuron congruence (the post's footnote 4 figure, the notebook's
    top_neuron_for_each_token_fig, cell 37): the best named with their neuron, and the neuron that holds the most of
    the N_HIGHEST highest (GPT-2 Large: the "forbidden neuron" L35N3354 and its glitch tokens)."""
    top = tokens["top_values"].list.first().to_numpy().astype(np.float64)
    fig, ax = _per_token(top, tokens, d_mlp, "highest neuron congruence\nmax over neurons",
                         f"Highest neuron congruence per token (basis {basis}); best {N_TOP}: token, its top "
                         "neuron, value")
    highest = tokens["top_neurons"].list.first().to_numpy()[np.argsort(-top)[:N_HIGHEST]]
    ids, counts = np.unique(highest, return_counts=True)
    most = int(np.argmax(counts))  # (np.unique sorts the ids: ties go to the lowest)
    ax.text(0.01, 0.97, f"{flat_name(ids[most], d_mlp)} is the top neuron of {counts[most]} of the "
            f"{len(highest)} highest", transform=ax.transAxes, ha="left", va="top", fontsize=8,
            bbox=dict(boxstyle="round", fc="white", ec="0.7"))
    fig.tight_layout()
    return fig


def _per_neuron(v: np.ndarray, neurons: pl.DataFrame, token_strs: Sequence[str], ylabel: str, title: str):
    """One value per neuron over flat neuron ids (grouped by layer), the best N_TOP numbered and listed with their
    top token."""
    style()
    n_layers = int(neurons["layer"].max()) + 1
    d_mlp = len(v) // n_layers
    top1 = neurons["top_token_ids"].list.first().to_numpy()
    fig, ax = plt.subplots(figsize=(11, 4))
    _layer_scatter(ax, v, n_layers, d_mlp)
    _margin(ax)
    top = np.argsort(-v)[:N_TOP]
    _label_numbered(ax, top, v[top], [f"{flat_name(n, d_mlp)} {_tok(token_strs[top1[n]])} {v[n]:.3g}" for n in top])
    ax.set_ylabel(ylabel)
    ax.set_title(title)
    fig.tight_layout()
    return fig


def top2_diff_per_neuron(neurons: pl.DataFrame, token_strs: Sequence[str], basis: str):
    """d_neu = top-1 minus top-2 token congruence, for every neuron: neurons dedicated to one token stand out."""
    return _per_neuron(neurons["d_neu"].to_numpy(), neurons, token_strs, "d_neu = top-1 − top-2\ntoken congruence",
                       f"Top-1 − top-2 token congruence per neuron (basis {basis}); "
                       f"best {N_TOP}: neuron, its top token, d_neu")


def top_token_per_neuron(neurons: pl.DataFrame, token_strs: Sequence[str], basis: str):
    """Each neuron's highest token congruence (the notebook's top_token_for_each_neuron_fig, cell 39, shown there
    but not saved): a neuron whose top token is far above every other neuron's writes that token hardest, whether
    or not a second token follows close behind (which d_neu, top2_diff_per_neuron, would hide)."""
    top = neurons["top_values"].list.first().to_numpy().astype(np.float64)
    return _per_neuron(top, neurons, token_strs, "highest token congruence\nmax over tokens",
                       f"Highest token congruence per neuron (basis {basis}); best {N_TOP}: neuron, its top token, "
                       "value")


def top_pairs(pairs: pl.DataFrame, n: int, basis: str):
    """The n best mutually exclusive pairs, score = d_neu · d_tok, rank 1 on top; the factors listed on the right.
    Log scale when the scores span more than two decades (a few dedicated neurons, then noise)."""
    from matplotlib.transforms import blended_transform_factory

    style()
    t = pairs.head(n).to_dict(as_series=False)
    k = len(t["rank"])
    fig, ax = plt.subplots(figsize=(9, 1.4 + 0.3 * max(k, 3)))
    y = np.arange(k)[::-1]
    scores = np.asarray(t["score"], dtype=float)
    log = k > 0 and scores.min() > 0 and scores.max() / scores.min() > 100
    if log:
        ax.set_xscale("log")
        left = scores.min() / 2
        ax.barh(y, scores - left, left=left, color="C1")
        ax.set_xlim(left, scores.max() * 2)
    else:
        ax.barh(y, scores, color="C1")
        ax.set_xlim(0, max(scores.max(initial=0) * 1.05, 1e-12))
    ax.set_yticks(y)
    ax.set_yticklabels([f"{r}. {_tok(s)} – L{l}N{nn}" for r, s, l, nn in
                        zip(t["rank"], t["token_str"], t["layer"], t["neuron"])], fontsize=8)
    right = blended_transform_factory(ax.transAxes, ax.transData)
    ax.text(1.02, k - 0.4, "score = d_neu × d_tok", transform=right, fontsize=7, family="monospace",
            va="bottom", weight="bold")
    for yy, sc, dn, dt in zip(y, scores, t["d_neu"], t["d_tok"]):
        ax.text(1.02, yy, f"{sc:<9.3g}= {dn:<8.3g}× {dt:.3g}", transform=right, va="center", fontsize=7,
                family="monospace")
    ax.grid(axis="y", visible=False)
    ax.set_ylim(-0.6, k - 0.4)
    ax.set_xlabel("score = d_neu · d_tok" + (" (log scale)" if log else ""))
    ax.set_title(f"Top {k} of {pairs.height:,} mutually exclusive neuron–token pairs (basis {basis})")
    fig.tight_layout()
    return fig


def _percentile_bands(ax, layer: np.ndarray, values: np.ndarray, n_layers: int, colour: str) -> None:
    q = np.array([np.nanpercentile(values[layer == l], [0, 5, 50, 95, 100]) if np.any(layer == l) else
                  [np.nan] * 5 for l in range(n_layers)])
    x = np.arange(n_layers)
    ax.fill_between(x, q[:, 0], q[:, 4], color=colour, alpha=0.12, lw=0, label="min–max")
    ax.fill_between(x, q[:, 1], q[:, 3], color=colour, alpha=0.3, lw=0, label="5–95%")
    ax.plot(x, q[:, 2], color=colour, lw=1.5, label="median", zorder=4)
    ax.set_xlim(-0.5, n_layers - 0.5)


N_NAMED = 12  # classified neurons named on classes_by_layer when there are at most this many (else 3 per class)


def _named_classified(cls: np.ndarray, kurt: np.ndarray, var: np.ndarray) -> np.ndarray:
    """Indices of the classified neurons to name: all of them if few, else the 3 most extreme of each class
    (highest kurtosis for prediction / suppression, highest variance for partition)."""
    classified = np.flatnonzero(cls != "other")
    if len(classified) <= N_NAMED:
        return classified
    picks = []
    for name, key in (("prediction", kurt), ("suppression", kurt), ("partition", var)):
        idx = np.flatnonzero(cls == name)
        picks.append(idx[np.argsort(-key[idx])[:3]])
    return np.concatenate(picks)


def _classified_points(ax, layer: np.ndarray, values: np.ndarray, cls: np.ndarray, names: Sequence[str],
                       named: np.ndarray, classes: Sequence[str]) -> None:
    """The neurons that got a class, as points over the bands (jittered within their layer); the `named` ones of
    `classes` labelled. Call once the axes' limits are final."""
    jitter = np.random.default_rng(0).uniform(-0.25, 0.25, len(layer))
    x = layer + jitter
    placed: list = []
    # a few classified neurons are big dots; thousands (GPT-2 Large's late layers) small and translucent, so that
    # they show where they pile up without hiding the bands and the median drawn over them
    n = int(np.sum(cls != "other"))
    size, alpha = (14, 0.8) if n <= 100 else (7, 0.5) if n <= 1000 else (3, 0.3)
    for name in ("prediction", "suppression", "partition"):
        m = cls == name
        if m.any():
            ax.scatter(x[m], values[m], s=size, color=CLASS_COLOURS[name], lw=0, alpha=alpha, rasterized=True,
                       zorder=3)
        if name in classes:
            idx = named[cls[named] == name]
            _label_points(ax, x[idx], values[idx], [names[i] for i in idx], CLASS_COLOURS[name], 7, placed)


def _plain_log(ax) -> None:
    from matplotlib.ticker import LogLocator, ScalarFormatter

    ax.set_yscale("log")
    ax.yaxis.set_major_locator(LogLocator(subs=(1, 2, 3, 5)))
    for axis in (ax.yaxis,):
        fmt = ScalarFormatter()
        fmt.set_scientific(False)
        axis.set_major_formatter(fmt)
        axis.set_minor_formatter(plt.NullFormatter())


def _threshold_panel(ax, layer: np.ndarray, values: np.ndarray, n_layers: int, color: str, label: str,
                     threshold: float, ylabel: str, title: str) -> None:
    """One moment by layer on a log axis: percentile bands and the class threshold as a dashed line."""
    _percentile_bands(ax, layer, values, n_layers, color)
    ax.axhline(threshold, color="k", ls="--", lw=0.8, label=label)
    _plain_log(ax)
    ax.set_ylabel(ylabel)
    ax.set_title(title)
    ax.legend(fontsize=7, loc="best")


def classes_by_layer(neurons: pl.DataFrame, kurtosis: float, partition_var: float):
    """Gurnee et al. Fig. 5-6: the cosine-congruence moments of every neuron by depth (percentile bands, classified
    neurons as points, a few named), and the share of prediction / suppression / partition neurons per layer."""
    style()
    layer = neurons["layer"].to_numpy()
    n_layers = int(layer.max()) + 1
    cls = np.asarray(neurons["neuron_class"].to_list(), dtype=object)
    names = [neuron_name(l, n) for l, n in zip(layer, neurons["neuron"].to_numpy())]
    kurt, skew, var = (neurons[c].to_numpy() for c in ("cos_kurt", "cos_skew", "cos_var"))
    named = _named_classified(cls, kurt, var)
    fig, axes = plt.subplots(2, 2, figsize=(12, 7.5), sharex=True)
    (ak, asw), (av, ac) = axes
    signed = ("prediction", "suppression")
    _threshold_panel(ak, layer, kurt, n_layers, "C4", f"K = {kurtosis:g}", kurtosis,
                     "kurtosis (Gaussian = 3, log scale)", "Kurtosis")
    _classified_points(ak, layer, kurt, cls, names, named, signed)
    _percentile_bands(asw, layer, skew, n_layers, "C1")
    asw.axhline(0, color="k", lw=0.6)
    asw.set_ylabel("skew")
    asw.set_title("Skew (> 0: prediction, < 0: suppression)")
    _classified_points(asw, layer, skew, cls, names, named, signed)
    _threshold_panel(av, layer, var, n_layers, "C0", f"V = {partition_var:g}", partition_var,
                     "variance (log scale)", "Variance")
    av.set_xlabel("layer")
    _classified_points(av, layer, var, cls, names, named, ("partition",))
    x = np.arange(n_layers)
    width = 0.8 / 3
    per_layer = np.bincount(layer, minlength=n_layers)
    rules = {"prediction": f"kurtosis > {kurtosis:g}, skew > 0", "suppression": f"kurtosis > {kurtosis:g}, skew < 0",
             "partition": f"variance > {partition_var:g}, kurtosis ≤ {kurtosis:g}"}
    for j, name in enumerate(("prediction", "suppression", "partition")):
        counts = np.bincount(layer[cls == name], minlength=n_layers)
        ac.bar(x + (j - 1) * width, 100 * counts / per_layer, width, color=CLASS_COLOURS[name],
               label=f"{name}: {rules[name]} ({counts.sum():,})")
    ac.set_ylabel("% of the layer's neurons")
    ac.set_xlabel("layer")
    ac.set_title("Neuron classes by layer")
    if np.any(cls != "other"):
        ac.set_ylim(bottom=0)
    else:  # (a random model): say so, rather than draw an empty axis around zero
        ac.set_ylim(0, 1)
        ac.text(0.5, 0.5, f"no neuron of {len(layer):,} reaches a class threshold", transform=ac.transAxes,
                ha="center", va="center", fontsize=9, color="0.35")
    ac.legend(fontsize=7, loc="upper left")
    ac.set_xticks(x if n_layers <= 12 else x[:: max(1, n_layers // 12)])
    fig.suptitle(f"Moments of each neuron's cosine congruence with W_U, by layer ({len(layer):,} neurons): "
                 "bands = percentiles within the layer, points = classified neurons", fontsize=11)
    fig.tight_layout()
    return fig


# --- all of a model's weights figures ------------------------------------------------------------------------------


def input_row(weights, layer: int, neuron: int) -> np.ndarray:
    """(V,) the neuron's input weights against every token embedding, W_E · w_in[:, n] (float32, as the notebook)."""
    return (weights.W_E.float() @ weights.w_in[layer][:, neuron].float()).numpy()


def neurons_to_draw(pairs: pl.DataFrame, listed: Sequence[Sequence[int]]) -> list[tuple[int, int]]:
    """The neurons drawn against all tokens: those listed (watch.neurons), then those of the TOP_PAIR_FIGURES best
    pairs, each once."""
    top = pairs.head(TOP_PAIR_FIGURES).select("layer", "neuron").rows()
    return list(dict.fromkeys([(layer, neuron) for layer, neuron in listed] + top))


def entropy_by_layer(neurons: pl.DataFrame, n_named: int = 5):
    """Entropy neurons (Gurnee et al. 2024, Sec. 5.3): left, every neuron's share of ‖w_out‖² in the unembedding's
    null space by layer (median and 5-95 % band); right, that share against ‖w_out‖, coloured by layer, the
    `n_named` neurons of largest share x norm named (large norm, all in the null space: an entropy neuron)."""
    style()
    layer = neurons["layer"].to_numpy()
    share, norm = neurons["null_share"].to_numpy(), neurons["w_out_norm"].to_numpy()
    n_layers = int(layer.max()) + 1
    fig, (ax, bx) = plt.subplots(1, 2, figsize=(11, 4))
    ls = np.arange(n_layers)
    q = np.array([np.nanpercentile(share[layer == l], [5, 50, 95]) for l in ls])
    ax.fill_between(ls, q[:, 0], q[:, 2], alpha=0.25, color="C0", label="5–95 %")
    ax.plot(ls, q[:, 1], "o-", color="C0", ms=3, label="median")
    ax.plot(ls, [np.nanmax(share[layer == l]) for l in ls], "^", color="C3", ms=4, label="max")
    ax.set(xlabel="layer", ylabel="share of ‖w_out‖² in the null space", title="null-space share by layer")
    ax.set_xticks(ls[:: max(1, -(-n_layers // 18))])
    ax.legend()
    sc = bx.scatter(norm, share, c=layer, s=5, cmap="viridis", alpha=0.7, rasterized=True)
    bar = fig.colorbar(sc, ax=bx, label="layer")
    bar.set_ticks(ls[:: max(1, -(-n_layers // 12))])
    score = np.nan_to_num(share * norm, nan=-np.inf)
    top = np.argsort(-score, kind="stable")[:n_named]
    d_mlp = int(neurons["neuron"].max()) + 1
    _label_points(bx, norm[top], share[top], [flat_name(int(f), d_mlp) for f in top])
    bx.set(xlabel="‖w_out‖", ylabel="null-space share", title="entropy neurons: large norm, all in the null space")
    fig.tight_layout()
    return fig


def draw_weights_figures(out_dir: str | Path, weights, tokens: pl.DataFrame, neurons: pl.DataFrame, pairs: pl.DataFrame,
                         neurons_to_draw: Sequence[tuple[int, int]], token_ids: Sequence[int], basis: str,
                         kurtosis: float, partition_var: float) -> list[Path]:
    """Every weights figure of docs/paper.md into out_dir (PNG + SVG). The "vs all" figures compute their one row or
    column of the congruence matrix directly from `weights` (anneuron.weights.congruence.Weights): the pass keeps
    none."""
    from anneuron.weights.congruence import congruence_column, congruence_row

    out_dir = Path(out_dir)
    d_mlp = weights.d_mlp
    strs = tokens["token_str"].to_list()
    written: list[Path] = []
    cols = {c: neurons[c].to_numpy() for c in ("d_neu", "cos_skew", "cos_kurt")}
    cls = neurons["neuron_class"].to_list()
    for layer, neuron in neurons_to_draw:
        flat = layer * d_mlp + neuron
        stats = {"d_neu": float(cols["d_neu"][flat]), "cos skew": float(cols["cos_skew"][flat]),
                 "cos kurtosis": float(cols["cos_kurt"][flat]), "class": cls[flat]}
        fig = neuron_vs_tokens(congruence_row(weights, flat, basis), layer, neuron, strs, basis, stats)
        written += save_figure(fig, out_dir / f"{neuron_name(layer, neuron)}_vs_tokens")
        if weights.w_in is not None:
            fig = neuron_vs_tokens(input_row(weights, layer, neuron), layer, neuron, strs, basis, side="in")
            written += save_figure(fig, out_dir / f"{neuron_name(layer, neuron)}_in_vs_tokens")
    for t in token_ids:
        fig = token_vs_neurons(congruence_column(weights, t, basis), t, strs[t], weights.n_layers, d_mlp, basis)
        written += save_figure(fig, out_dir / f"token_{t}_vs_neurons")
    written += save_figure(top2_diff_per_token(tokens, d_mlp, basis), out_dir / "top2_diff_per_token")
    written += save_figure(top_neuron_per_token(tokens, d_mlp, basis), out_dir / "top_neuron_per_token")
    written += save_figure(top2_diff_per_neuron(neurons, strs, basis), out_dir / "top2_diff_per_neuron")
    written += save_figure(top_token_per_neuron(neurons, strs, basis), out_dir / "top_token_per_neuron")
    written += save_figure(top_pairs(pairs, TOP_PAIRS_SHOWN, basis), out_dir / "top_pairs")
    written += save_figure(classes_by_layer(neurons, kurtosis, partition_var), out_dir / "classes_by_layer")
    written += save_figure(entropy_by_layer(neurons), out_dir / "entropy_by_layer")
    return written
