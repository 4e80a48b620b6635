# The paper check (docs/paper.md): the post's published numbers beside ours, one table per model, last in the report.
# The report itself: `snakemake --report report.html` (workflow/report/workflow.rst is its front page).
from anneuron import paper_check as PC


rule paper_check:
    input:
        lambda wc: PC.inputs(f"results/{wc.model}", DATASET_ID, list(config["experiments"])),
    output:
        table="results/{model}/paper_check.parquet",
        html=report(
            "results/{model}/figures/paper_check.html",
            caption="../report/paper_check.rst",
            category="4. paper check",
            subcategory="{model}",
            labels={"model": "{model}", "table": "paper check"},
        ),
    params:
        results=lambda wc: f"results/{wc.model}",
        model=lambda wc: wc.model,
        dataset=DATASET_ID,
        # the settings the post's numbers depend on (the page says when they differ from the post's)
        settings=lambda wc: dict(
            chunking=config["data"]["chunking"],
            seq_len=C.seq_len_for(config, models_of_tokenizer(tokenizer_id(wc.model)), PRODUCED),
            pred_post=config["record"]["pred_post"],
            basis=config["congruence"]["basis"],
        ),
    log:
        "logs/paper_check/{model}.log",
    benchmark:
        "benchmarks/paper_check/{model}.tsv"
    threads: 1
    resources:
        mem_mb=2000,
        runtime=10,
    conda:
        "../../envs/cpu.yaml"
    script:
        "../../scripts/paper_check.py"


TARGETS.append(lambda mid: [f"results/{mid}/paper_check.parquet", f"results/{mid}/figures/paper_check.html"])
