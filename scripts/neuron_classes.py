from _common import setup_logging

import pyarrow.parquet as pq

from anneuron.io import write_parquet
from anneuron.stage_config import ClassesConfig
from anneuron.weights.neuron_classes import with_classes

setup_logging(snakemake)
cfg = ClassesConfig.from_dict(snakemake.params.cfg)
write_parquet(snakemake.output[0], with_classes(pq.read_table(snakemake.input[0]), cfg.kurtosis, cfg.partition_var))
