from anneuron.jobs import setup_logging

from anneuron.demos.planted import write_planted_model

setup_logging(snakemake)
write_planted_model(snakemake.output[0], seed=snakemake.params.seed)
