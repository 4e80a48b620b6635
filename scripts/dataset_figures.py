import polars as pl
from _common import setup_logging

from anneuron.plots.dataset import dataset_figures

setup_logging(snakemake)
p = snakemake.params
pairs = pl.read_parquet(snakemake.input.pairs).filter(pl.col("rank") <= p.top_pairs)
dataset_figures(
    pl.read_parquet(snakemake.input.curves),
    pl.read_parquet(snakemake.input.predictions),
    pairs,
    snakemake.output.curves,
    snakemake.output.hist,
    p.min_count,
)
