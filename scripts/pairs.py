import pyarrow.parquet as pq

from anneuron.io import write_parquet
from anneuron.pairs import pairs_table

from _common import setup_logging

setup_logging(snakemake)
pairs = pairs_table(pq.read_table(snakemake.input.tokens), pq.read_table(snakemake.input.stats))
write_parquet(snakemake.output[0], pairs)
