from anneuron.jobs import setup_logging

import polars as pl

from anneuron.io import read_parquet
from anneuron.stages.figures import stages_figure

setup_logging(snakemake)
i = snakemake.input
tables = [pl.from_arrow(read_parquet(f)) for f in (i.layers, i.interventions, i.neurons)]
stages_figure(*tables, snakemake.output.png, title=snakemake.wildcards.model)
