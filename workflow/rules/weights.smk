# Weights pass (docs/science.md, docs/contracts.md, docs/paper.md): no data needed. `congruence` streams every neuron once against the token
# basis (GPU when present) and keeps the reductions; `pairs` and `neuron_classes` read them (so a change of
# classes.* reruns only the classes and figures); `weights_figures` draws every figure of the stage into one folder
# (its neuron figures depend on the pairs found, so the folder is the output).
import torch

from anneuron.config import watch_entries

CONGRUENCE = config["congruence"]
# gpu=1 only when the configured device resolves to CUDA where the workflow is planned (auto: CUDA if torch sees one)
CONGRUENCE_GPU = int(config["device"] == "cuda" or (config["device"] == "auto" and torch.cuda.is_available()))
TOP_PAIR_FIGURES = 5  # the best pairs whose neuron gets a "vs all tokens" figure
TOP_PAIRS_SHOWN = 20  # pairs on the top_pairs figure


rule congruence:
    input:
        model_input,
    output:
        **({"matrix": directory("results/{model}/weights/matrix")} if CONGRUENCE["save_matrix"] else {}),
        tokens="results/{model}/weights/tokens.parquet",
        stats="results/{model}/weights/neuron_stats.parquet",
        summary="results/{model}/weights/congruence.json",
    params:
        model=lambda wc: model_name(wc.model),
        device=config["device"],
        basis=CONGRUENCE["basis"],
        top_k=CONGRUENCE["top_k"],
        chunk_neurons=CONGRUENCE["chunk_neurons"],
        dtype=CONGRUENCE["dtype"],
        save_matrix=CONGRUENCE["save_matrix"],
    log:
        "logs/congruence/{model}.log",
    benchmark:
        "benchmarks/congruence/{model}.tsv"
    threads: 8
    resources:
        gpu=CONGRUENCE_GPU,
        mem_mb=16000,
        runtime=120,
    conda:
        "../../envs/gpu.yaml"
    script:
        "../../scripts/congruence.py"


rule pairs:
    input:
        tokens="results/{model}/weights/tokens.parquet",
        stats="results/{model}/weights/neuron_stats.parquet",
    output:
        "results/{model}/weights/pairs.parquet",
    log:
        "logs/pairs/{model}.log",
    benchmark:
        "benchmarks/pairs/{model}.tsv"
    threads: 1
    resources:
        mem_mb=4000,
        runtime=10,
    conda:
        "../../envs/cpu.yaml"
    script:
        "../../scripts/pairs.py"


rule neuron_classes:
    input:
        "results/{model}/weights/neuron_stats.parquet",
    output:
        "results/{model}/weights/neurons.parquet",
    params:
        kurtosis=config["classes"]["kurtosis"],
        partition_var=config["classes"]["partition_var"],
    log:
        "logs/neuron_classes/{model}.log",
    benchmark:
        "benchmarks/neuron_classes/{model}.tsv"
    threads: 1
    resources:
        mem_mb=4000,
        runtime=10,
    conda:
        "../../envs/cpu.yaml"
    script:
        "../../scripts/neuron_classes.py"


rule weights_figures:
    input:
        model=model_input,
        tokens="results/{model}/weights/tokens.parquet",
        neurons="results/{model}/weights/neurons.parquet",
        pairs="results/{model}/weights/pairs.parquet",
    output:
        report(
            directory("results/{model}/figures/weights"),
            patterns=["{name}.png"],
            caption="../report/weights/figures.rst",
            category="1. weights pass",
            subcategory="{model}",
            labels={"model": "{model}", "figure": "{name}"},
        ),
    params:
        model=lambda wc: model_name(wc.model),
        basis=CONGRUENCE["basis"],
        tokens=CONGRUENCE["tokens"],
        watch=lambda wc: [[layer, neuron] for layer, neuron, _ in watch_entries(config, wc.model)],
        top_pair_figures=TOP_PAIR_FIGURES,
        top_pairs_shown=TOP_PAIRS_SHOWN,
        kurtosis=config["classes"]["kurtosis"],
        partition_var=config["classes"]["partition_var"],
    log:
        "logs/weights_figures/{model}.log",
    benchmark:
        "benchmarks/weights_figures/{model}.tsv"
    threads: 1
    resources:
        mem_mb=16000,
        runtime=20,
    conda:
        "../../envs/cpu.yaml"
    script:
        "../../scripts/weights_figures.py"


TARGETS.append(
    lambda mid: [
        f"results/{mid}/weights/tokens.parquet",
        f"results/{mid}/weights/neurons.parquet",
        f"results/{mid}/weights/pairs.parquet",
        f"results/{mid}/figures/weights",
    ]
)
