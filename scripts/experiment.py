from anneuron.jobs import gpu_requested, setup_logging

import torch

from anneuron.contracts import EXPERIMENT_TABLES
from anneuron.experiments.experiment import run_experiment
from anneuron.experiments.task_run import run_task
from anneuron.models import load_model, resolve_device
from anneuron.provenance import provenance, require_gpu
from anneuron.stage_config import TaskConfig, experiment_config_from_dict

setup_logging(snakemake)
torch.set_num_threads(snakemake.threads)
cfg = experiment_config_from_dict(snakemake.params.cfg)
require_gpu(cfg.device, gpu_requested(snakemake))
bridge = load_model(snakemake.params.model, device=cfg.device, dtype=cfg.dtype)
result = (run_task if isinstance(cfg, TaskConfig) else run_experiment)(bridge, cfg)
result.write({t: getattr(snakemake.output, t) for t in (*EXPERIMENT_TABLES, "summary")})
cfg.write(snakemake.output.config, model=snakemake.params.model,
          provenance=provenance(snakemake.params.model, device=resolve_device(cfg.device), dtype=cfg.dtype))
