import pyarrow.parquet as pq
from _common import setup_logging

from anneuron.io import write_parquet
from anneuron.neuron_classes import with_classes

setup_logging(snakemake)
p = snakemake.params
write_parquet(snakemake.output[0], with_classes(pq.read_table(snakemake.input[0]), p.kurtosis, p.partition_var))
