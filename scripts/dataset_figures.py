from _common import setup_logging

import polars as pl

from anneuron.dataset.figures import dataset_figures
from anneuron.stage_config import DatasetFiguresConfig

setup_logging(snakemake)
cfg = DatasetFiguresConfig.from_dict(snakemake.params.cfg)
watched = pl.read_parquet(snakemake.input.watched)
pairs = watched.filter(pl.col("pair_rank").is_not_null()).select(
    pl.col("pair_rank").alias("rank"), "layer", "neuron"
)
dataset_figures(
    pl.read_parquet(snakemake.input.curves),
    pl.read_parquet(snakemake.input.predictions),
    pairs,
    snakemake.output.curves,
    snakemake.output.hist,
    cfg.min_count,
    readout=cfg.readout,
    binning=cfg.binning,
)
