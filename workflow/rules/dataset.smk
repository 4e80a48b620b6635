# Dataset pass (docs/science.md, docs/contracts.md, docs/paper.md): every token shard through the model once (`record`, one GPU job per shard),
# then the shards' top-k merged into max-activating examples, the proportion curves and predicted/occurred
# counts, and the figures.
import re

from anneuron.config import watch_entries

DATASET_RE = re.escape(DATASET_ID)
SHARD_IDS = range(N_SHARDS)


rule record:
    input:
        shard=lambda wc: f"resources/tokens/{wc.dataset}/{tokenizer_id(wc.model)}/shard-{wc.i}.parquet",
        model=model_input,
        pairs="results/{model}/weights/pairs.parquet",
        standouts=standout_files("neurons.parquet"),
        standout_checks=standout_files("summary.json"),
    output:
        tokens="results/{model}/{dataset}/tokens/shard-{i}.parquet",
        topk="results/{model}/{dataset}/topk/shard-{i}.parquet",
    wildcard_constraints:
        dataset=DATASET_RE,
    params:
        model=lambda wc: model_name(wc.model),
        device=config["device"],
        dtype=config["dtype"],
        batch_size=config["record"]["batch_size"],
        top_k=config["record"]["top_k_examples"],
        pred_post=config["record"]["pred_post"],
        pred_topk=config["record"]["pred_topk"],
        engine=config["record"]["engine"],
        top_pairs=config["watch"]["top_pairs"],
        watch=lambda wc: watch_entries(config, wc.model),
        standouts=config["watch"]["standouts"],
        experiments=standout_experiments(),
    log:
        "logs/record/{model}/{dataset}/shard-{i}.log",
    benchmark:
        "benchmarks/record/{model}/{dataset}/shard-{i}.tsv"
    threads: 2
    resources:
        gpu=1,
        mem_mb=16000,
        runtime=240,
    conda:
        "../../envs/gpu.yaml"
    script:
        "../../scripts/record.py"


rule max_examples:
    input:
        topk=expand("results/{model}/{dataset}/topk/shard-{i}.parquet", i=SHARD_IDS, allow_missing=True),
        tokens=lambda wc: token_shards(tokenizer_id(wc.model)),
        model=model_input,
    output:
        "results/{model}/{dataset}/max_examples.parquet",
    wildcard_constraints:
        dataset=DATASET_RE,
    params:
        model=lambda wc: model_name(wc.model),
        top_k=config["record"]["top_k_examples"],
        window=config["record"]["window"],
    log:
        "logs/max_examples/{model}/{dataset}.log",
    benchmark:
        "benchmarks/max_examples/{model}/{dataset}.tsv"
    threads: 1
    resources:
        mem_mb=16000,
        runtime=120,
    conda:
        "../../envs/cpu.yaml"
    script:
        "../../scripts/max_examples.py"


rule curves:
    input:
        tokens=expand("results/{model}/{dataset}/tokens/shard-{i}.parquet", i=SHARD_IDS, allow_missing=True),
        pairs="results/{model}/weights/pairs.parquet",
        neurons="results/{model}/weights/neurons.parquet",
        standouts=standout_files("neurons.parquet"),
        standout_checks=standout_files("summary.json"),
        model=model_input,
    output:
        curves="results/{model}/{dataset}/curves.parquet",
        predictions="results/{model}/{dataset}/predictions.parquet",
    wildcard_constraints:
        dataset=DATASET_RE,
    params:
        model=lambda wc: model_name(wc.model),
        bin_width=config["curves"]["bin_width"],
        min_count=config["curves"]["min_count"],
        top_pairs=config["watch"]["top_pairs"],
        watch=lambda wc: watch_entries(config, wc.model),
        standouts=config["watch"]["standouts"],
        experiments=standout_experiments(),
    log:
        "logs/curves/{model}/{dataset}.log",
    benchmark:
        "benchmarks/curves/{model}/{dataset}.tsv"
    threads: 1
    resources:
        mem_mb=4000,
        runtime=60,
    conda:
        "../../envs/cpu.yaml"
    script:
        "../../scripts/curves.py"


rule dataset_figures:
    input:
        curves="results/{model}/{dataset}/curves.parquet",
        predictions="results/{model}/{dataset}/predictions.parquet",
        pairs="results/{model}/weights/pairs.parquet",
    output:
        curves=report(
            directory("results/{model}/figures/{dataset}/curves"),
            patterns=["{name}.png"],
            caption="../report/dataset/curves.rst",
            category="2. dataset pass",
            subcategory="{model}",
            labels={"model": "{model}", "figure": "{name}"},
        ),
        hist=report(
            "results/{model}/figures/{dataset}/activation_hist.png",
            caption="../report/dataset/activation_hist.rst",
            category="2. dataset pass",
            subcategory="{model}",
            labels={"model": "{model}", "figure": "activation histograms"},
        ),
        hist_svg="results/{model}/figures/{dataset}/activation_hist.svg",
    wildcard_constraints:
        dataset=DATASET_RE,
    params:
        min_count=config["curves"]["min_count"],
        top_pairs=config["watch"]["top_pairs"],
    log:
        "logs/dataset_figures/{model}/{dataset}.log",
    benchmark:
        "benchmarks/dataset_figures/{model}/{dataset}.tsv"
    threads: 1
    resources:
        mem_mb=2000,
        runtime=20,
    conda:
        "../../envs/cpu.yaml"
    script:
        "../../scripts/dataset_figures.py"


TARGETS.append(
    lambda mid: [
        f"results/{mid}/{DATASET_ID}/max_examples.parquet",
        f"results/{mid}/{DATASET_ID}/curves.parquet",
        f"results/{mid}/{DATASET_ID}/predictions.parquet",
        f"results/{mid}/figures/{DATASET_ID}/curves",
        f"results/{mid}/figures/{DATASET_ID}/activation_hist.png",
    ]
)
