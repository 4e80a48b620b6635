from anneuron.jobs import setup_logging

import polars as pl

from anneuron.dataset.figures import dataset_figures
from anneuron.io import read_parquet
from anneuron.stage_config import DatasetFiguresConfig

setup_logging(snakemake)
cfg = DatasetFiguresConfig.from_dict(snakemake.params.cfg)
watched = pl.from_arrow(read_parquet(snakemake.input.watched))
pairs = watched.filter(pl.col("pair_rank").is_not_null()).select(
    pl.col("pair_rank").alias("rank"), "layer", "neuron"
)
dataset_figures(
    pl.from_arrow(read_parquet(snakemake.input.curves)),
    pl.from_arrow(read_parquet(snakemake.input.predictions)),
    pairs,
    snakemake.output.curves,
    snakemake.output.hist,
    cfg.min_count,
    readout=cfg.readout,
    binning=cfg.binning,
    counts=cfg.counts,
)
