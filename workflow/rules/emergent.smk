# demo-emergent (docs/demos.md): a generated a/an corpus, and a small GPT-2 trained on it offline, on CPU.
# Seeds: the training corpus, the held-out corpus (the dataset pass reads it) and the probes that check the learned
# rule are all derived from demo.seed (anneuron.stage_config.emergent_seed), so that changing it gives an
# independent replicate.

from anneuron.demos.specs import EMERGENT_N_CTX


rule emergent_corpus:
    output:
        K.PATHS["emergent_corpus"],
    wildcard_constraints:
        split="train|heldout",
    params:
        cfg=lambda wc: S.CorpusConfig.of_emergent(config, wc.split).to_dict(),
    log:
        "logs/emergent_corpus/{split}.log",
    benchmark:
        "benchmarks/emergent_corpus/{split}.tsv"
    priority: CRITICAL_PATH
    threads: 1
    resources:
        mem_mb=2000,
        runtime=10,
    conda:
        "../../envs/cpu.yaml"
    script:
        "../../scripts/emergent_corpus.py"


rule emergent_model:
    input:
        train=K.path("emergent_corpus", split="train"),
    output:
        directory(K.PATHS["emergent_model"]),
    params:
        cfg=S.EmergentModelConfig.of(config, EMERGENT_N_CTX).to_dict(),
    log:
        "logs/emergent_model/demo-emergent.log",
    benchmark:
        "benchmarks/emergent_model/demo-emergent.tsv"
    priority: CRITICAL_PATH
    threads: config["demo"]["emergent"]["threads"]
    resources:
        mem_mb=4000,
        runtime=30,
    conda:
        "../../envs/cpu.yaml"
    script:
        "../../scripts/emergent_model.py"


# A replicate: the same recipe and corpus from another initialisation seed (`make demo DEMO=universal`: is its an
# neuron the same neuron?). Any configured folder named like resources/models/demo-emergent-seed{seed}.
rule emergent_replicate:
    input:
        train=K.path("emergent_corpus", split="train"),
    output:
        directory(K.PATHS["emergent_replicate"]),
    wildcard_constraints:
        seed=r"\d+",
    params:
        cfg=lambda wc: S.EmergentModelConfig.of(config, EMERGENT_N_CTX, seed=int(wc.seed)).to_dict(),
    log:
        "logs/emergent_replicate/seed{seed}.log",
    benchmark:
        "benchmarks/emergent_replicate/seed{seed}.tsv"
    priority: CRITICAL_PATH
    threads: config["demo"]["emergent"]["threads"]
    resources:
        mem_mb=4000,
        runtime=30,
    conda:
        "../../envs/cpu.yaml"
    script:
        "../../scripts/emergent_replicate.py"


rule emergent_loss_curve:
    input:
        model=K.PATHS["emergent_model"],
    output:
        png=report(
            K.PATHS["emergent_loss_curve"],
            caption="../report/emergent/loss_curve.rst",
            category="0. training",
            subcategory="demo-emergent",
            labels={"model": "demo-emergent", "figure": "loss curve"},
        ),
        svg=K.PATHS["emergent_loss_curve_svg"],
    log:
        "logs/emergent_loss_curve/demo-emergent.log",
    benchmark:
        "benchmarks/emergent_loss_curve/demo-emergent.tsv"
    threads: 1
    resources:
        mem_mb=1000,
        runtime=5,
    conda:
        "../../envs/cpu.yaml"
    script:
        "../../scripts/emergent_figure.py"


TARGETS.append(lambda mid: ([K.PATHS["emergent_loss_curve"]] if model_name(mid) == K.PATHS["emergent_model"] else []))
