from anneuron.jobs import gpu_requested, setup_logging

import torch

from anneuron.architecture import family_of
from anneuron.io import write_parquet
from anneuron.models import load_hf, resolve_device
from anneuron.provenance import provenance, require_gpu
from anneuron.resolve import resolve
from anneuron.stage_config import StagesInterventionsConfig
from anneuron.stages.interventions import interventions

setup_logging(snakemake)
p = snakemake.params
cfg = StagesInterventionsConfig.from_dict(p.cfg)
torch.set_num_threads(snakemake.threads)
require_gpu(cfg.device, gpu_requested(snakemake))
spec = resolve(p.model)
# no pattern needed: SDPA, except where it would drop part of the model (Gemma 2's attention soft-cap)
model = load_hf(spec, cfg.device, "float32", family_of(spec.model_type, "stages").fast_attention)
table = interventions(model, list(snakemake.input.shards), intervention_tokens=cfg.intervention_tokens,
                      batch_size=cfg.batch_size)
write_parquet(snakemake.output.table, table)
cfg.write(snakemake.output.config, model=p.model,
          provenance=provenance(p.model, p.dataset, device=resolve_device(cfg.device), dtype="float32"))
