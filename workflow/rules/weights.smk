# Weights pass (docs/science.md, docs/contracts.md): no data needed. `congruence` streams every neuron once against
# the token basis (GPU when present) and keeps the reductions; `pairs` and `neuron_classes` read them (so a change of
# classes.* reruns only the classes and figures); `weights_figures` draws every figure of the stage into one folder
# (its neuron figures depend on the pairs found, so the folder is the output).
from anneuron.config import watch_entries


rule congruence:
    input:
        model_input,
    output:
        **({"matrix": directory(K.PATHS["weights_matrix"])} if config["congruence"]["save_matrix"] else {}),
        tokens=K.PATHS["weights_tokens"],
        stats=K.PATHS["weights_stats"],
        summary=K.PATHS["weights_summary"],
        config=K.PATHS["weights_config"],
    params:
        model=lambda wc: model_name(wc.model),
        cfg=S.CongruenceConfig.of(config).to_dict(),
    log:
        "logs/congruence/{model}.log",
    benchmark:
        "benchmarks/congruence/{model}.tsv"
    priority: CRITICAL_PATH
    retries: 1
    threads: 8
    resources:
        gpu=GPU,
        mem_mb=scaled(16000),
        runtime=scaled(30 if GPU else 120),
    conda:
        "../../envs/gpu.yaml"
    script:
        "../../scripts/congruence.py"


rule pairs:
    input:
        tokens=K.PATHS["weights_tokens"],
        stats=K.PATHS["weights_stats"],
    output:
        K.PATHS["pairs"],
    log:
        "logs/pairs/{model}.log",
    benchmark:
        "benchmarks/pairs/{model}.tsv"
    priority: CRITICAL_PATH
    localrule: True  # tiny: on the submit host, not a cluster job
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
        K.PATHS["weights_stats"],
    output:
        K.PATHS["neurons"],
    params:
        cfg=S.ClassesConfig.of(config).to_dict(),
    log:
        "logs/neuron_classes/{model}.log",
    benchmark:
        "benchmarks/neuron_classes/{model}.tsv"
    localrule: True  # tiny: on the submit host, not a cluster job
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
        tokens=K.PATHS["weights_tokens"],
        neurons=K.PATHS["neurons"],
        pairs=K.PATHS["pairs"],
    output:
        report(
            directory(K.PATHS["figures_weights"]),
            patterns=["{name}.png"],
            caption="../report/weights/figures.rst",
            category="1. weights pass",
            subcategory="{model}",
            labels={"model": "{model}", "figure": "{name}"},
        ),
    params:
        model=lambda wc: model_name(wc.model),
        cfg=lambda wc: S.WeightsFiguresConfig.of(config, watch_entries(config, wc.model)).to_dict(),
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
    lambda mid: [K.path(key, model=mid) for key in ("weights_tokens", "neurons", "pairs", "figures_weights")]
)
