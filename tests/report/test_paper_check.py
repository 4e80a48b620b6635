"""The paper-check table (anneuron.report.paper_check) on synthetic stage outputs that hold exactly the post's
numbers."""

from __future__ import annotations

import json
from html.parser import HTMLParser
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from anneuron.report.paper_check import (
    CHECKS,
    PAPER_SETTINGS,
    POST_PROMPTS,
    inputs,
    paper_check,
    settings_mismatch,
    to_html,
)

N_LAYERS, D_MLP, LAST = 36, 5120, 19
POST = dict(PAPER_SETTINGS, **{f"prompts.{e}": list(p) for e, p in POST_PROMPTS.items()},
            **{"layers.an_a": [31, 25], "layers.tall_short": [25], "layers.big_small": [25],
               "layers.huge_tiny": [25]})  # a run with exactly the post's settings (as run_settings gives them)
FORBIDDEN = 35 * D_MLP + 3354


def _write(path: Path, rows: list[dict]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    pq.write_table(pa.Table.from_pylist(rows), path)


def _lens_labels(n_layers: int) -> list[str]:
    return [f"{l}_{k}" for l in range(n_layers) for k in ("pre", "mid")] + ["final_post"]


def write_post_outputs(root: Path, experiments: bool = True) -> Path:
    """results/gpt2-large as the post would have written it (only the rows the check reads, plus distractors)."""
    exp = root / "experiments"
    if experiments:
        _write(exp / "an_a/predictions.parquet", [
            dict(prompt="clean", rank=1, token_id=281, token_str=" an", prob=0.649, logit=20.0),
            dict(prompt="clean", rank=2, token_id=257, token_str=" a", prob=0.2, logit=19.0),
            dict(prompt="corrupted", rank=1, token_id=257, token_str=" a", prob=0.851, logit=21.0),
            dict(prompt="corrupted", rank=2, token_id=281, token_str=" an", prob=0.05, logit=18.0)])
        (exp / "an_a/summary.json").write_text(json.dumps(
            dict(ld_clean=0.986, ld_corrupted=-2.0, prompt_check="ok", neuron_layers=[31, 25], answer=" an",
                 wrong=" a", prob_answer_clean=0.649, prob_wrong_corrupted=0.851, prob_wrong_clean=0.2)))
        labels = _lens_labels(N_LAYERS)
        lens = [0.01 * i for i in range(labels.index("32_pre"))]
        lens += [1.09 + 0.001 * i for i in range(len(labels) - len(lens))]
        _write(exp / "an_a/logit_lens.parquet",
               [dict(index=i, label=lab, convention=conv, logit_diff=v + (0.0 if conv == "post" else 0.3))
                for conv in ("post", "recomputed") for i, (lab, v) in enumerate(zip(labels, lens))])
        special = {("mlp_out", 31, LAST): 0.492, ("attn_out", 26, LAST): 0.524, ("mlp_out", 2, 3): 0.9}
        _write(exp / "an_a/layers.parquet",
               [dict(component=c, layer=l, pos=p, token_str="x", score=special.get((c, l, p), 0.01))
                for c in ("resid_pre", "attn_out", "mlp_out") for l in range(N_LAYERS) for p in range(LAST + 1)])
        _write(exp / "an_a/neurons.parquet", [
            dict(layer=31, neuron=892, attribution=0.45, exact=0.5032, standout_z=40.0, standout=True),
            dict(layer=31, neuron=17, attribution=0.01, exact=0.008, standout_z=2.0, standout=False),
            dict(layer=31, neuron=18, attribution=0.0, exact=0.001, standout_z=0.1, standout=False),
            # picked by attribution outside the layers patched whole: exact, but never the "best" of a layer
            dict(layer=30, neuron=5, attribution=0.6, exact=0.7, standout_z=1.0, standout=False),
            dict(layer=29, neuron=1, attribution=0.9, exact=None, standout_z=9.0, standout=True),  # attribution only
            # the notes' an_a control: L25N4425 tops layer 25 by 0.01, L25N4413 does not stand out
            dict(layer=25, neuron=4425, attribution=0.05, exact=0.05, standout_z=3.0, standout=False),
            dict(layer=25, neuron=7, attribution=0.04, exact=0.04, standout_z=2.5, standout=False),
            dict(layer=25, neuron=4413, attribution=0.001, exact=0.002, standout_z=0.2, standout=False)])
        scores = {"tall_short": 0.084, "big_small": 0.045, "huge_tiny": 0.033}
        for name, score in scores.items():
            _write(exp / f"{name}/neurons.parquet", [
                dict(layer=25, neuron=4413, attribution=0.3, exact=score, standout_z=12.0, standout=True),
                dict(layer=25, neuron=2896, attribution=0.0, exact=0.026 if name == "tall_short" else 0.0,
                     standout_z=3.0, standout=False),
                dict(layer=25, neuron=582, attribution=0.0, exact=0.03 if name == "tall_short" else 0.0,
                     standout_z=3.0, standout=False),
                dict(layer=3, neuron=3, attribution=0.0, exact=0.1, standout_z=50.0, standout=name == "tall_short"),
                dict(layer=25, neuron=1, attribution=0.0, exact=0.0, standout_z=0.0, standout=False)])
            (exp / f"{name}/summary.json").write_text(json.dumps(dict(ld_clean=1.0, neuron_layers=[25])))
        # across every experiment L3N3 stands out most often; the check counts the tall/short family only
        _write(exp / "summary.parquet", [
            dict(layer=25, neuron=4413, experiments=["big_small", "huge_tiny", "tall_short"], n_experiments=3,
                 max_exact=0.3, mean_z=12.0),
            dict(layer=3, neuron=3, experiments=["an_a", "mine", "other", "tall_short"], n_experiments=4,
                 max_exact=0.1, mean_z=50.0)])
        write_overview(root, [])
    w = root / "weights"
    # footnote 4: the forbidden neuron tops 60 of the 100 tokens with the highest top-neuron congruence
    forbidden = [dict(token_id=1000 + i, token_str=f"f{i}", top_neurons=[FORBIDDEN if i % 5 < 3 else 9 + i, 5],
                      top_values=[20.0 - 0.01 * i, 1.0], d_tok=1.0) for i in range(100)]
    _write(w / "tokens.parquet", [
        dict(token_id=281, token_str=" an", top_neurons=[31 * D_MLP + 892, 5], top_values=[2.749, 1.0], d_tok=1.7),
        dict(token_id=3584, token_str=" though", top_neurons=[28 * D_MLP + 1921, 7], top_values=[2.5, 1.0],
             d_tok=1.5), *forbidden])
    _write(w / "neurons.parquet", [
        dict(layer=31, neuron=892, top_token_ids=[281], top_values=[2.749]),
        dict(layer=35, neuron=D_MLP - 1, top_token_ids=[1], top_values=[0.1])])
    pairs = [("i", 33, 4142, 7.467), ("/", 34, 862, 5.386), ("is", 34, 3402, 4.646)]
    pairs += [("an", 34, 4549, 4.0)] + [(f"t{r}", 20, r, 4.0 - 0.1 * r) for r in range(5, 15)]
    pairs += [(" though", 28, 1921, 2.274)]
    _write(w / "pairs.parquet", [dict(rank=r, layer=l, neuron=n, token_id=r, token_str=t, congruence=s, d_neu=1.0,
                                      d_tok=s, score=s) for r, (t, l, n, s) in enumerate(pairs, start=1)])
    _write(root / "pile-10k/predictions.parquet", [
        dict(token_id=281, token_str=" an", predicted=900, occurred=12389, predicted_post=1471),
        dict(token_id=3584, token_str=" though", predicted=100, occurred=654, predicted_post=214),
        dict(token_id=1, token_str='"', predicted=5, occurred=5, predicted_post=5)])
    curve = dict(layer=31, neuron=892, token_id=281, token_str=" an")
    _write(root / "pile-10k/curves.parquet", [
        dict(curve, bin_lo=0.0, bin_hi=0.2, count=900, hits=9, proportion=0.01),
        dict(curve, bin_lo=5.0, bin_hi=5.2, count=3, hits=3, proportion=None),  # floor: too thin for a proportion
        dict(curve, bin_lo=5.2, bin_hi=5.4, count=0, hits=0, proportion=float("nan")),  # empty: not the top bin
        dict(layer=28, neuron=1921, token_id=3584, token_str=" though", bin_lo=9.0, bin_hi=9.2, count=1, hits=0,
             proportion=0.0)])
    return root


def write_overview(root: Path, not_counted: list[str]) -> None:
    _write(root / "experiments/overview.parquet", [
        dict(experiment=e, counted=e not in not_counted, ld_clean=1.0, ld_corrupted=0.8 if e in not_counted else -2.0)
        for e in ("an_a", "tall_short", "big_small", "huge_tiny")])


@pytest.fixture
def post_outputs(tmp_path) -> Path:
    return write_post_outputs(tmp_path / "gpt2-large")


def test_post_numbers_give_zero_differences(post_outputs):
    rows = paper_check(post_outputs, "gpt2-large", "pile-10k", POST).to_pylist()
    assert [r["key"] for r in rows] == [c.key for c in CHECKS]
    for r in rows:
        assert r["note"] is None or not r["note"].startswith("missing"), r
        assert r["status"] == "ok" and r["ours"] is not None, r
        # pair_an_rank: the post names ranks 1-3 and puts "an"-L34N4549 in its top 5: 4.5 ± 0.5
        assert r["difference"] == pytest.approx(-0.5 if r["key"] == "pair_an_rank" else 0.0, abs=1e-9), r
        assert r["within"] is True and r["settings"], r
        assert r["same_item"] in (True, None), r


def test_best_rows_name_what_ranks_first(post_outputs):
    rows = {r["key"]: r for r in paper_check(post_outputs, "gpt2-large", "pile-10k", POST).to_pylist()}
    assert rows["neuron_next"]["our_item"] == "L31N17"  # next best in L31, not L30N5 (another layer)
    assert rows["pair_1"]["our_item"] == "'i'–L33N4142"
    assert rows["pair_though_rank"]["ours"] == 15
    assert rows["lens_jump"]["our_item"] == "32_pre"
    assert rows["top_standout"]["our_item"].startswith("L25N4413")  # 3 experiments beat a higher mean z in 2
    assert rows["an_predicted"]["note"] == "pred_post"


def test_other_model_has_no_reference_rows_nor_differences(post_outputs):
    rows = paper_check(post_outputs, "demo-planted", "pile-10k", POST).to_pylist()
    keys = {r["key"] for r in rows}
    assert keys == {c.key for c in CHECKS if not c.reference_only}
    assert all(r["difference"] is None for r in rows)
    assert all(r["published"] is not None for r in rows)  # the post's numbers stay, for reference


def test_missing_inputs_give_nulls_with_notes(tmp_path):
    root = write_post_outputs(tmp_path / "gpt2-large", experiments=False)
    (root / "pile-10k/predictions.parquet").unlink()
    rows = {r["key"]: r for r in paper_check(root, "gpt2-large", "pile-10k", POST).to_pylist()}
    assert rows["ld_clean"]["ours"] is None and rows["ld_clean"]["note"].startswith("missing: experiments/an_a")
    assert rows["an_occurred"]["ours"] is None and "missing" in rows["an_occurred"]["note"]
    for key in ("ld_clean", "an_occurred", "L25N4413_standout", "top_standout"):
        assert rows[key]["status"] == "missing", rows[key]
    assert rows["pair_1"]["status"] == "ok"
    page = to_html(paper_check(root, "gpt2-large", "pile-10k", POST), "gpt2-large", dict(PAPER_SETTINGS))
    assert page.count('<span class="missing">missing</span>') == sum(r["status"] == "missing" for r in rows.values())
    assert rows["pair_1"]["ours"] == pytest.approx(7.467)  # what exists is still there
    assert rows["congruence_L31N892_an"]["ours"] == pytest.approx(2.749)


def test_shallow_model_rows_say_what_is_missing(tmp_path):
    root = write_post_outputs(tmp_path / "gpt2-large")
    _write(root / "experiments/an_a/layers.parquet",
           [dict(component="mlp_out", layer=l, pos=4, token_str="x", score=0.1 * l) for l in range(3)])
    rows = {r["key"]: r for r in paper_check(root, "gpt2-large", "pile-10k", POST).to_pylist()}
    assert rows["mlp_out_L31"]["ours"] is None and rows["mlp_out_L31"]["note"] == "no layer 31"
    assert rows["mlp_out_L31"]["status"] == "n/a"  # the file is there; the item is not
    assert rows["mlp_out_best"]["our_item"] == "L2" and rows["mlp_out_best"]["same_item"] is False
    assert rows["attn_out_best"]["note"] == "no attn_out rows"


class _Collector(HTMLParser):
    def __init__(self):
        super().__init__()
        self.cells: list[str] = []
        self._in_td = False

    def handle_starttag(self, tag, attrs):
        self._in_td = tag == "td"

    def handle_data(self, data):
        if self._in_td:
            self.cells.append(data)


def test_html_lists_every_row_and_flags_settings(post_outputs):
    table = paper_check(post_outputs, "gpt2-large", "pile-10k", POST)
    page = to_html(table, "gpt2-large", dict(PAPER_SETTINGS))
    parser = _Collector()
    parser.feed(page)
    for c in CHECKS:
        assert c.quantity in parser.cells
    assert "used the post's settings" in page
    off = to_html(table, "gpt2-large", dict(PAPER_SETTINGS, chunking="concat"))
    assert "chunking = &#x27;concat&#x27; (the post: &#x27;truncate&#x27;)" in off  # escaped, as every value
    assert settings_mismatch(dict(PAPER_SETTINGS, pred_post=False)) == ["pred_post = False (the post: True)"]


def test_values_are_escaped_on_the_page(post_outputs):
    """A model id, a setting or a note holding `<` or `&` reads as text on the page, never as markup."""
    table = paper_check(post_outputs, "m<b>&co", "pile-10k", POST)
    rows = table.to_pylist()
    rows[0]["note"] = "<script>alert(1)</script> & more"
    page = to_html(pa.Table.from_pylist(rows, schema=table.schema), "m<b>&co", dict(POST, dtype="<f4>"))
    assert "<b>" not in page and "<script>" not in page and "<f4>" not in page
    assert "<h3>Paper check: m&lt;b&gt;&amp;co</h3>" in page
    assert "<td>&lt;script&gt;alert(1)&lt;/script&gt; &amp; more</td>" in page
    assert "dtype = &#x27;&lt;f4&gt;&#x27;" in page
    parser = _Collector()
    parser.feed(page)
    assert "<script>alert(1)</script> & more" in parser.cells  # the text itself survives


def test_inputs_follow_the_configured_experiments():
    files = inputs("results/m", "pile-10k", ["an_a", "mine"])
    assert "results/m/experiments/an_a/neurons.parquet" in files
    assert not [f for f in files if "tall_short" in f or "/mine/" in f]
    assert {"results/m/weights/pairs.parquet", "results/m/pile-10k/predictions.parquet",
            "results/m/experiments/summary.parquet"} <= set(files)


def test_a_setting_the_post_did_not_use_makes_its_rows_not_comparable(post_outputs):
    rows = {r["key"]: r for r in paper_check(post_outputs, "gpt2-large", "pile-10k",
                                             dict(POST, dtype="bfloat16", basis="wu")).to_pylist()}
    for key in ("ld_clean", "mlp_out_L31", "neuron_best", "an_predicted", "top_standout"):
        assert rows[key]["status"] == "not comparable: dtype = 'bfloat16' (the post: 'float32')", rows[key]
        assert rows[key]["difference"] is None and rows[key]["ours"] is not None
    assert rows["pair_1"]["status"] == "not comparable: basis = 'wu' (the post: 'we')"
    # `auto` is judged by what it chose (summary.json): layers 31 and 25 here, as the post's
    auto = {r["key"]: r for r in paper_check(post_outputs, "gpt2-large", "pile-10k",
                                             dict(POST, **{"layers.an_a": "auto"})).to_pylist()}
    assert auto["neuron_best"]["status"] == "ok"
    summary = post_outputs / "experiments/an_a/summary.json"
    summary.write_text(json.dumps(dict(json.loads(summary.read_text()), neuron_layers=[30])))
    other = {r["key"]: r for r in paper_check(post_outputs, "gpt2-large", "pile-10k", POST).to_pylist()}
    assert other["neuron_best"]["status"] == "not comparable: layers.an_a = [30] (the post patched layer 31 exactly)"
    assert other["an_a_L25_margin"]["status"] == ("not comparable: layer 25 was not patched exactly in an_a; "
                                                  "layers.an_a = [30] (the post patched layer 25 exactly)")
    assert other["neuron_L31N892"]["status"] == "ok"  # its exact score exists: it was patched exactly either way
    floor = {r["key"]: r for r in paper_check(post_outputs, "gpt2-large", "pile-10k",
                                              dict(POST, readout="logits", binning="floor")).to_pylist()}
    assert floor["an_curve_top_bin"]["status"] == ("not comparable: readout = 'logits' (the post: 'post'); "
                                                 "binning = 'floor' (the post: 'post')")
    assert floor["an_predicted"]["status"] == "ok"  # the counts do not depend on the curves' settings
    assert floor["an_curve_top_bin"]["ours"] == 1.0 and floor["an_curve_top_bin"]["note"] == "bin [5, 5.2): 3 of 3"


def test_an_attribution_score_is_never_reported_as_the_exact_one(tmp_path):
    root = write_post_outputs(tmp_path / "gpt2-large")
    path = root / "experiments/an_a/neurons.parquet"
    t = pq.read_table(path).to_pylist()
    for r in t:
        if (r["layer"], r["neuron"]) == (31, 892):
            r["exact"] = None
    _write(path, t)
    row = {r["key"]: r for r in paper_check(root, "gpt2-large", "pile-10k", POST).to_pylist()}["neuron_L31N892"]
    assert row["ours"] is None and row["difference"] is None and row["note"].startswith("attribution ")
    assert row["status"] == "not comparable: layer 31 was not patched exactly (attribution only)"


def test_run_settings_read_the_config():
    from configs import merged, validated

    from anneuron.report.paper_check import run_settings, settings_mismatch
    from anneuron.stage_config import PaperCheckConfig

    def settings(config: dict) -> dict:  # through the params, as the rule passes them
        return run_settings(PaperCheckConfig.from_dict(PaperCheckConfig.of(validated(config), 1024).to_dict()))

    assert settings_mismatch(settings(merged("workflow/configs/paper.yaml"))) == []  # it pins every post setting
    default = settings(merged())
    assert "chunking = 'concat' (the post: 'truncate')" in settings_mismatch(default)
    assert default["layers.an_a"] == "auto" and settings(dict(merged(), experiments={}))["layers.an_a"] is None
    first_100 = merged("workflow/configs/paper.yaml")
    first_100["data"]["max_docs"] = 100  # as a configfile overlay `data: {max_docs: 100}` sets it
    assert settings_mismatch(settings(first_100)) == ["max_docs = 100 (the post: None)"]
    unpinned = merged("workflow/configs/paper.yaml")
    unpinned["revisions"] = {}
    assert settings_mismatch(settings(unpinned)) == [
        "revision = None (the post: 'eb25b8a95049673437d6e0c9bfa95070f3b79913')"]
    as_task = merged("workflow/configs/paper.yaml")  # the post's experiment asked of many pairs: not the post's pair
    an_a = as_task["experiments"]["an_a"]
    as_task["experiments"]["an_a"] = {"pairs": [{k: an_a[k] for k in ("clean", "corrupted", "answer", "wrong")}] * 2,
                                      "neuron_layers": an_a["neuron_layers"]}
    assert settings_mismatch(settings(as_task)) == [
        "an_a's prompts are not the post's (clean = None, corrupted = None, answer = None, wrong = None)"]


def test_an_experiment_left_out_of_the_standout_count_is_named(post_outputs):
    """The cross-experiment count only takes experiments whose prompts move the LD enough (contracts.MIN_LD_GAP):
    the row says which were left out, so "no neuron stands out" is never unexplained."""
    write_overview(post_outputs, ["big_small"])
    row = {r["key"]: r for r in paper_check(post_outputs, "gpt2-large", "pile-10k", POST).to_pylist()}["top_standout"]
    assert row["note"] == "not counted (|clean − corrupted LD| < 0.5, or not finite): big_small" and row["ours"] == 2


@pytest.mark.parametrize("key, value", [
    ("max_docs", 100), ("max_tokens", 50_000), ("dataset", "NeelNanda/pile-10k-copy"), ("split", "validation"),
    ("text_column", "content"), ("revision", None), ("revision", "main"), ("config_name", "default"),
    ("data_files", ["data/part-0.parquet"]), ("chunking", "concat"), ("seq_len", 512), ("counts", "next"),
    ("pred_post", False), ("dtype", "bfloat16"), ("basis", "cosine"), ("congruence_dtype", "bfloat16"),
    ("readout", "logits"), ("binning", "floor"), ("standout_z", 6), ("standout_min_score", 0.05),
])
def test_every_row_that_depends_on_a_setting_says_not_comparable(post_outputs, key, value):
    """Change one setting: exactly the rows that list it say "not comparable: <key> = ..." and lose their
    difference; every other row stays "ok". Each setting is listed by at least one row."""
    rows = paper_check(post_outputs, "gpt2-large", "pile-10k", dict(POST, **{key: value})).to_pylist()
    hit = [r for r in rows if key in r["settings"].split(", ")]
    assert hit, key
    for r in rows:
        if r in hit:
            assert r["status"] == f"not comparable: {key} = {value!r} (the post: {PAPER_SETTINGS[key]!r})", r
            assert r["difference"] is None and r["within"] is None and r["ours"] is not None, r
        else:
            assert r["status"] == "ok", r


def test_max_docs_100_makes_the_count_rows_not_comparable(post_outputs):
    """A run over the first 100 documents: the four count rows (and the curve) say so; the weights rows do not."""
    rows = {r["key"]: r for r in paper_check(post_outputs, "gpt2-large", "pile-10k",
                                             dict(POST, max_docs=100)).to_pylist()}
    for key in ("an_predicted", "an_occurred", "though_predicted", "though_occurred", "an_curve_top_bin"):
        assert rows[key]["status"] == "not comparable: max_docs = 100 (the post: None)", rows[key]
    assert rows["pair_1"]["status"] == "ok" and rows["ld_clean"]["status"] == "ok"


def test_other_prompts_make_their_experiments_rows_not_comparable(post_outputs):
    mine = list(POST_PROMPTS["tall_short"])
    mine[0] = "John is tall. Jane is"
    rows = {r["key"]: r for r in paper_check(post_outputs, "gpt2-large", "pile-10k",
                                             dict(POST, **{"prompts.tall_short": mine})).to_pylist()}
    why = "not comparable: tall_short's prompts are not the post's (clean = 'John is tall. Jane is')"
    for key in ("L25N4413_tall_short", "L25N2896_tall_short", "L25N4413_standout", "top_standout"):
        assert rows[key]["status"] == why, rows[key]
    assert rows["L25N4413_big_small"]["status"] == "ok" and rows["ld_clean"]["status"] == "ok"


def test_best_neuron_is_never_an_attribution_pick(post_outputs):
    """L30N5 (exact 0.7, picked by attribution outside the layers patched whole) and L29N1 (attribution 0.9, no
    exact score) both beat L31N892's 0.5032 but are not what the post measured: the best is over layer 31."""
    rows = {r["key"]: r for r in paper_check(post_outputs, "gpt2-large", "pile-10k", POST).to_pylist()}
    assert rows["neuron_best"]["our_item"] == "L31N892" and rows["neuron_best"]["ours"] == pytest.approx(0.5032)
    assert rows["neuron_next"]["our_item"] == "L31N17"
    assert rows["an_a_L25_margin"]["our_item"] == "L25N4425" and rows["an_a_L25_margin"]["ours"] == pytest.approx(0.01)
    assert rows["L25N4413_an_a_standout"]["ours"] == 0


def test_top_standout_counts_the_tall_short_family(post_outputs):
    """summary.parquet ranks L3N3 first (4 experiments, an_a among them); the notes counted the three tall/short
    prompts, where L25N4413 stands out in all three and L3N3 in one."""
    row = {r["key"]: r for r in paper_check(post_outputs, "gpt2-large", "pile-10k", POST).to_pylist()}["top_standout"]
    assert row["ours"] == 3 and row["our_item"] == "L25N4413: tall_short, big_small, huge_tiny"


def test_forbidden_neuron_row(post_outputs):
    rows = {r["key"]: r for r in paper_check(post_outputs, "gpt2-large", "pile-10k", POST).to_pylist()}
    r = rows["forbidden_neuron"]
    assert (r["ours"], r["our_item"], r["same_item"]) == (1, "L35N3354", True)
    assert r["note"].startswith("L35N3354 tops 60 of the 100 tokens")
    path = post_outputs / "weights/tokens.parquet"
    t = pq.read_table(path).to_pylist()
    for x in t:
        if x["top_neurons"][0] == FORBIDDEN and x["token_id"] < 1060:
            x["top_neurons"] = [77, 5]  # 36 of its 60 go to L0N77: it keeps 24
    _write(path, t)
    r = {r["key"]: r for r in paper_check(post_outputs, "gpt2-large", "pile-10k", POST).to_pylist()}["forbidden_neuron"]
    assert (r["ours"], r["our_item"], r["same_item"], r["within"]) == (2, "L0N77", False, False)


def test_an_experiment_whose_prompts_misbehave_is_not_comparable(post_outputs):
    """On a model where the post's prompt pair fails its check (the corrupted prompt prefers the answer too), the
    rows that depend on those prompts say so instead of "ok"."""
    summary = post_outputs / "experiments/an_a/summary.json"
    check = "corrupted prompt prefers ' an' over ' a' (LD 15.9)"
    summary.write_text(json.dumps(dict(json.loads(summary.read_text()), prompt_check=check)))
    rows = {r["key"]: r for r in paper_check(post_outputs, "gpt2-large", "pile-10k", POST).to_pylist()}
    for key in ("p_answer_clean", "ld_clean", "lens_jump", "mlp_out_best", "neuron_best", "L25N4413_an_a_standout"):
        assert rows[key]["status"] == f"not comparable: an_a's prompt check: {check}", rows[key]
    assert rows["L25N4413_tall_short"]["status"] == "ok" and rows["pair_1"]["status"] == "ok"
