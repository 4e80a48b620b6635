"""The paper check: every number the post published for GPT-2 Large (docs/paper.md) beside ours, read from one model's
stage outputs (docs/contracts.md).

Two kinds of rows. *Same item*: our value of exactly what the post measured (P(" an") on the clean prompt, the
mlp_out patch score of layer 31, neuron L31N892's exact patch score, ...). *Best*: what ranks first by the same
measure in our run (the layer whose mlp_out restores most, our top mutually exclusive pair, ...), so a run that
finds the phenomenon elsewhere still shows what it found. Rows about a GPT-2 Large neuron or layer number only make
sense for GPT-2 Large and are left out for other models; the post's numbers stay in the table as a reference, but
`difference` (ours - published) is filled for GPT-2 Large only. A missing input (an experiment not configured, a
stage not run, a renamed output) gives a row whose `status` is "missing", shown in red on the page: never a silently
empty check. Every path comes from anneuron.contracts.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import pyarrow as pa

from anneuron import contracts as K
from anneuron.io import REBUILD, read_json, read_parquet
from anneuron.report.render import render
from anneuron.stage_config import PaperCheckConfig

REFERENCE_MODEL = "gpt2-large"
# The post's settings (docs/paper.md "What the paper config pins and why"; workflow/configs/paper.yaml pins them all).
# A row lists the settings its number depends on and says "not comparable: ..." when the run differs in any.
POST_DATASET_REVISION = "eb25b8a95049673437d6e0c9bfa95070f3b79913"  # NeelNanda/pile-10k (docs/paper.md: why)
PAPER_SETTINGS = {
    "dataset": "NeelNanda/pile-10k", "split": "train", "text_column": "text", "config_name": None,
    "data_files": None, "revision": POST_DATASET_REVISION, "max_docs": None, "max_tokens": None,
    "chunking": "truncate", "seq_len": 1024, "pred_post": True, "counts": "post", "basis": "we",
    "congruence_dtype": "float32", "dtype": "float32", "readout": "post", "binning": "post", "standout_z": 8,
    "standout_min_score": 0,
}
# The post's prompt pairs (clean, corrupted, answer, wrong): an_a is the post's, the others the tall/short notes'.
POST_PROMPTS = {
    "an_a": ("I climbed up the pear tree and picked a pear. I climbed up the apple tree and picked",
             "I climbed up the pear tree and picked a pear. I climbed up the lemon tree and picked", " an", " a"),
    "tall_short": ("John is tall. Mary is", "John is short. Mary is", " short", " tall"),
    "big_small": ("Issac is big. Todd is small. John is big. Mary is",
                  "Issac is small. Todd is big. John is small. Mary is", " small", " big"),
    "huge_tiny": ("Issac is huge. Todd is tiny. John is huge. Mary is",
                  "Issac is tiny. Todd is huge. John is tiny. Mary is", " tiny", " huge"),
}
TALL_SHORT_FAMILY = ("tall_short", "big_small", "huge_tiny")
PAPER_EXPERIMENTS = ("an_a", *TALL_SHORT_FAMILY)

# Which settings each kind of row depends on. `prompts.<exp>`: that experiment's prompt pair is the post's;
# `layers.<exp>:<l>`: that experiment patched every neuron of layer l exactly (read from its summary.json).
DATA = ("dataset", "split", "text_column", "config_name", "data_files", "revision", "max_docs", "max_tokens",
        "chunking", "seq_len")
WEIGHTS = ("basis", "congruence_dtype")
OCCURRED = (*DATA, "counts")  # token counts: no model involved
PREDICTED = (*DATA, "counts", "dtype", "pred_post")
CURVES = (*DATA, "dtype", "pred_post", "readout", "binning")
AN_A = ("dtype", "prompts.an_a")


def _patched(exp: str, layer: int) -> tuple[str, ...]:
    """A score over a whole layer patched exactly (the best neuron, the next best, a layer's lead)."""
    return ("dtype", f"prompts.{exp}", f"layers.{exp}:{layer}")


def _exact(exp: str) -> tuple[str, ...]:
    """One neuron's exact score: it needs that score to exist (else the row says so), not its whole layer."""
    return ("dtype", f"prompts.{exp}")


def _standouts(exps: tuple[str, ...]) -> tuple[str, ...]:
    return ("dtype", "standout_z", "standout_min_score", *(f"prompts.{e}" for e in exps),
            *(f"layers.{e}:25" for e in exps))


SCHEMA = K.PAPER_CHECK


@dataclass(frozen=True)
class Value:
    """Our side of one row: the value, what it is about, where it came from, and why it may be missing."""

    value: float | None = None
    item: str | None = None
    source: str | None = None
    note: str | None = None
    not_comparable: str | None = None  # why this value is not the post's quantity (e.g. attribution, not exact)


@dataclass(frozen=True)
class Check:
    """One published number and how to read ours from the outputs (`compute(outputs) -> Value`)."""

    section: str
    key: str
    quantity: str
    published_item: str | None
    published: float
    compute: Callable[["Outputs"], Value]
    tolerance: float = 0.0  # |ours - published| within which ours matches (docs/paper.md justifies each)
    reference_only: bool = False  # names a GPT-2 Large neuron/layer: only meaningful for that model
    settings: tuple[str, ...] = AN_A  # the settings its value depends on (see DATA, _patched, ...)


class Outputs:
    """Lazy, cached access to one model's stage outputs; a missing file reads as None."""

    def __init__(self, results: str | Path, dataset: str):
        self.root = Path(results)
        self.dataset = dataset
        self._cache: dict[str, object] = {}

    def rel(self, path: str) -> str:
        return f"{self.root.name}/{path}"

    def table(self, path: str, columns: list[str] | None = None, filters: list | None = None) -> list[dict] | None:
        """Rows of a Parquet output (only `columns`, only rows matching pyarrow `filters`: the weights tables of
        GPT-2 Large have 50,257 and 184,320 rows)."""
        key = repr((path, columns, filters))
        if key not in self._cache:
            p = self.root / path
            self._cache[key] = read_parquet(p, columns=columns, filters=filters).to_pylist() if p.exists() else None
        return self._cache[key]  # type: ignore[return-value]

    def json(self, path: str) -> dict | None:
        if path not in self._cache:
            p = self.root / path
            self._cache[path] = read_json(p, REBUILD) if p.exists() else None
        return self._cache[path]  # type: ignore[return-value]


def _missing(o: Outputs, path: str) -> Value:
    return Value(source=o.rel(path), note=f"missing: {path}")


def _pair_label(token_str: str, layer: int, neuron: int) -> str:
    return f"{token_str!r}–{K.neuron_name(layer, neuron)}"


# --- experiments (an_a; the post's prompt pair) ---------------------------------------------------------------

def _prob(exp: str, prompt: str, side: str) -> Callable[[Outputs], Value]:
    """P(answer) or P(wrong) on one prompt, from the experiment's summary (whatever their rank: the top-10 table
    need not hold them); the item is the token."""
    def f(o: Outputs) -> Value:
        path = K.relative("exp_summary", exp=exp)
        s = o.json(path)
        if s is None:
            return _missing(o, path)
        field = f"prob_{side}_{prompt}"
        return Value(s.get(field), repr(s.get(side)), o.rel(path), None if field in s else f"no {field} in summary")
    return f


def _summary(exp: str, field: str) -> Callable[[Outputs], Value]:
    def f(o: Outputs) -> Value:
        path = K.relative("exp_summary", exp=exp)
        s = o.json(path)
        if s is None:
            return _missing(o, path)
        return Value(s.get(field), None, o.rel(path), None if field in s else f"no {field} in summary")
    return f


def _lens_rows(o: Outputs, exp: str, convention: str) -> list[dict] | None:
    rows = o.table(K.relative("exp_logit_lens", exp=exp))
    if rows is None:
        return None
    return sorted((r for r in rows if r["convention"] == convention), key=lambda r: r["index"])


def _lens_at(exp: str, label: str, convention: str = "post") -> Callable[[Outputs], Value]:
    def f(o: Outputs) -> Value:
        path = K.relative("exp_logit_lens", exp=exp)
        rows = _lens_rows(o, exp, convention)
        if rows is None:
            return _missing(o, path)
        hit = [r for r in rows if r["label"] == label]
        if not hit:
            return Value(item=label, source=o.rel(path), note=f"no label {label} (model too shallow)")
        return Value(hit[0]["logit_diff"], label, o.rel(path))
    return f


def _lens_jump(exp: str, convention: str = "post") -> Callable[[Outputs], Value]:
    """Where the logit difference rises most in one step; the value is the lens at that label."""
    def f(o: Outputs) -> Value:
        path = K.relative("exp_logit_lens", exp=exp)
        rows = _lens_rows(o, exp, convention)
        if rows is None:
            return _missing(o, path)
        if len(rows) < 2:
            return Value(source=o.rel(path), note="fewer than two lens entries")
        step = max(range(1, len(rows)), key=lambda i: rows[i]["logit_diff"] - rows[i - 1]["logit_diff"])
        jump = rows[step]["logit_diff"] - rows[step - 1]["logit_diff"]
        return Value(rows[step]["logit_diff"], rows[step]["label"], o.rel(path),
                     f"step from {rows[step - 1]['label']}: {jump:+.3f}")
    return f


def _last_pos_scores(o: Outputs, exp: str, component: str) -> list[dict] | None:
    rows = o.table(K.relative("exp_layers", exp=exp))
    if rows is None:
        return None
    rows = [r for r in rows if r["component"] == component]
    if not rows:
        return []
    last = max(r["pos"] for r in rows)
    return [r for r in rows if r["pos"] == last]


def _layer_score(exp: str, component: str, layer: int) -> Callable[[Outputs], Value]:
    def f(o: Outputs) -> Value:
        path = K.relative("exp_layers", exp=exp)
        rows = _last_pos_scores(o, exp, component)
        if rows is None:
            return _missing(o, path)
        hit = [r for r in rows if r["layer"] == layer]
        if not hit:
            return Value(item=f"L{layer}", source=o.rel(path), note=f"no layer {layer}")
        return Value(hit[0]["score"], f"L{layer}", o.rel(path))
    return f


def _best_layer(exp: str, component: str) -> Callable[[Outputs], Value]:
    def f(o: Outputs) -> Value:
        path = K.relative("exp_layers", exp=exp)
        rows = _last_pos_scores(o, exp, component)
        if rows is None:
            return _missing(o, path)
        if not rows:
            return Value(source=o.rel(path), note=f"no {component} rows")
        best = max(rows, key=lambda r: r["score"])
        return Value(best["score"], f"L{best['layer']}", o.rel(path))
    return f


def _exact_rows(o: Outputs, exp: str) -> list[dict] | None:
    rows = o.table(K.relative("exp_neurons", exp=exp))
    if rows is None:
        return None
    return [r for r in rows if r["exact"] is not None and not math.isnan(r["exact"])]


def _neuron_exact(exp: str, layer: int, neuron: int) -> Callable[[Outputs], Value]:
    def f(o: Outputs) -> Value:
        path = K.relative("exp_neurons", exp=exp)
        rows = o.table(path)
        if rows is None:
            return _missing(o, path)
        hit = [r for r in rows if r["layer"] == layer and r["neuron"] == neuron]
        if not hit:
            return Value(item=K.neuron_name(layer, neuron), source=o.rel(path), note="neuron not in the table")
        r = hit[0]
        if r["exact"] is None or math.isnan(r["exact"]):
            return Value(None, K.neuron_name(layer, neuron), o.rel(path), f"attribution {r['attribution']:.4g}",
                         not_comparable=f"layer {layer} was not patched exactly (attribution only)")
        return Value(r["exact"], K.neuron_name(layer, neuron), o.rel(path))
    return f


def _whole_layers(o: Outputs, exp: str) -> list[int] | None:
    """The layers whose every neuron the experiment patched exactly (its summary's neuron_layers)."""
    s = o.json(K.relative("exp_summary", exp=exp))
    return None if s is None else list(s.get("neuron_layers") or [])


def _layer_ranked(o: Outputs, exp: str, layer: int) -> list[dict] | None:
    """Exact scores of one layer, best first, or None when the layer was not patched exactly in whole: the post's
    "best" is over a whole layer, never over the few neurons outside it that attribution picked for an exact patch."""
    rows, layers = _exact_rows(o, exp), _whole_layers(o, exp)
    if rows is None or layers is None or layer not in layers:
        return None
    return sorted((r for r in rows if r["layer"] == layer), key=lambda r: -r["exact"])


def _best_neuron(exp: str, rank: int) -> Callable[[Outputs], Value]:
    """rank 1: the best exact score over the layers patched whole; rank 2: the next best in the same layer (the
    post patched one layer)."""
    def f(o: Outputs) -> Value:
        path = K.relative("exp_neurons", exp=exp)
        rows, layers = _exact_rows(o, exp), _whole_layers(o, exp)
        if rows is None or layers is None:
            return _missing(o, path if rows is None else K.relative("exp_summary", exp=exp))
        rows = [r for r in rows if r["layer"] in layers]
        if not rows:
            return Value(source=o.rel(path), note="no layer was patched exactly in whole",
                         not_comparable="no layer was patched neuron by neuron (attribution only)")
        best = max(rows, key=lambda r: r["exact"])
        ranked = _layer_ranked(o, exp, best["layer"]) or []
        if len(ranked) < rank:
            return Value(source=o.rel(path), note="too few exact scores")
        r = ranked[rank - 1]
        return Value(r["exact"], K.neuron_name(r["layer"], r["neuron"]), o.rel(path))
    return f


def _layer_margin(exp: str, layer: int) -> Callable[[Outputs], Value]:
    """How far the top exact neuron of `layer` leads the next one (the notes' an_a control: L25N4425 tops layer 25
    "ONLY by 0.01"); the item is the top neuron."""
    def f(o: Outputs) -> Value:
        path = K.relative("exp_neurons", exp=exp)
        if _exact_rows(o, exp) is None or _whole_layers(o, exp) is None:
            return _missing(o, path)
        ranked = _layer_ranked(o, exp, layer)
        if ranked is None:
            return Value(source=o.rel(path), note=f"layer {layer} not patched exactly in whole",
                         not_comparable=f"layer {layer} was not patched exactly in {exp}")
        if len(ranked) < 2:
            return Value(source=o.rel(path), note="too few exact scores")
        top, second = ranked[0], ranked[1]
        return Value(top["exact"] - second["exact"], K.neuron_name(top["layer"], top["neuron"]), o.rel(path),
                     f"{top['exact']:.4g} vs {K.neuron_name(second['layer'], second['neuron'])} "
                     f"{second['exact']:.4g}")
    return f


# --- weights -----------------------------------------------------------------------------------------------------

def _d_mlp(o: Outputs) -> int | None:
    """Neurons per layer (flat id = layer * d_mlp + neuron), from neurons.parquet."""
    ids = o.table(K.relative("neurons"), columns=["neuron"])
    return 1 + max(r["neuron"] for r in ids) if ids else None


def _congruence(layer: int, neuron: int, token: str) -> Callable[[Outputs], Value]:
    """C[n, t] if t is among the neuron's top tokens (neurons.parquet) or n among the token's top neurons."""
    def f(o: Outputs) -> Value:
        item = f"{K.neuron_name(layer, neuron)}·{token!r}"
        npath, tpath = K.relative("neurons"), K.relative("weights_tokens")
        tokens = o.table(tpath, filters=[("token_str", "=", token)])
        if tokens is None:
            return _missing(o, tpath)
        if not tokens:
            return Value(item=item, source=o.rel(tpath), note=f"no token {token!r}")
        t = tokens[0]
        d_mlp = _d_mlp(o)
        if d_mlp:
            flat = layer * d_mlp + neuron
            if flat in t["top_neurons"]:
                return Value(t["top_values"][t["top_neurons"].index(flat)], item, o.rel(tpath))
            row = o.table(npath, filters=[("layer", "=", layer), ("neuron", "=", neuron)])
            if row and t["token_id"] in row[0]["top_token_ids"]:
                r = row[0]
                return Value(r["top_values"][r["top_token_ids"].index(t["token_id"])], item, o.rel(npath))
        return Value(item=item, source=o.rel(tpath), note="not among the stored top-k (raise congruence.top_k)")
    return f


def _pair_at_rank(rank: int) -> Callable[[Outputs], Value]:
    def f(o: Outputs) -> Value:
        path = K.relative("pairs")
        rows = o.table(path)
        if rows is None:
            return _missing(o, path)
        hit = [r for r in rows if r["rank"] == rank]
        if not hit:
            return Value(source=o.rel(path), note=f"fewer than {rank} pairs")
        r = hit[0]
        return Value(r["score"], _pair_label(r["token_str"], r["layer"], r["neuron"]), o.rel(path))
    return f


def _pair_of(token: str, layer: int, neuron: int, field: str) -> Callable[[Outputs], Value]:
    def f(o: Outputs) -> Value:
        path = K.relative("pairs")
        rows = o.table(path)
        if rows is None:
            return _missing(o, path)
        item = _pair_label(token, layer, neuron)
        hit = [r for r in rows if r["layer"] == layer and r["neuron"] == neuron and r["token_str"] == token]
        if not hit:
            return Value(item=item, source=o.rel(path), note="not a mutually exclusive pair here")
        return Value(hit[0][field], item, o.rel(path))
    return f


N_FORBIDDEN = 100  # tokens named on the post's "highest neuron congruence for each token" figure (cell 37)


def _forbidden(layer: int, neuron: int) -> Callable[[Outputs], Value]:
    """The post's footnote 4: the tokens with the highest top-neuron congruence (the 100 its figure names) are
    mostly those of one "forbidden neuron". Value: the neuron's rank by how many of those tokens it is the top
    neuron of (1 = the most); item: the neuron ranked first."""
    def f(o: Outputs) -> Value:
        path = K.relative("weights_tokens")
        rows, d_mlp = o.table(path, columns=["top_neurons", "top_values"]), _d_mlp(o)
        if rows is None or d_mlp is None:
            return _missing(o, path if rows is None else K.relative("neurons"))
        top = sorted(rows, key=lambda r: -r["top_values"][0])[:N_FORBIDDEN]
        counts: dict[int, int] = {}
        for r in top:
            counts[r["top_neurons"][0]] = counts.get(r["top_neurons"][0], 0) + 1
        mine = counts.get(layer * d_mlp + neuron, 0)
        first = max(counts, key=lambda n: (counts[n], -n))
        return Value(1 + sum(c > mine for c in counts.values()), K.neuron_name(*divmod(first, d_mlp)), o.rel(path),
                     f"{K.neuron_name(layer, neuron)} tops {mine} of the {len(top)} tokens with the highest "
                     f"top-neuron congruence; {K.neuron_name(*divmod(first, d_mlp))} tops {counts[first]}")
    return f


# --- dataset -----------------------------------------------------------------------------------------------------

def _count(token: str, field: str) -> Callable[[Outputs], Value]:
    """Predicted (with `pred_post` when recorded, as the post counted) or occurred, for one token string."""
    def f(o: Outputs) -> Value:
        path = K.relative("predictions", dataset=o.dataset)
        hit = o.table(path, filters=[("token_str", "=", token)])
        if hit is None:
            return _missing(o, path)
        if not hit:
            return Value(0.0, repr(token), o.rel(path), "token never predicted nor seen")
        r = hit[0]
        if field == "predicted":
            if r.get("predicted_post") is not None:
                return Value(r["predicted_post"], repr(token), o.rel(path), "pred_post")
            return Value(r["predicted"], repr(token), o.rel(path), "real top-1 (record.pred_post off)")
        return Value(r[field], repr(token), o.rel(path))
    return f


def _top_bin(layer: int, neuron: int, token: str) -> Callable[[Outputs], Value]:
    """The share of `token` top predictions (hits / count) in the neuron's highest activation bin that holds any
    position: the curve's right end, as the post's figure shows it (no minimum count; under `binning: floor` the
    table leaves a thin bin's proportion empty, so the share is computed here)."""
    def f(o: Outputs) -> Value:
        path = K.relative("curves", dataset=o.dataset)
        rows = o.table(path, filters=[("layer", "=", layer), ("neuron", "=", neuron), ("token_str", "=", token)])
        item = f"{K.neuron_name(layer, neuron)}·{token!r}"
        if rows is None:
            return _missing(o, path)
        rows = [r for r in rows if r["count"] > 0]
        if not rows:
            return Value(item=item, source=o.rel(path), note="not watched (watch.neurons) or no positions")
        r = max(rows, key=lambda r: r["bin_lo"])
        return Value(r["hits"] / r["count"], item, o.rel(path),
                     f"bin [{r['bin_lo']:g}, {r['bin_hi']:g}): {r['hits']} of {r['count']}")
    return f


# --- experiments across prompts ----------------------------------------------------------------------------------


def _standout_count(layer: int, neuron: int, exps: tuple[str, ...]) -> Callable[[Outputs], Value]:
    def f(o: Outputs) -> Value:
        found, flagged = [], []
        for exp in exps:
            rows = o.table(K.relative("exp_neurons", exp=exp))
            if rows is None:
                continue
            found.append(exp)
            if any(r["layer"] == layer and r["neuron"] == neuron and r["standout"] for r in rows):
                flagged.append(exp)
        if not found:
            return Value(source=o.rel("experiments"), note="missing: none of " + ", ".join(exps) + " was run")
        note = None if len(found) == len(exps) else "missing: " + ", ".join(sorted(set(exps) - set(found)))
        return Value(float(len(flagged)), K.neuron_name(layer, neuron) + (": " + ", ".join(flagged) if flagged else ""),
                     o.rel(K.relative("exp_neurons", exp="*")), note)
    return f


def _top_standout(exps: tuple[str, ...]) -> Callable[[Outputs], Value]:
    """The most of `exps` (the tall/short family, what the seed notes counted) one neuron stands out in, among those
    whose prompts move the LD enough (contracts.MIN_LD_GAP, as experiments/summary.parquet counts); ties by the
    mean robust z."""
    def f(o: Outputs) -> Value:
        overview = o.table(K.relative("experiments_overview")) or []
        left_out = sorted(r["experiment"] for r in overview if not r["counted"] and r["experiment"] in exps)
        why = (f"not counted (|clean − corrupted LD| < {K.MIN_LD_GAP}, or not finite): " + ", ".join(left_out)
               if left_out else None)
        seen: dict[tuple[int, int], list[tuple[str, float]]] = {}
        found = []
        for exp in exps:
            rows = o.table(K.relative("exp_neurons", exp=exp))
            if rows is None:
                continue
            found.append(exp)
            if exp in left_out:
                continue
            for r in rows:
                if r["standout"]:
                    seen.setdefault((r["layer"], r["neuron"]), []).append((exp, r["standout_z"]))
        if not found:
            return Value(source=o.rel("experiments"), note="missing: none of " + ", ".join(exps) + " was run")
        absent = sorted(set(exps) - set(found))
        note = "; ".join(x for x in ("missing: " + ", ".join(absent) if absent else None, why) if x) or None
        source = o.rel(K.relative("exp_neurons", exp="*"))
        if not seen:
            return Value(0.0, None, source, note or "no neuron stands out")
        key = max(seen, key=lambda n: (len(seen[n]), sum(z for _, z in seen[n]) / len(seen[n])))
        return Value(float(len(seen[key])), K.neuron_name(*key) + ": " + ", ".join(e for e, _ in seen[key]),
                     source, note)
    return f


T_COUNT = 0.005  # relative tolerance of a model-dependent dataset count (docs/paper.md: why)


def _count_tolerance(published: int) -> float:
    return round(T_COUNT * published)


CHECKS: list[Check] = [
    Check("an_a prompts", "p_answer_clean", 'P(" an") on the clean prompt', "' an'", 0.649,
          _prob("an_a", "clean", "answer"), 0.005),
    Check("an_a prompts", "p_wrong_corrupted", 'P(" a") on the corrupted prompt', "' a'", 0.851,
          _prob("an_a", "corrupted", "wrong"), 0.005),
    Check("an_a prompts", "ld_clean", "logit difference, clean", None, 0.986, _summary("an_a", "ld_clean"), 0.005),
    Check("an_a logit lens", "lens_32_pre", "logit lens at 32_pre (post convention)", "32_pre", 1.09,
          _lens_at("an_a", "32_pre"), 0.01, reference_only=True),
    Check("an_a logit lens", "lens_jump", "logit lens after its largest one-step rise", "32_pre", 1.09,
          _lens_jump("an_a"), 0.01),
    Check("an_a patching", "mlp_out_L31", "mlp_out patch score, layer 31, last position", "L31", 0.492,
          _layer_score("an_a", "mlp_out", 31), 0.005, reference_only=True),
    Check("an_a patching", "mlp_out_best", "best mlp_out patch score, last position", "L31", 0.492,
          _best_layer("an_a", "mlp_out"), 0.005),
    Check("an_a patching", "attn_out_L26", "attn_out patch score, layer 26, last position", "L26", 0.524,
          _layer_score("an_a", "attn_out", 26), 0.005, reference_only=True),
    Check("an_a patching", "attn_out_best", "best attn_out patch score, last position", "L26", 0.524,
          _best_layer("an_a", "attn_out"), 0.005),
    Check("an_a patching", "neuron_L31N892", "exact neuron patch score of L31N892", "L31N892", 0.5032,
          _neuron_exact("an_a", 31, 892), 0.0005, reference_only=True, settings=_exact("an_a")),
    Check("an_a patching", "neuron_best", "best exact neuron patch score (layers patched whole)", "L31N892", 0.5032,
          _best_neuron("an_a", 1), 0.0005, settings=_patched("an_a", 31)),
    Check("an_a patching", "neuron_next", "next best exact score in the best neuron's layer", None, 0.008,
          _best_neuron("an_a", 2), 0.002, settings=_patched("an_a", 31)),
    Check("an_a patching", "an_a_L25_margin", "an_a control: lead of layer 25's top exact neuron over the next",
          "L25N4425", 0.01, _layer_margin("an_a", 25), 0.005, reference_only=True, settings=_patched("an_a", 25)),
    Check("an_a patching", "L25N4413_an_a_standout", "an_a control: L25N4413 stands out (1) or not (0)",
          "L25N4413", 0, _standout_count(25, 4413, ("an_a",)), 0, reference_only=True,
          settings=_standouts(("an_a",))),
    Check("weights", "congruence_L31N892_an", 'congruence of L31N892 with " an"', "L31N892·' an'", 2.749,
          _congruence(31, 892, " an"), 0.0005, reference_only=True, settings=WEIGHTS),
    Check("weights", "pair_1", "mutually exclusive pair #1, score", "'i'–L33N4142", 7.467, _pair_at_rank(1), 0.0005,
          settings=WEIGHTS),
    Check("weights", "pair_2", "mutually exclusive pair #2, score", "'/'–L34N862", 5.386, _pair_at_rank(2), 0.0005,
          settings=WEIGHTS),
    Check("weights", "pair_3", "mutually exclusive pair #3, score", "'is'–L34N3402", 4.646, _pair_at_rank(3), 0.0005,
          settings=WEIGHTS),
    Check("weights", "pair_though_rank", 'rank of the pair " though"–L28N1921', "' though'–L28N1921", 15,
          _pair_of(" though", 28, 1921, "rank"), 0, reference_only=True, settings=WEIGHTS),
    Check("weights", "pair_though_score", 'score of the pair " though"–L28N1921', "' though'–L28N1921", 2.274,
          _pair_of(" though", 28, 1921, "score"), 0.0005, reference_only=True, settings=WEIGHTS),
    Check("weights", "pair_an_rank", 'rank of the pair "an"–L34N4549 (among the top 5, after ranks 1-3)',
          "'an'–L34N4549", 4.5, _pair_of("an", 34, 4549, "rank"), 0.5, reference_only=True, settings=WEIGHTS),
    Check("weights", "forbidden_neuron", "rank of L35N3354 by how many of the 100 highest top-neuron congruences "
          "it holds", "L35N3354", 1, _forbidden(35, 3354), 0, reference_only=True, settings=WEIGHTS),
    Check("dataset", "an_predicted", '" an" predicted (top-1)', "' an'", 1471, _count(" an", "predicted"),
          _count_tolerance(1471), settings=PREDICTED),
    Check("dataset", "an_occurred", '" an" occurred', "' an'", 12389, _count(" an", "occurred"), 0,
          settings=OCCURRED),
    Check("dataset", "though_predicted", '" though" predicted (top-1)', "' though'", 214,
          _count(" though", "predicted"), _count_tolerance(214), settings=PREDICTED),
    Check("dataset", "though_occurred", '" though" occurred', "' though'", 654, _count(" though", "occurred"), 0,
          settings=OCCURRED),
    Check("dataset", "an_curve_top_bin", '" an" top-prediction proportion in L31N892\'s highest activation bin',
          "L31N892·' an'", 1.0, _top_bin(31, 892, " an"), 0, reference_only=True, settings=CURVES),
    Check("experiments", "L25N4413_tall_short", "exact patch score of L25N4413 in tall_short", "L25N4413", 0.084,
          _neuron_exact("tall_short", 25, 4413), 0.002, reference_only=True, settings=_exact("tall_short")),
    Check("experiments", "L25N4413_big_small", "exact patch score of L25N4413 in big_small", "L25N4413", 0.045,
          _neuron_exact("big_small", 25, 4413), 0.002, reference_only=True, settings=_exact("big_small")),
    Check("experiments", "L25N4413_huge_tiny", "exact patch score of L25N4413 in huge_tiny", "L25N4413", 0.033,
          _neuron_exact("huge_tiny", 25, 4413), 0.002, reference_only=True, settings=_exact("huge_tiny")),
    Check("experiments", "L25N2896_tall_short", "exact patch score of L25N2896 in tall_short", "L25N2896", 0.026,
          _neuron_exact("tall_short", 25, 2896), 0.005, reference_only=True, settings=_exact("tall_short")),
    Check("experiments", "L25N582_tall_short", "exact patch score of L25N582 in tall_short", "L25N582", 0.03,
          _neuron_exact("tall_short", 25, 582), 0.005, reference_only=True, settings=_exact("tall_short")),
    Check("experiments", "L25N4413_standout", "tall/short family experiments where L25N4413 stands out",
          "L25N4413: tall_short, big_small, huge_tiny", 3, _standout_count(25, 4413, TALL_SHORT_FAMILY), 0,
          reference_only=True, settings=_standouts(TALL_SHORT_FAMILY)),
    Check("experiments", "top_standout", "most tall/short family experiments one neuron stands out in", "L25N4413", 3,
          _top_standout(TALL_SHORT_FAMILY), 0, settings=_standouts(TALL_SHORT_FAMILY)),
]


EXPERIMENT_FILES = ("summary", "logit_lens", "layers", "neurons")


def inputs(results: str, dataset: str, experiments: list[str] | tuple[str, ...]) -> list[str]:
    """The stage outputs the check reads under `results` (= results/{model}), for the rule's input: experiments
    not in `experiments` (the configured ones) are left out, and their rows say "missing"."""
    root = f"{results}/"
    files = [K.relative(k) for k in ("weights_tokens", "neurons", "pairs")]
    files += [K.relative(k, dataset=dataset) for k in ("predictions", "curves")]
    for exp in (e for e in PAPER_EXPERIMENTS if e in experiments):
        files += [K.relative(f"exp_{t}", exp=exp) for t in EXPERIMENT_FILES]
    files += [K.relative(k) for k in ("experiments_summary", "experiments_overview")]
    return [root + f for f in files]


def _item_core(item: str | None) -> str | None:
    """The part of an item that identifies it (before any ': details')."""
    return None if item is None else item.split(": ")[0]


def paper_check(results: str | Path, model_id: str, dataset: str, settings: dict) -> pa.Table:
    """The check table for one model (`results` = results/{model}); one row per applicable Check. `settings`: the
    run's settings (run_settings); the layers an experiment patched exactly are read from its summary.json when it
    exists (what `neuron_layers: auto` chose). A row whose value depends on a setting the run did not share with the
    post says "not comparable: <why>" and gets no difference."""
    o = Outputs(results, dataset)
    settings = dict(settings)
    for exp in PAPER_EXPERIMENTS:
        layers = _whole_layers(o, exp)
        if layers is not None:
            settings[f"layers.{exp}"] = layers
    reference = model_id == REFERENCE_MODEL
    rows = []
    for c in CHECKS:
        if c.reference_only and not reference:
            continue
        v = c.compute(o)
        value = None if v.value is None else float(v.value)
        same = (None if v.item is None or c.published_item is None
                else _item_core(v.item) == _item_core(c.published_item))
        missing = v.note is not None and v.note.startswith("missing:")
        why = [v.not_comparable] if v.not_comparable else []
        why += settings_mismatch(settings, c.settings) + _prompt_checks(o, c.settings)
        if missing:
            status = "missing"
        elif why:
            status = "not comparable: " + "; ".join(why)
        else:
            status = "ok" if value is not None else "n/a"
        difference = value - c.published if reference and value is not None and status == "ok" else None
        rows.append(dict(section=c.section, key=c.key, quantity=c.quantity, published_item=c.published_item,
                         published=float(c.published), our_item=v.item, ours=value, difference=difference,
                         tolerance=float(c.tolerance),
                         within=None if difference is None else abs(difference) <= c.tolerance + 1e-9,
                         same_item=same, status=status, settings=", ".join(c.settings), source=v.source,
                         note=v.note))
    return pa.Table.from_pylist(rows, schema=SCHEMA)


def _prompt_checks(o: Outputs, keys: tuple[str, ...]) -> list[str]:
    """The row's experiments whose prompts do not behave on this model (summary.json's prompt_check is not "ok"):
    the post's numbers were measured where they do, so a score divided by a wrong-signed or tiny LD gap is not the
    post's quantity."""
    out = []
    for k in keys:
        if k.startswith("prompts."):
            s = o.json(K.relative("exp_summary", exp=k.split(".", 1)[1]))
            if s is not None and s.get("prompt_check", "ok") != "ok":
                out.append(f"{k.split('.', 1)[1]}'s prompt check: {s['prompt_check']}")
    return out


PROMPT_FIELDS = ("clean", "corrupted", "answer", "wrong")


def run_settings(cfg: PaperCheckConfig) -> dict:
    """A run's settings, flat: PAPER_SETTINGS' keys, and per paper experiment `prompts.<exp>` (its prompt pair) and
    `layers.<exp>` (its neuron_layers); None for an experiment not configured."""
    d = cfg.to_dict()
    out = {k: d[k] for k in PAPER_SETTINGS}
    for exp in PAPER_EXPERIMENTS:
        e = cfg.experiments.get(exp)
        out[f"prompts.{exp}"] = None if e is None else [e.get(k) for k in PROMPT_FIELDS]  # a task: no one pair
        out[f"layers.{exp}"] = None if e is None else e["neuron_layers"]
    return out


ALL_SETTINGS = (*PAPER_SETTINGS, *(f"prompts.{e}" for e in PAPER_EXPERIMENTS), "layers.an_a:31", "layers.an_a:25",
                *(f"layers.{e}:25" for e in TALL_SHORT_FAMILY))


def settings_mismatch(settings: dict, keys: tuple[str, ...] | None = None) -> list[str]:
    """How a run's settings differ from the post's (all of ALL_SETTINGS, or only `keys`). An experiment that is not
    configured (None) is skipped here: its rows say "missing"."""
    out = []
    for k in ALL_SETTINGS if keys is None else keys:
        if k.startswith("prompts."):
            exp = k.split(".", 1)[1]
            ours = settings.get(k)
            if ours is not None and tuple(ours) != POST_PROMPTS[exp]:
                diff = [f"{f} = {a!r}" for f, a, b in zip(PROMPT_FIELDS, ours, POST_PROMPTS[exp]) if a != b]
                out.append(f"{exp}'s prompts are not the post's ({', '.join(diff)})")
        elif k.startswith("layers."):
            exp, layer = k.split(".", 1)[1].rsplit(":", 1)
            ours = settings.get(f"layers.{exp}")
            if ours is not None and (not isinstance(ours, (list, tuple)) or int(layer) not in ours):
                out.append(f"layers.{exp} = {ours!r} (the post patched layer {layer} exactly)")
        elif settings.get(k) != PAPER_SETTINGS[k]:
            out.append(f"{k} = {settings.get(k)!r} (the post: {PAPER_SETTINGS[k]!r})")
    return out


def _fmt(x: float | None) -> str:
    if x is None or (isinstance(x, float) and math.isnan(x)):
        return "–"
    if float(x).is_integer() and abs(x) >= 10:
        return f"{int(x):,}"
    return f"{x:.4g}"


def to_html(table: pa.Table, model_id: str, settings: dict) -> str:
    """A self-contained HTML page with the table, for the Snakemake report (templates/paper_check.html.j2)."""
    rows = [dict(r, published_item=r["published_item"] or "", published=_fmt(r["published"]),
                 our_item=r["our_item"] or "", item_class={True: "same", False: "other"}.get(r["same_item"], ""),
                 ours=_fmt(r["ours"]), difference="" if r["difference"] is None else f'{r["difference"]:+.4g}',
                 tolerance=f'±{r["tolerance"]:g}', within_class={True: "same", False: "other"}.get(r["within"], ""),
                 status_class=r["status"].split(":")[0].replace(" ", "-"), note=r["note"] or "")
            for r in table.to_pylist()]
    return render("paper_check.html.j2", model_id=model_id, reference=model_id == REFERENCE_MODEL,
                  mismatch="; ".join(settings_mismatch(settings)), rows=rows,
                  settings=", ".join(f"{k} = {settings.get(k)!r}" for k in settings),
                  head=["quantity", "post: item", "post", "ours: item", "ours", "difference", "tolerance", "status",
                        "depends on", "note"])
