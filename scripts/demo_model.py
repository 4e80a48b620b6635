from anneuron.demo import write_planted_model

from _common import setup_logging

setup_logging(snakemake)
write_planted_model(snakemake.output[0], seed=snakemake.params.seed)
