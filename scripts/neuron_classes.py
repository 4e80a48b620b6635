from anneuron.jobs import setup_logging

from anneuron.io import read_parquet, write_parquet
from anneuron.stage_config import ClassesConfig
from anneuron.weights.neuron_classes import with_classes

setup_logging(snakemake)
cfg = ClassesConfig.from_dict(snakemake.params.cfg)
write_parquet(snakemake.output[0], with_classes(read_parquet(snakemake.input[0]), cfg.kurtosis, cfg.partition_var))
