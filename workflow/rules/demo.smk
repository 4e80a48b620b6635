# The offline demo models and corpora (docs/demos.md): built here, no network needed.
from anneuron.demos.specs import REHEARSAL, REHEARSAL_HEADS


rule demo_model:
    output:
        directory(K.PATHS["demo_model"]),
    params:
        cfg=S.DemoModelConfig.of(config).to_dict(),
    log:
        "logs/demo_model/demo-planted.log",
    benchmark:
        "benchmarks/demo_model/demo-planted.tsv"
    priority: CRITICAL_PATH
    threads: 1
    resources:
        mem_mb=2000,
        runtime=10,
    conda:
        "../../envs/cpu.yaml"
    script:
        "../../scripts/demo_model.py"


rule rehearsal_model:
    output:
        directory(K.PATHS["rehearsal_model"]),
    params:
        shape=dict(n_layer=REHEARSAL.n_layers, d_model=REHEARSAL.d_model, d_mlp=REHEARSAL.d_mlp, n_ctx=REHEARSAL.n_ctx),
        n_head=REHEARSAL_HEADS,
    log:
        "logs/rehearsal_model/rehearsal.log",
    benchmark:
        "benchmarks/rehearsal_model/rehearsal-gpt2-large.tsv"
    priority: CRITICAL_PATH
    threads: 2
    resources:
        mem_mb=8000,
        runtime=30,
    conda:
        "../../envs/cpu.yaml"
    script:
        "../../scripts/rehearsal_model.py"


rule demo_corpus:
    output:
        K.PATHS["demo_corpus"],
    params:
        cfg=S.CorpusConfig.of(config).to_dict(),
    log:
        "logs/demo_corpus/demo-planted.log",
    benchmark:
        "benchmarks/demo_corpus/demo-planted.tsv"
    priority: CRITICAL_PATH
    threads: 1
    resources:
        mem_mb=1000,
        runtime=10,
    conda:
        "../../envs/cpu.yaml"
    script:
        "../../scripts/demo_corpus.py"


TARGETS.append(lambda mid: [model_name(mid)] if str(Path(model_name(mid))) in produced_models(config) else [])
