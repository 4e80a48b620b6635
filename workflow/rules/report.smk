# The paper check (docs/paper.md): the post's published numbers beside ours, one table per model, last in the report.
# The report itself: `snakemake --report report.html` (workflow/report/workflow.rst is its front page).
from anneuron.report import paper_check as PC


rule paper_check:
    input:
        lambda wc: PC.inputs(f"results/{wc.model}", DATASET_ID, list(config["experiments"])),
    output:
        table=K.PATHS["paper_check"],
        html=report(
            K.PATHS["paper_check_html"],
            caption="../report/paper_check.rst",
            category="4. paper check",
            subcategory="{model}",
            labels={"model": "{model}", "table": "paper check"},
        ),
    params:
        results=lambda wc: f"results/{wc.model}",
        model=lambda wc: wc.model,
        dataset=DATASET_ID,
        # the settings the post's numbers depend on (rows say "not comparable" where they differ from the post's)
        cfg=lambda wc: S.PaperCheckConfig.of(config, seq_len(tokenizer_id(wc.model))).to_dict(),
    log:
        "logs/paper_check/{model}.log",
    benchmark:
        "benchmarks/paper_check/{model}.tsv"
    localrule: True  # tiny: on the submit host, not a cluster job
    threads: 1
    resources:
        mem_mb=2000,
        runtime=10,
    conda:
        "../../envs/cpu.yaml"
    script:
        "../../scripts/paper_check.py"


TARGETS.append(lambda mid: [K.path(k, model=mid) for k in ("paper_check", "paper_check_html")])


rule manifest:
    input:
        lambda wc: [
            K.path("weights_config", model=wc.model),
            K.path("watch_config", model=wc.model, dataset=DATASET_ID),
            K.path("curves_config", model=wc.model, dataset=DATASET_ID),
        ]
        + expand(K.PATHS["record_config"], model=wc.model, dataset=DATASET_ID, i=range(N_SHARDS))
        + [K.path("exp_config", model=wc.model, exp=e) for e in config["experiments"]],
    output:
        json=K.PATHS["manifest"],
        html=report(
            K.PATHS["manifest_html"],
            caption="../report/manifest.rst",
            category="5. provenance",
            subcategory="{model}",
            labels={"model": "{model}", "table": "manifest"},
        ),
    log:
        "logs/manifest/{model}.log",
    benchmark:
        "benchmarks/manifest/{model}.tsv"
    localrule: True
    threads: 1
    resources:
        mem_mb=1000,
        runtime=5,
    conda:
        "../../envs/cpu.yaml"
    script:
        "../../scripts/manifest.py"


TARGETS.append(lambda mid: [K.path(k, model=mid) for k in ("manifest", "manifest_html")])
