from _common import setup_logging

import pyarrow.parquet as pq

from anneuron.io import write_parquet
from anneuron.weights.pairs import pairs_table

setup_logging(snakemake)
pairs = pairs_table(pq.read_table(snakemake.input.tokens), pq.read_table(snakemake.input.stats))
write_parquet(snakemake.output[0], pairs)
