from anneuron.jobs import setup_logging

from anneuron.io import read_parquet, write_parquet
from anneuron.weights.pairs import pairs_table

setup_logging(snakemake)
pairs = pairs_table(read_parquet(snakemake.input.tokens), read_parquet(snakemake.input.stats))
write_parquet(snakemake.output[0], pairs)
