"""The neuron pages' builder (anneuron.pages) on small synthetic tables of the contracts' schemas: every neuron is
reachable in its shard, shards hold what they say, the index and meta are right, experiment ranks and contrast are
right, activations survive their integer encoding, and no string from the data can become markup."""

from __future__ import annotations

import json
import math
import re
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from anneuron import contracts as K
from anneuron.io import write_json
from anneuron.pages import SHARD_NEURONS, TOKEN_SHARD, Sources, build_site
from anneuron.pages.build import js_literal, num

EVIL = ["<script>alert(1)</script>", "</script><b>x", "a & b", "\u2028line", '"quoted"', "<!--", " an", "\n",
        '<img src=x onerror="window.__pwned=1">']
L, D, V, K_TOP, K_EX, WINDOW = 2, SHARD_NEURONS + 6, 1100, 4, 3, 6  # 2 shards per layer, 2 token shards

JS_RE = re.compile(r'^\(window\.ANNEURON_DATA=window\.ANNEURON_DATA\|\|\{\}\)\[("[^"]*")\]=(.*);\n$', re.S)


def read_js(path: Path) -> tuple[str, object]:
    m = JS_RE.match(path.read_text(encoding="ascii"))
    assert m, f"{path} is not one data assignment"
    return json.loads(m.group(1)), json.loads(m.group(2))


def vocab() -> list[str]:
    return EVIL + [f"tok{i}" for i in range(len(EVIL), V)]


def synthetic(tmp: Path, with_dataset: bool = True, with_experiments: bool = True) -> tuple[Sources, dict]:
    """Weights, dataset and experiment tables for an L × D model with V tokens, written as the pipeline does."""
    rng = np.random.default_rng(0)
    n = L * D
    voc = vocab()
    top_ids = np.stack([rng.choice(V, K_TOP, replace=False) for _ in range(n)])
    top_ids[3, 0] = 0  # L0N3's top token is "<script>…"
    bot_ids = np.stack([rng.choice(V, K_TOP, replace=False) for _ in range(n)])
    top_vals = -np.sort(-rng.random((n, K_TOP)), 1).astype(np.float32)
    bot_vals = -np.sort(rng.random((n, K_TOP)), 1).astype(np.float32)
    cls = np.array(["other"] * n, dtype=object)
    cls[[3, D + 5]] = ["prediction", "suppression"]
    lists = lambda a, t: pa.array(a.tolist(), pa.list_(t))  # noqa: E731
    neurons = pa.table({
        "layer": np.repeat(np.arange(L), D), "neuron": np.tile(np.arange(D), L),
        "top_token_ids": lists(top_ids, pa.int64()), "top_values": lists(top_vals, pa.float32()),
        "bottom_token_ids": lists(bot_ids, pa.int64()), "bottom_values": lists(bot_vals, pa.float32()),
        "d_neu": (top_vals[:, 0] - top_vals[:, 1]).astype(np.float64),
        **{c: rng.normal(size=n) for c in K.MOMENT_COLUMNS}, "w_out_norm": rng.gamma(2.0, size=n),
        "null_share": rng.beta(1, 20, n), "neuron_class": cls.tolist(),
    }).cast(K.NEURONS)
    tok_top = np.stack([rng.choice(n, 5, replace=False) for _ in range(V)])
    tok_vals = -np.sort(-rng.random((V, 5)), 1).astype(np.float32)
    tokens = pa.table({"token_id": np.arange(V), "token_str": voc, "top_neurons": lists(tok_top, pa.int64()),
                       "top_values": lists(tok_vals, pa.float32()),
                       "d_tok": (tok_vals[:, 0] - tok_vals[:, 1]).astype(np.float64)}).cast(K.WEIGHTS_TOKENS)
    pairs = pa.table({"rank": [1, 2], "layer": [0, 1], "neuron": [3, 7], "token_id": [0, 6],
                      "token_str": [voc[0], voc[6]], "congruence": [0.5, 0.25], "d_neu": [0.4, 0.2],
                      "d_tok": [0.3, 0.1], "score": [0.12, 0.02]}).cast(K.PAIRS)
    root = tmp / "tables"
    src = Sources(neurons=root / "neurons.parquet", tokens=root / "tokens.parquet", pairs=root / "pairs.parquet")
    root.mkdir(parents=True)
    for t, p in ((neurons, src.neurons), (tokens, src.tokens), (pairs, src.pairs)):
        pq.write_table(t, p)
    truth = dict(neurons=neurons, tokens=tokens, top_ids=top_ids, top_vals=top_vals, bot_ids=bot_ids)
    if with_dataset:
        rows = []
        for f in range(n):
            for r in range(K_EX if f % 5 else 0):  # every 5th neuron has no example
                w = int(rng.integers(2, WINDOW + 1))
                start = int(rng.integers(1, 50))
                acts = rng.normal(size=w).astype(np.float32) * (10.0 ** rng.integers(-2, 3))
                focus = int(rng.integers(0, w))
                acts[focus] = np.abs(acts).max() + 0.5 - 0.1 * r
                rows.append(dict(layer=f // D, neuron=f % D, rank=r + 1, value=float(acts[focus]), chunk=f * 10 + r,
                                 pos=start + focus, doc=f * 10 + r, start=start,
                                 tokens=[voc[int(i)] for i in rng.integers(0, V, w)], activations=acts.tolist()))
        rows[0]["tokens"][0] = "<script>alert(1)</script>"
        ex = pa.Table.from_pylist(rows, schema=K.EXAMPLE_ACTIVATIONS)
        src.examples = root / "example_activations.parquet"
        pq.write_table(ex, src.examples)
        watched = pa.table({"rank": [1, 2], "layer": [0, 1], "neuron": [3, 9], "token_id": [0, 6],
                            "token_str": [voc[0], voc[6]], "source": ["pair", "config"],
                            "token_source": ["pair", "config"], "pair_rank": [1, None]}).cast(K.WATCHED)
        curves = pa.table({"layer": [0, 0, 0], "neuron": [3, 3, 3], "token_id": [0, 0, 0], "token_str": [voc[0]] * 3,
                           "bin_lo": [0.0, 0.2, 0.4], "bin_hi": [0.2, 0.4, 0.6], "count": [100, 5, 20],
                           "hits": [1, 2, 19], "proportion": [0.01, None, 0.95]}).cast(K.CURVES)
        preds = pa.table({"token_id": np.arange(V, dtype=np.int32), "token_str": voc,
                          "predicted": np.arange(V, dtype=np.int64), "occurred": 2 * np.arange(V, dtype=np.int64)})
        src.watched, src.curves, src.predictions = (root / f"{x}.parquet" for x in ("watched", "curves", "preds"))
        for t, p in ((watched, src.watched), (curves, src.curves), (preds, src.predictions)):
            pq.write_table(t, p)
        truth["examples"] = ex
    if with_experiments:
        for name, contrast, gap in (("exp_a", True, 2.0), ("exp_b", False, 0.1)):
            d = root / "experiments" / name
            d.mkdir(parents=True)
            attribution = rng.normal(size=n)
            exact = np.where(np.arange(n) // D == 1, attribution + 0.01, np.nan)  # layer 1 scored exactly
            standout = np.zeros(n, bool)
            standout[D + 7] = True
            table = pa.table({"layer": np.repeat(np.arange(L), D), "neuron": np.tile(np.arange(D), L),
                              "attribution": attribution, "exact": exact, "standout_z": rng.normal(size=n),
                              "standout": standout})
            pq.write_table(table.cast(K.EXPERIMENT_SCHEMAS["neurons"]), d / "neurons.parquet")
            write_json(d / "summary.json", {"ld_clean": gap, "ld_corrupted": 0.0, "prompt_check": "ok",
                                            "answer": voc[0], "wrong": voc[1], "neuron_layers": [1],
                                            "tokens_clean": ["<|endoftext|>", "The", " <b>"],
                                            "tokens_corrupted": ["<|endoftext|>", "A", " <b>"]})
            if contrast:
                score = rng.normal(size=n)
                rank = np.empty(n, np.int32)
                rank[np.argsort(-score, kind="stable")] = np.arange(1, n + 1)
                order = np.argsort(rank)
                pq.write_table(pa.table({"layer": (np.arange(n) // D)[order].astype(np.int32),
                                         "neuron": (np.arange(n) % D)[order].astype(np.int32),
                                         "score": score[order], "rank": rank[order]}), d / "contrast.parquet")
                truth["contrast"] = (score, rank)
            truth[name] = (attribution, exact)
            src.experiments[name] = d
    return src, truth


@pytest.fixture(scope="module")
def site(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("pages")
    src, truth = synthetic(tmp)
    stats = build_site(tmp / "site", src, "m<odel>&")
    return tmp / "site", src, truth, stats


def neuron_record(root: Path, layer: int, neuron: int) -> dict:
    key, obj = read_js(root / "data" / "neurons" / f"L{layer}" / f"{neuron // SHARD_NEURONS}.js")
    assert key == f"neurons/L{layer}/{neuron // SHARD_NEURONS}"
    return obj[str(neuron)]


def test_every_neuron_is_reachable_in_its_shard(site):
    root, *_ = site
    for layer in range(L):
        files = sorted((root / "data" / "neurons" / f"L{layer}").glob("*.js"))
        assert [f.name for f in files] == [f"{p}.js" for p in range(math.ceil(D / SHARD_NEURONS))]
        seen = []
        for f in files:
            key, obj = read_js(f)
            part = int(f.stem)
            assert key == f"neurons/L{layer}/{part}"
            assert all(part * SHARD_NEURONS <= int(n) < (part + 1) * SHARD_NEURONS for n in obj)
            seen += sorted(int(n) for n in obj)
        assert seen == list(range(D))


def test_no_string_from_the_data_becomes_markup(site):
    root, *_ = site
    for f in (root / "data").rglob("*.js"):
        text = f.read_text(encoding="ascii")  # ASCII: U+2028 and friends are escaped too
        assert not set("<>&") & set(text), f"{f} holds a raw < > or &"
    _, voc = read_js(root / "data" / "vocab.js")
    assert voc[:len(EVIL)] == EVIL  # ... and the strings come back exactly
    rec = neuron_record(root, 0, 3)
    assert rec["top"][0][1] == "<script>alert(1)</script>"
    assert neuron_record(root, 0, 1)["e"][0][6][0] == "<script>alert(1)</script>"
    page = (root / "index.html").read_text()
    assert "m&lt;odel&gt;&amp;" in page and "m<odel>" not in page
    assert "<script>" not in js_literal(EVIL) and json.loads(js_literal(EVIL)) == EVIL
    app = (root / "assets" / "app.js").read_text()
    assert "innerHTML" not in app and "insertAdjacentHTML" not in app and "document.write" not in app


def test_site_is_self_contained(site):
    root, *_ = site
    page = (root / "index.html").read_text()
    srcs = re.findall(r'(?:src|href)="([^"]+)"', page)
    assert srcs and all(not re.match(r"^[a-z]+://", s) or s.startswith("data:") for s in srcs), srcs
    for s in srcs:
        if not s.startswith(("#", "data:")):
            assert (root / s).exists(), s
    for f in (root / "assets").iterdir():
        assert not re.search(r"https?://(?!www\.w3\.org/2000/svg)", f.read_text()), f"{f} refers to the network"


def test_neuron_record_content(site):
    root, src, truth, _ = site
    rec = neuron_record(root, 0, 3)
    assert rec["c"] == "prediction"
    assert [t[0] for t in rec["top"]] == truth["top_ids"][3].tolist()
    assert [t[2] for t in rec["top"]] == pytest.approx(truth["top_vals"][3].tolist(), rel=1e-3)
    assert [t[0] for t in rec["bot"]] == truth["bot_ids"][3].tolist()
    assert rec["p"][:3] == [1, 0, EVIL[0]]
    assert rec["w"][:4] == [1, "pair", 0, EVIL[0]]
    assert [b[4] for b in rec["cv"]["bins"]] == [0.01, None, 0.95] and rec["cv"]["pred"] == 0
    assert neuron_record(root, 0, 4)["p"] is None and neuron_record(root, 0, 4)["w"] is None


def test_experiment_scores_ranks_and_contrast(site):
    root, src, truth, stats = site
    _, meta = read_js(root / "data" / "meta.js")
    names = [e["name"] for e in meta["experiments"]]
    assert names == ["exp_a", "exp_b"]
    assert [e["counted"] for e in meta["experiments"]] == [True, False]
    assert [e["contrast"] for e in meta["experiments"]] == [True, False]
    assert meta["experiments"][0]["clean"] == "The <b>"
    attribution, exact = truth["exp_a"]
    score, crank = truth["contrast"]
    n = L * D
    for f in (0, 5, D + 2, D + 7, n - 1):
        x = {row[0]: row for row in neuron_record(root, f // D, f % D)["x"]}
        a = x[0]
        assert a[1] == pytest.approx(attribution[f], rel=1e-3)
        assert a[4] == 1 + int((attribution > attribution[f]).sum())  # rank by attribution, all neurons
        if np.isfinite(exact[f]):
            assert a[2] == pytest.approx(exact[f], rel=1e-3)
            assert a[3] == 1 + int((exact[np.isfinite(exact)] > exact[f]).sum())  # rank among exact scores
        else:
            assert a[2] is None and a[3] == 0  # the page labels the attribution instead
        assert a[6] == int(f == D + 7)
        assert a[7] == pytest.approx(score[f], rel=1e-3) and a[8] == crank[f]
        assert x[1][7] is None and x[1][8] == 0  # exp_b has no contrast table
    index = read_js(root / "data" / "index" / "L1.js")[1]
    assert index["so"] == {"7": [0, 1]}


def test_examples_keep_every_token_and_activation(site):
    root, src, truth, _ = site
    ex = truth["examples"].to_pylist()
    by = {}
    for r in ex:
        by.setdefault((r["layer"], r["neuron"]), []).append(r)
    for (layer, neuron), rows in list(by.items())[::7]:
        rec = neuron_record(root, layer, neuron)
        unit = 10.0 ** rec["u"]
        peak = max(abs(a) for r in rows for a in r["activations"])
        assert 100 <= peak / unit < 1000  # three significant digits for the neuron's largest activation
        assert [e[0] for e in rec["e"]] == [r["rank"] for r in rows]
        for e, r in zip(rec["e"], rows):
            assert e[6] == r["tokens"]
            assert np.allclose(np.array(e[7]) * unit, r["activations"], atol=0.51 * unit)
            focus = e[4] - e[5]
            assert e[7][focus] == max(e[7])  # the shaded maximum sits on the example's token
            assert e[1] == pytest.approx(r["value"], rel=1e-4)
    assert neuron_record(root, 0, 0)["e"] is None  # a neuron without examples


def test_index_and_meta(site):
    root, src, truth, stats = site
    _, meta = read_js(root / "data" / "meta.js")
    assert (meta["model"], meta["n_layers"], meta["d_mlp"], meta["d_vocab"]) == ("m<odel>&", L, D, V)
    assert [p[0] for p in meta["pairs"]] == [1, 2] and meta["pairs"][0][1] == 3 and meta["pairs"][1][1] == D + 7
    assert [w[1] for w in meta["watched"]] == [3, D + 9]
    assert meta["class_counts"] == {"prediction": 1, "suppression": 1, "other": L * D - 2}
    assert meta["has_examples"] and meta["n_examples"] == truth["examples"].num_rows == stats["n_examples"]
    for layer in range(L):
        key, ix = read_js(root / "data" / "index" / f"L{layer}.js")
        assert key == f"index/L{layer}"
        assert all(len(ix[c]) == D for c in ("c", "d", "t", "tv", "k", "s", "p", "ps", "a"))
        assert ix["a"][0] is None and ix["a"][1] is not None  # neuron 0 has no examples
    ix0 = read_js(root / "data" / "index" / "L0.js")[1]
    assert ix0["p"][3] == 1 and ix0["t"][3] == EVIL[0] and ix0["c"][3] == 0 and ix0["w"] == [3]
    assert stats["total_bytes"] == sum(f.stat().st_size for f in root.rglob("*") if f.is_file())


def test_token_shards_both_directions(site):
    root, src, truth, _ = site
    tt = truth["tokens"]
    parts = [f"{i}.js" for i in range(math.ceil(V / TOKEN_SHARD))]
    assert sorted(p.name for p in (root / "data" / "tokens").iterdir()) == parts
    _, part = read_js(root / "data" / "tokens" / "0.js")
    rec = part["0"]
    assert [x[0] for x in rec["n"]] == tt.column("top_neurons")[0].as_py()  # token -> neurons
    top_ids = truth["top_ids"]
    holders = sorted(np.flatnonzero((top_ids == 0).any(1)).tolist())
    assert sorted(x[0] for x in rec["t"]) == holders  # neuron -> token: every neuron with it among its top
    for f, rank, _ in rec["t"]:
        assert top_ids[f][rank - 1] == 0
    assert rec["po"] == [0, 0]
    _, part1 = read_js(root / "data" / "tokens" / "1.js")
    assert min(int(t) for t in part1) == TOKEN_SHARD


def test_weights_only_site(tmp_path):
    src, _ = synthetic(tmp_path, with_dataset=False, with_experiments=False)
    stats = build_site(tmp_path / "site", src, "w")
    _, meta = read_js(tmp_path / "site" / "data" / "meta.js")
    assert not meta["has_examples"] and meta["experiments"] == [] and meta["watched"] == []
    rec = neuron_record(tmp_path / "site", 1, D - 1)
    assert rec["e"] is None and rec["x"] == [] and rec["cv"] is None
    assert stats["neurons"] == L * D


def test_rebuild_is_byte_identical(site, tmp_path):
    root, src, *_ = site
    build_site(tmp_path / "again", src, "m<odel>&")
    files = sorted(p.relative_to(root) for p in root.rglob("*") if p.is_file())
    assert files == sorted(p.relative_to(tmp_path / "again") for p in (tmp_path / "again").rglob("*") if p.is_file())
    assert all((root / f).read_bytes() == (tmp_path / "again" / f).read_bytes() for f in files)


def test_sources_follow_the_contracts():
    s = Sources.of("m", "d", ["e1"])
    assert str(s.neurons) == K.path("neurons", model="m")
    assert str(s.examples) == K.path("example_activations", model="m", dataset="d")
    assert str(s.experiments["e1"] / "neurons.parquet") == K.path("exp_neurons", model="m", exp="e1")
    folders = {Path(K.PATHS[k]).parent for k in ("pages_index", "pages_data", "pages_assets")}
    assert folders == {Path("results/{model}/pages")}


def test_universality_twins_and_filter(tmp_path):
    """With the universality tables each neuron lists its twin in each other model and the index its universal
    neurons; without them (test_weights_only_site) no record or index gains a key."""
    src, _ = synthetic(tmp_path, with_dataset=False, with_experiments=False)
    n = L * D
    flat = np.arange(n)
    rows = []
    for f in flat:
        for o, rho in (("other-a", 0.9 if f == D + 2 else 0.2), ("other-b", 0.7 if f == D + 2 else 0.3)):
            rows.append(dict(layer=f // D, neuron=f % D, other_model=o, max_corr=rho, max_layer=1, max_neuron=f % 5,
                             min_corr=-0.1, baseline_max_corr=0.15))
    varrho = np.where(flat == D + 2, 0.8, 0.25)
    src.universality, src.universality_summary = tmp_path / "u.parquet", tmp_path / "s.parquet"
    pq.write_table(pa.Table.from_pylist(rows, schema=K.UNIVERSALITY_NEURONS), src.universality)
    pq.write_table(pa.table({"layer": (flat // D).astype(np.int32), "neuron": (flat % D).astype(np.int32),
                             "varrho": varrho, "baseline_varrho": np.full(n, 0.15), "excess": varrho - 0.15,
                             "universal": varrho > 0.5}).cast(K.UNIVERSALITY_SUMMARY), src.universality_summary)
    build_site(tmp_path / "site", src, "m")
    rec = neuron_record(tmp_path / "site", 1, 2)
    assert rec["tw"] == [["other-a", 1, 2, 0.9, 0.15], ["other-b", 1, 2, 0.7, 0.15]]
    assert rec["vr"] == [0.8, 0.65, 1]
    nt = pq.read_table(src.neurons)
    assert rec["en"] == [num(nt.column(c)[D + 2].as_py()) for c in ("null_share", "w_out_norm")]
    assert neuron_record(tmp_path / "site", 0, 4)["vr"][2] == 0
    _, ix = read_js(tmp_path / "site" / "data" / "index" / "L1.js")
    assert ix["un"] == [2] and ix["v"][2] == 0.8 and len(ix["v"]) == D
    _, ix0 = read_js(tmp_path / "site" / "data" / "index" / "L0.js")
    assert "un" not in ix0 and len(ix0["v"]) == D
    _, meta = read_js(tmp_path / "site" / "data" / "meta.js")
    assert meta["universality"] == {"others": ["other-a", "other-b"], "n_universal": 1}
    plain, _ = synthetic(tmp_path / "plain", with_dataset=False, with_experiments=False)
    build_site(tmp_path / "plain_site", plain, "m")
    assert "tw" not in neuron_record(tmp_path / "plain_site", 1, 2)
    assert "universality" not in read_js(tmp_path / "plain_site" / "data" / "meta.js")[1]
