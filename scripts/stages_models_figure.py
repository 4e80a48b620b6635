from anneuron.jobs import setup_logging

import polars as pl

from anneuron.io import read_parquet
from anneuron.stages.figures import models_figure

setup_logging(snakemake)
i = snakemake.input
read = lambda f: pl.from_arrow(read_parquet(f))  # noqa: E731
runs = {m: (read(a), read(b), read(c)) for m, a, b, c in zip(snakemake.params.models, i.layers, i.interventions,
                                                                 i.neurons)}
models_figure(runs, snakemake.output.png)
