from anneuron.jobs import gpu_requested, setup_logging

import torch

from anneuron.provenance import require_gpu
from anneuron.stage_config import UniversalityPropertiesConfig
from anneuron.universality.properties import properties_job

setup_logging(snakemake)
cfg = UniversalityPropertiesConfig.from_dict(snakemake.params.cfg)
torch.set_num_threads(snakemake.threads)
require_gpu(cfg.device, gpu_requested(snakemake))
properties_job(snakemake.params.model, snakemake.input.shards, cfg, snakemake.output[0])
