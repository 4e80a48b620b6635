# Dataset pass (docs/science.md, docs/contracts.md): `watch` writes who is watched and why, every token shard goes
# through the model once (`record`, one GPU job per shard), then the shards' top-k are merged into max-activating
# examples, and the proportion curves, predicted/occurred counts and figures follow.
import re

from anneuron.config import watch_entries

DATASET_RE = re.escape(DATASET_ID)
SHARD_IDS = range(N_SHARDS)


rule watch:
    input:
        pairs=K.PATHS["pairs"],
        stats=K.PATHS["weights_stats"],  # each neuron's top token (not neurons.parquet: a class change reruns nothing here)
        standouts=standout_files("exp_neurons"),
        standout_checks=standout_files("exp_summary"),
        model=model_input,
    output:
        table=K.PATHS["watched"],
        config=K.PATHS["watch_config"],
    wildcard_constraints:
        dataset=DATASET_RE,
    params:
        model=lambda wc: model_name(wc.model),
        cfg=lambda wc: S.WatchConfig.of(config, watch_entries(config, wc.model)).to_dict(),
        experiments=standout_experiments(),
    log:
        "logs/watch/{model}/{dataset}.log",
    benchmark:
        "benchmarks/watch/{model}/{dataset}.tsv"
    priority: CRITICAL_PATH
    localrule: True  # tiny: on the submit host, not a cluster job
    threads: 1
    resources:
        mem_mb=2000,
        runtime=10,
    conda:
        "../../envs/cpu.yaml"
    script:
        "../../scripts/watch.py"


rule record:
    input:
        shard=lambda wc: K.path("token_shard", dataset=wc.dataset, tokenizer=tokenizer_id(wc.model), i=wc.i),
        model=model_input,
        watched=K.PATHS["watched"],
    output:
        tokens=K.PATHS["record_tokens"],
        topk=K.PATHS["record_topk"],
        config=K.PATHS["record_config"],
    wildcard_constraints:
        dataset=DATASET_RE,
    params:
        model=lambda wc: model_name(wc.model),
        dataset=DATASET,
        cfg=S.RecordConfig.of(config).to_dict(),
    log:
        "logs/record/{model}/{dataset}/shard-{i}.log",
    benchmark:
        "benchmarks/record/{model}/{dataset}/shard-{i}.tsv"
    priority: CRITICAL_PATH
    retries: 1  # preemption, out of memory (each attempt gets more memory and time); deterministic errors fail once
    threads: 2
    resources:
        gpu=GPU,
        mem_mb=scaled(16000),
        runtime=scaled(60 if GPU else 240),
    conda:
        "../../envs/gpu.yaml"
    script:
        "../../scripts/record.py"


rule max_examples:
    input:
        topk=expand(K.PATHS["record_topk"], i=SHARD_IDS, allow_missing=True),
        tokens=lambda wc: token_shards(tokenizer_id(wc.model)),
        model=model_input,
    output:
        K.PATHS["max_examples"],
    wildcard_constraints:
        dataset=DATASET_RE,
    params:
        model=lambda wc: model_name(wc.model),
        cfg=S.MaxExamplesConfig.of(config).to_dict(),
    log:
        "logs/max_examples/{model}/{dataset}.log",
    benchmark:
        "benchmarks/max_examples/{model}/{dataset}.tsv"
    priority: CRITICAL_PATH
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
        tokens=expand(K.PATHS["record_tokens"], i=SHARD_IDS, allow_missing=True),
        watched=K.PATHS["watched"],
        model=model_input,
    output:
        curves=K.PATHS["curves"],
        predictions=K.PATHS["predictions"],
        config=K.PATHS["curves_config"],
    wildcard_constraints:
        dataset=DATASET_RE,
    params:
        model=lambda wc: model_name(wc.model),
        cfg=S.CurvesConfig.of(config).to_dict(),
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
        curves=K.PATHS["curves"],
        predictions=K.PATHS["predictions"],
        watched=K.PATHS["watched"],
    output:
        curves=report(
            directory(K.PATHS["figures_curves"]),
            patterns=["{name}.png"],
            caption="../report/dataset/curves.rst",
            category="2. dataset pass",
            subcategory="{model}",
            labels={"model": "{model}", "figure": "{name}"},
        ),
        hist=report(
            K.PATHS["figures_activation_hist"],
            caption="../report/dataset/activation_hist.rst",
            category="2. dataset pass",
            subcategory="{model}",
            labels={"model": "{model}", "figure": "activation histograms"},
        ),
        hist_svg=K.PATHS["figures_activation_hist_svg"],
    wildcard_constraints:
        dataset=DATASET_RE,
    params:
        cfg=S.DatasetFiguresConfig.of(config).to_dict(),
    log:
        "logs/dataset_figures/{model}/{dataset}.log",
    benchmark:
        "benchmarks/dataset_figures/{model}/{dataset}.tsv"
    localrule: True  # tiny: on the submit host, not a cluster job
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
        K.path(key, model=mid, dataset=DATASET_ID)
        for key in ("watched", "max_examples", "curves", "predictions", "figures_curves", "figures_activation_hist")
    ]
)
