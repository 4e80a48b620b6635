from anneuron.jobs import gpu_requested, setup_logging

import torch

from anneuron.provenance import require_gpu
from anneuron.stage_config import UniversalityTileConfig
from anneuron.universality.tiles import tile_job

setup_logging(snakemake)
p = snakemake.params
cfg = UniversalityTileConfig.from_dict(p.cfg)
torch.set_num_threads(snakemake.threads)
require_gpu(cfg.device, gpu_requested(snakemake))
tile_job(tuple(p.models), (snakemake.wildcards.model, snakemake.wildcards.other), snakemake.input.shards,
         tuple(p.a_block), tuple(p.b_block), cfg, snakemake.output.neurons, snakemake.output.pairs)
