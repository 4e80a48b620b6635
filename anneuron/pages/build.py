"""Build the neuron pages (anneuron.pages) from the pipeline's tables: every file of the site, from disk to disk.

Inputs (paths from anneuron.contracts, gathered by `Sources.of`): the weights tables (neurons, tokens, pairs,
congruence.json), the dataset tables (example_activations, watched, curves, predictions) and every experiment's
`neurons.parquet`, `summary.json` and, when present, `contrast.parquet` (columns layer, neuron, score, rank), plus
the cross-experiment `summary.parquet`. Only the weights tables are required; a missing optional table leaves its
part of the pages out (and says so in the page).

Memory: the weights tables and each experiment's score columns are read whole (one row per neuron); the examples
are read one layer at a time (their file has one row group per layer). Output is byte-reproducible: rows in fixed
order, no dates.

Every string from the data (tokens are arbitrary text) goes into the site only as a JSON string inside a .js data
file, with `<`, `>`, `&` and the JavaScript line separators escaped; the page puts strings into the DOM as text
nodes only (never as HTML), so a token `<script>` renders as the text `<script>`.
"""

from __future__ import annotations

import html
import json
import math
import shutil
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from anneuron import contracts as K
from anneuron.experiments.standouts import counted
from anneuron.io import REBUILD, atomic_dir, atomic_path, open_parquet, read_json, read_parquet, reading

SHARD_NEURONS = 64  # neurons per neuron-view data file (GPT-2 Large: 80 files per layer, ~0.4 MB each)
TOKEN_SHARD = 1024  # token ids per token data file
TOKEN_LIST = 32  # neurons kept per token and direction (neuron -> token lists, inverted)
TOP_PAIRS = 100  # mutually exclusive pairs listed on the index
TOP_SUMMARY = 100  # cross-experiment standouts listed on the index
CLASSES = ("prediction", "suppression", "partition", "other")
STATIC = Path(__file__).parent / "static"


@dataclass
class Sources:
    """Where the site's data come from. Only `neurons`, `tokens` and `pairs` are required."""

    neurons: Path
    tokens: Path
    pairs: Path
    congruence: Path | None = None
    examples: Path | None = None  # example_activations.parquet
    watched: Path | None = None
    curves: Path | None = None
    predictions: Path | None = None
    experiments: dict[str, Path] = field(default_factory=dict)  # name -> its folder
    experiments_summary: Path | None = None
    dataset: str | None = None
    universality: Path | None = None  # universality/neurons.parquet: each neuron's twin in each other model
    universality_summary: Path | None = None  # universality/summary.parquet: ϱ and the universal flag

    @classmethod
    def of(cls, model: str, dataset: str | None, experiments: list[str], root: str | Path = ".") -> "Sources":
        """The pipeline's files for one model (anneuron.contracts.PATHS), below `root`."""
        at = lambda key, **w: Path(root) / K.path(key, model=model, **w)  # noqa: E731
        ds = (lambda key: at(key, dataset=dataset)) if dataset else (lambda key: None)
        return cls(neurons=at("neurons"), tokens=at("weights_tokens"), pairs=at("pairs"),
                   congruence=at("weights_summary"), examples=ds("example_activations"), watched=ds("watched"),
                   curves=ds("curves"), predictions=ds("predictions"),
                   experiments={e: at("exp_neurons", exp=e).parent for e in experiments},
                   experiments_summary=at("experiments_summary") if experiments else None, dataset=dataset,
                   universality=at("universality_neurons"), universality_summary=at("universality_summary"))


def contrast_path(exp_dir: Path) -> Path:
    """An experiment's contrast table: its PATHS entry when the contracts have one, else `contrast.parquet`."""
    name = Path(K.PATHS["exp_contrast"]).name if "exp_contrast" in K.PATHS else "contrast.parquet"
    return Path(exp_dir) / name


# --- numbers and JSON ---------------------------------------------------------------------------------------------


def num(x, sig: int = 4):
    """A float with `sig` significant digits for the page, None when missing or not finite."""
    if x is None:
        return None
    x = float(x)
    if not math.isfinite(x):
        return None
    return float(f"{x:.{sig}g}")


def js_literal(obj) -> str:
    """JSON that is also safe JavaScript source inside a .js file: ASCII only (so U+2028/2029 are escaped), and
    `<`, `>`, `&` as \\u escapes (they occur only inside strings), so no data can close or open a tag."""
    text = json.dumps(obj, ensure_ascii=True, separators=(",", ":"), allow_nan=False, default=_plain)
    return text.replace("<", "\\u003c").replace(">", "\\u003e").replace("&", "\\u0026")


def _plain(x):
    """numpy scalars as plain numbers (non-finite floats as null)."""
    if isinstance(x, np.integer):
        return int(x)
    if isinstance(x, np.floating):
        return num(x, 7)
    if isinstance(x, np.bool_):
        return bool(x)
    raise TypeError(f"{type(x).__name__} is not JSON serializable")


def write_js(path: Path, key: str, obj) -> int:
    """One data file: `ANNEURON_DATA[key] = obj`. Returns its size in bytes."""
    path.parent.mkdir(parents=True, exist_ok=True)
    text = f"(window.ANNEURON_DATA=window.ANNEURON_DATA||{{}})[{js_literal(key)}]={js_literal(obj)};\n"
    path.write_text(text, encoding="ascii")
    return len(text)


def neuron_part(neuron: int) -> int:
    return neuron // SHARD_NEURONS


# --- reading the tables -------------------------------------------------------------------------------------------


@dataclass
class Experiment:
    name: str
    summary: dict
    counted: bool
    attribution: np.ndarray | None = None  # (N,) flat order; None when nothing could be patched
    exact: np.ndarray | None = None  # NaN where not computed
    exact_rank: np.ndarray | None = None  # 0 where no exact score
    attr_rank: np.ndarray | None = None
    z: np.ndarray | None = None
    standout: np.ndarray | None = None
    contrast: np.ndarray | None = None
    contrast_rank: np.ndarray | None = None

    @property
    def n_exact(self) -> int:
        return 0 if self.exact is None else int(np.isfinite(self.exact).sum())


def _ranks(values: np.ndarray) -> np.ndarray:
    """1 = largest; NaN gets 0; ties by position (flat id)."""
    out = np.zeros(len(values), np.int64)
    ok = np.flatnonzero(np.isfinite(values))
    order = ok[np.argsort(-values[ok], kind="stable")]
    out[order] = np.arange(1, len(order) + 1)
    return out


def _flat(table: pa.Table, d_mlp: int) -> np.ndarray:
    return table.column("layer").to_numpy().astype(np.int64) * d_mlp + table.column("neuron").to_numpy()


def _float(table: pa.Table, col: str) -> np.ndarray:
    return table.column(col).to_numpy(zero_copy_only=False).astype(np.float64)


def read_experiment(name: str, folder: Path, n: int, d_mlp: int) -> Experiment | None:
    files = K.experiment_files(folder)
    if not files["summary"].exists():
        return None
    summary = read_json(files["summary"], REBUILD)
    exp = Experiment(name, summary, counted=counted(summary))
    if files["neurons"].exists():
        t = read_parquet(files["neurons"])
        if t.num_rows:
            flat = _flat(t, d_mlp)
            cols = {}
            for c in ("attribution", "exact", "standout_z"):
                a = np.full(n, np.nan)
                a[flat] = _float(t, c)
                cols[c] = a
            exp.attribution, exp.exact, exp.z = cols["attribution"], cols["exact"], cols["standout_z"]
            exp.standout = np.zeros(n, bool)
            exp.standout[flat] = t.column("standout").to_numpy(zero_copy_only=False).astype(bool)
            exp.exact_rank, exp.attr_rank = _ranks(exp.exact), _ranks(exp.attribution)
    cpath = contrast_path(folder)
    if cpath.exists():
        t = read_parquet(cpath)
        if t.num_rows:
            flat = _flat(t, d_mlp)
            exp.contrast = np.full(n, np.nan)
            exp.contrast[flat] = _float(t, "score")
            exp.contrast_rank = np.zeros(n, np.int64)
            exp.contrast_rank[flat] = t.column("rank").to_numpy()
    return exp


def _lists(col: pa.ChunkedArray) -> tuple[np.ndarray, np.ndarray]:
    """A list column of equal-length lists -> (rows, k) numpy."""
    arr = col.combine_chunks()
    if len(arr) == 0:
        return np.zeros((0, 0)), np.zeros(0)
    off = arr.offsets.to_numpy()
    values = arr.values.to_numpy(zero_copy_only=False)[off[0]:off[-1]]
    return values.reshape(len(arr), -1), off


def _invert(flat: np.ndarray, token_ids: np.ndarray, values: np.ndarray, descending: bool) -> dict[int, list]:
    """Neuron -> its top (or bottom) tokens, inverted to token -> [[flat, rank, value]] (best first, capped)."""
    n, k = token_ids.shape
    t, f = token_ids.reshape(-1), np.repeat(flat, k)
    r, v = np.tile(np.arange(1, k + 1), n), values.reshape(-1).astype(np.float64)
    order = np.lexsort((f, -v if descending else v, t))
    t, f, r, v = t[order], f[order], r[order], v[order]
    out: dict[int, list] = {}
    cuts = np.flatnonzero(np.diff(t)) + 1
    for s, e in zip(np.concatenate([[0], cuts]), np.append(cuts, len(t))):
        e = min(e, s + TOKEN_LIST)
        out[int(t[s])] = [[int(f[j]), int(r[j]), num(v[j], 3)] for j in range(s, e)]
    return out


class ExamplesByLayer:
    """The example windows one layer at a time, reading only the row groups that hold it: one layer in memory.
    Which groups those are comes from their `layer` values, read once for the whole file, not from the footer's
    statistics (a corrupted statistic would silently drop rows: anneuron.io.read_parquet)."""

    def __init__(self, path: str | Path):
        self.path, self.pf = path, open_parquet(path, K.EXAMPLE_ACTIVATIONS)
        self.groups: dict[int, list[int]] = {}
        with reading(path):
            for g in range(self.pf.num_row_groups):
                for layer in pc.unique(self.pf.read_row_group(g, columns=["layer"]).column(0)).to_pylist():
                    self.groups.setdefault(layer, []).append(g)

    def __call__(self, layer: int) -> pa.Table:
        groups = self.groups.get(layer, [])
        with reading(self.path):
            table = self.pf.read_row_groups(groups) if groups else self.pf.schema_arrow.empty_table()
        return table.filter(pc.equal(table.column("layer"), layer))


def encode_examples(t: pa.Table) -> dict[int, dict]:
    """One layer's example windows -> per neuron {u: exponent, e: [[rank, value, doc, chunk, pos, start, tokens,
    acts]]}: activations as integers in units of 10**u, u chosen so the neuron's largest |activation| has three
    significant digits (the page shows activation = int · 10**u)."""
    if t is None or t.num_rows == 0:
        return {}
    neuron = t.column("neuron").to_numpy()
    acts = t.column("activations").combine_chunks()
    off = acts.offsets.to_numpy()
    flat = acts.values.to_numpy(zero_copy_only=False)[off[0]:off[-1]].astype(np.float64)
    off = off - off[0]
    toks = t.column("tokens").combine_chunks()
    toff = toks.offsets.to_numpy()
    strings = toks.values.slice(toff[0], toff[-1] - toff[0]).to_pylist()
    row_max = np.array([np.abs(flat[a:b]).max() if b > a else 0.0 for a, b in zip(off[:-1], off[1:])])
    d = t.select(["rank", "value", "doc", "chunk", "pos", "start"]).to_pydict()
    out: dict[int, dict] = {}
    starts = np.concatenate([[0], np.flatnonzero(np.diff(neuron)) + 1])
    ends = np.append(starts[1:], len(neuron))
    for s, e in zip(starts, ends):
        m = float(row_max[s:e].max())
        u = int(math.floor(math.log10(m))) - 2 if m > 0 else 0
        scale = 10.0 ** (-u)
        ex = []
        for i in range(s, e):
            a, b = off[i], off[i + 1]
            q = np.rint(flat[a:b] * scale).astype(np.int64).tolist()
            ex.append([d["rank"][i], num(d["value"][i], 5), d["doc"][i], d["chunk"][i], d["pos"][i], d["start"][i],
                       strings[a:b], q])
        out[int(neuron[s])] = {"u": u, "e": ex}
    return out


# --- the build ----------------------------------------------------------------------------------------------------


class _Builder:
    def __init__(self, src: Sources, model: str):
        self.src, self.model = src, model
        self.neurons = read_parquet(src.neurons)
        layer = self.neurons.column("layer").to_numpy()
        neuron = self.neurons.column("neuron").to_numpy()
        self.n_layers, self.d_mlp = int(layer.max()) + 1, int(neuron.max()) + 1
        self.n = self.n_layers * self.d_mlp
        if len(layer) != self.n or not np.array_equal(layer * self.d_mlp + neuron, np.arange(self.n)):
            raise ValueError(f"{src.neurons}: expected one row per neuron in flat-id order")
        tokens = read_parquet(src.tokens)
        self.vocab = tokens.column("token_str").to_pylist()
        self.tokens = tokens
        self.pairs = read_parquet(src.pairs)
        self.congruence = read_json(src.congruence, REBUILD) if _exists(src.congruence) else {}
        self.experiments = [e for name, folder in src.experiments.items()
                            if (e := read_experiment(name, Path(folder), self.n, self.d_mlp)) is not None]
        self.watched = read_parquet(src.watched).to_pylist() if _exists(src.watched) else []
        self.curves = read_parquet(src.curves).to_pylist() if _exists(src.curves) else []
        self.predictions = read_parquet(src.predictions) if _exists(src.predictions) else None
        self.summary = read_parquet(src.experiments_summary).to_pylist() if _exists(src.experiments_summary) else []
        self.has_examples = _exists(src.examples)
        self.has_universality = _exists(src.universality) and _exists(src.universality_summary)
        self.twins, self.varrho = self.universality_of() if self.has_universality else ({}, {})
        self.examples_of = ExamplesByLayer(src.examples) if self.has_examples else None
        self.sizes: dict[str, int] = {}

    def tok(self, tid: int) -> str:
        return self.vocab[tid] if 0 <= tid < len(self.vocab) else f"<{tid}>"

    def _add(self, kind: str, size: int) -> None:
        self.sizes[kind] = self.sizes.get(kind, 0) + size

    # per neuron -------------------------------------------------------------------------------------------------

    def pair_of(self) -> dict[int, list]:
        out = {}
        for r in self.pairs.to_pylist():
            out[r["layer"] * self.d_mlp + r["neuron"]] = [r["rank"], r["token_id"], r["token_str"], num(r["score"]),
                                                          num(r["congruence"]), num(r["d_neu"]), num(r["d_tok"])]
        return out

    def universality_of(self) -> tuple[dict[int, list], dict[int, list]]:
        """flat -> its twin in each other model [other id, layer, neuron, ρ, baseline max ρ]; flat -> [ϱ, excess,
        universal]."""
        twins: dict[int, list] = {}
        for r in read_parquet(self.src.universality, schema=K.UNIVERSALITY_NEURONS).to_pylist():
            twins.setdefault(r["layer"] * self.d_mlp + r["neuron"], []).append(
                [r["other_model"], r["max_layer"], r["max_neuron"], num(r["max_corr"]), num(r["baseline_max_corr"])])
        varrho = {r["layer"] * self.d_mlp + r["neuron"]: [num(r["varrho"]), num(r["excess"]), int(r["universal"])]
                  for r in read_parquet(self.src.universality_summary, schema=K.UNIVERSALITY_SUMMARY).to_pylist()}
        return twins, varrho

    def watch_of(self) -> dict[int, list]:
        return {w["layer"] * self.d_mlp + w["neuron"]: [w["rank"], w["source"], w["token_id"], w["token_str"],
                                                        w["token_source"], w["pair_rank"]] for w in self.watched}

    def curve_of(self) -> dict[int, dict]:
        pred = occ = post = None
        if self.predictions is not None:
            pred = self.predictions.column("predicted").to_numpy()
            occ = self.predictions.column("occurred").to_numpy()
            if "predicted_post" in self.predictions.schema.names:
                post = self.predictions.column("predicted_post").to_numpy()
        out: dict[int, dict] = {}
        for r in self.curves:
            f = r["layer"] * self.d_mlp + r["neuron"]
            c = out.setdefault(f, {"tid": r["token_id"], "tok": r["token_str"], "bins": []})
            c["bins"].append([num(r["bin_lo"], 6), num(r["bin_hi"], 6), r["count"], r["hits"],
                              num(r["proportion"])])
        for c in out.values():
            t = c["tid"]
            if pred is not None and 0 <= t < len(pred):
                c["pred"], c["occ"] = int(pred[t]), int(occ[t])
                if post is not None:
                    c["post"] = int(post[t])
        return out

    def experiments_of(self, f: int) -> list:
        rows = []
        for i, e in enumerate(self.experiments):
            if e.attribution is None and e.contrast is None:
                continue
            row = [i, None, None, 0, 0, None, 0, None, 0]
            if e.attribution is not None:
                row[1:7] = [num(e.attribution[f]), num(e.exact[f]), int(e.exact_rank[f]), int(e.attr_rank[f]),
                            num(e.z[f], 3), int(e.standout[f])]
            if e.contrast is not None:
                row[7:9] = [num(e.contrast[f]), int(e.contrast_rank[f])]
            rows.append(row)
        return rows

    # files ------------------------------------------------------------------------------------------------------

    def write_layers(self, data: Path) -> dict:
        nt = self.neurons
        classes = nt.column("neuron_class").to_pylist() if "neuron_class" in nt.schema.names else ["other"] * self.n
        top_ids, _ = _lists(nt.column("top_token_ids"))
        top_vals, _ = _lists(nt.column("top_values"))
        bot_ids, _ = _lists(nt.column("bottom_token_ids"))
        bot_vals, _ = _lists(nt.column("bottom_values"))
        moments = np.stack([_float(nt, c) for c in K.MOMENT_COLUMNS], 1)
        d_neu = _float(nt, "d_neu")
        # entropy neurons (anneuron.weights.entropy): null-space share of w_out and its norm, when the table has them
        entropy = np.stack([_float(nt, c) for c in ("null_share", "w_out_norm")], 1) \
            if "null_share" in nt.schema.names else None
        pairs, watch, curves = self.pair_of(), self.watch_of(), self.curve_of()
        standouts = {i: e.standout for i, e in enumerate(self.experiments) if e.standout is not None}
        kurt = moments[:, K.MOMENT_COLUMNS.index("cos_kurt")]
        skew = moments[:, K.MOMENT_COLUMNS.index("cos_skew")]
        counts = {c: 0 for c in CLASSES}
        n_examples = 0
        for layer in range(self.n_layers):
            examples = encode_examples(self.examples_of(layer)) if self.has_examples else {}
            index = {"c": [], "d": [], "t": [], "tv": [], "k": [], "s": [], "p": [], "ps": [], "a": [], "so": {},
                     "w": []}
            parts: dict[int, dict] = {}
            for j in range(self.d_mlp):
                f = layer * self.d_mlp + j
                cls = classes[f]
                counts[cls] = counts.get(cls, 0) + 1
                ex = examples.get(j)
                n_examples += len(ex["e"]) if ex else 0
                rec = {
                    "c": cls, "m": [num(x) for x in moments[f]], "d": num(d_neu[f]),
                    "top": [[int(t), self.tok(int(t)), num(v)] for t, v in zip(top_ids[f], top_vals[f])],
                    "bot": [[int(t), self.tok(int(t)), num(v)] for t, v in zip(bot_ids[f], bot_vals[f])],
                    "p": pairs.get(f), "x": self.experiments_of(f), "w": watch.get(f), "cv": curves.get(f),
                    "u": ex["u"] if ex else 0, "e": ex["e"] if ex else None,
                }
                if entropy is not None:
                    rec["en"] = [num(x) for x in entropy[f]]
                if self.has_universality:  # only then: the pages of a model without it keep their bytes
                    rec["tw"], rec["vr"] = self.twins.get(f, []), self.varrho.get(f)
                    vr = self.varrho.get(f)
                    index.setdefault("v", []).append(vr[0] if vr else None)
                    if vr and vr[2]:
                        index.setdefault("un", []).append(j)
                parts.setdefault(neuron_part(j), {})[str(j)] = rec
                index["c"].append(CLASSES.index(cls) if cls in CLASSES else len(CLASSES) - 1)
                index["d"].append(num(d_neu[f], 3))
                index["t"].append(self.tok(int(top_ids[f][0])) if top_ids.shape[1] else "")
                index["tv"].append(num(top_vals[f][0], 3) if top_ids.shape[1] else None)
                index["k"].append(num(kurt[f], 4))
                index["s"].append(num(skew[f], 3))
                p = pairs.get(f)
                index["p"].append(p[0] if p else 0)
                index["ps"].append(p[3] if p else 0)
                index["a"].append(num(ex["e"][0][1], 4) if ex and ex["e"] else None)
                so = [i for i, mask in standouts.items() if mask[f]]
                if so:
                    index["so"][str(j)] = so
                if f in watch:
                    index["w"].append(j)
            for part, recs in parts.items():
                self._add("neurons", write_js(data / "neurons" / f"L{layer}" / f"{part}.js",
                                              f"neurons/L{layer}/{part}", recs))
            self._add("index", write_js(data / "index" / f"L{layer}.js", f"index/L{layer}", index))
        return {"class_counts": {c: k for c, k in counts.items() if k}, "n_examples": n_examples}

    def write_tokens(self, data: Path) -> None:
        nt, tt = self.neurons, self.tokens
        flat = np.arange(self.n)
        as_top = _invert(flat, _lists(nt.column("top_token_ids"))[0], _lists(nt.column("top_values"))[0], True)
        as_bot = _invert(flat, _lists(nt.column("bottom_token_ids"))[0], _lists(nt.column("bottom_values"))[0],
                         False)
        top_n, _ = _lists(tt.column("top_neurons"))
        top_v, _ = _lists(tt.column("top_values"))
        ids = tt.column("token_id").to_numpy()
        d_tok = _float(tt, "d_tok")
        pred = occ = None
        if self.predictions is not None:
            pred = self.predictions.column("predicted").to_numpy()
            occ = self.predictions.column("occurred").to_numpy()
        parts: dict[int, dict] = {}
        for row, t in enumerate(ids):
            t = int(t)
            rec = {"n": [[int(a), num(b, 3)] for a, b in zip(top_n[row], top_v[row])], "dt": num(d_tok[row], 3)}
            if t in as_top:
                rec["t"] = as_top[t]
            if t in as_bot:
                rec["b"] = as_bot[t]
            if pred is not None and t < len(pred):
                rec["po"] = [int(pred[t]), int(occ[t])]
            parts.setdefault(t // TOKEN_SHARD, {})[str(t)] = rec
        for part, recs in sorted(parts.items()):
            self._add("tokens", write_js(data / "tokens" / f"{part}.js", f"tokens/{part}", recs))
        self._add("vocab", write_js(data / "vocab.js", "vocab", self.vocab))

    def meta(self, extra: dict) -> dict:
        d = self.d_mlp
        exps = []
        for e in self.experiments:
            s = e.summary
            top = sorted(((float(e.exact[f]), f) for f in np.flatnonzero(np.isfinite(e.exact))), reverse=True)[:5] \
                if e.exact is not None else []
            exps.append({
                "name": e.name, "answer": s.get("answer"), "wrong": s.get("wrong"),
                "clean": "".join(s.get("tokens_clean", [])[1:]),
                "corrupted": "".join(s.get("tokens_corrupted", [])[1:]),
                "ld_clean": num(s.get("ld_clean")), "ld_corrupted": num(s.get("ld_corrupted")),
                "counted": e.counted, "check": s.get("prompt_check"), "n_exact": e.n_exact,
                "n_standout": int(e.standout.sum()) if e.standout is not None else 0,
                "layers": s.get("neuron_layers", []), "top": [[int(f), num(v)] for v, f in top],
                "scored": e.attribution is not None, "contrast": e.contrast is not None,
            })
        pairs = [[r["rank"], r["layer"] * d + r["neuron"], r["token_id"], r["token_str"], num(r["score"]),
                  num(r["congruence"]), num(r["d_neu"]), num(r["d_tok"])]
                 for r in self.pairs.slice(0, TOP_PAIRS).to_pylist()]
        watched = [[w["rank"], w["layer"] * d + w["neuron"], w["token_id"], w["token_str"], w["source"],
                    w["token_source"], w["pair_rank"]] for w in self.watched]
        summary = [[s["layer"] * d + s["neuron"], s["experiments"], s["n_experiments"], num(s["max_exact"]),
                    num(s["mean_z"], 3)] for s in self.summary[:TOP_SUMMARY]]
        top_k = int(_lists(self.neurons.column("top_token_ids"))[0].shape[1])
        return {
            "model": self.model, "dataset": self.src.dataset, "n_layers": self.n_layers, "d_mlp": d,
            "d_vocab": len(self.vocab), "basis": self.congruence.get("basis"), "top_k": top_k,
            "classes": list(CLASSES), "moments": list(K.MOMENT_COLUMNS), "shard_neurons": SHARD_NEURONS,
            "token_shard": TOKEN_SHARD, "experiments": exps, "pairs": pairs, "n_pairs": self.pairs.num_rows,
            "watched": watched, "summary": summary, "n_summary": len(self.summary),
            "has_examples": self.has_examples, "has_curves": bool(self.curves), **extra,
            **({"universality": {"others": sorted({t[0] for tw in self.twins.values() for t in tw}),
                                 "n_universal": sum(v[2] for v in self.varrho.values())}}
               if self.has_universality else {}),
        }


def _exists(p) -> bool:
    return p is not None and Path(p).exists()


def index_html(model: str) -> str:
    """The page: static markup, the model's id (escaped) in the title; everything else comes from data/."""
    text = (STATIC / "index.html").read_text(encoding="utf-8")
    return text.replace("{{MODEL}}", html.escape(model))


def build_site(out: str | Path, sources: Sources, model: str) -> dict:
    """Write the whole site into `out` (index.html, assets/, data/): data and assets each as a folder swapped in
    whole, index.html last. Returns the bytes written per kind of file and counts."""
    out = Path(out)
    b = _Builder(sources, model)
    with atomic_dir(out / Path(K.PATHS["pages_data"]).name) as data:
        extra = b.write_layers(data)
        b.write_tokens(data)
        b._add("meta", write_js(data / "meta.js", "meta", b.meta(extra)))
    with atomic_dir(out / Path(K.PATHS["pages_assets"]).name) as assets:
        for name in ("app.js", "live.js", "style.css"):
            shutil.copyfile(STATIC / name, assets / name)
            b._add("assets", (assets / name).stat().st_size)
    with atomic_path(out / Path(K.PATHS["pages_index"]).name) as tmp:
        tmp.write_text(index_html(model), encoding="utf-8")
    b._add("assets", (out / "index.html").stat().st_size)
    return {"bytes": dict(sorted(b.sizes.items())), "total_bytes": sum(b.sizes.values()),
            "neurons": b.n, "n_layers": b.n_layers, "d_mlp": b.d_mlp, **extra}
