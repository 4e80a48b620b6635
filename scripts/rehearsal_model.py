from pathlib import Path

from anneuron.jobs import setup_logging

from anneuron.demos.gpt2 import random_gpt2

setup_logging(snakemake)
random_gpt2(Path(snakemake.output[0]), n_head=snakemake.params.n_head, tied=True, **snakemake.params.shape)
