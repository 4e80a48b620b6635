import torch

from anneuron.contracts import EXPERIMENT_TABLES
from anneuron.experiments import run_experiment
from anneuron.models import load_model
from anneuron.stage_config import ExperimentConfig

from _common import setup_logging

setup_logging(snakemake)
torch.set_num_threads(snakemake.threads)
cfg = ExperimentConfig.from_dict(snakemake.params.cfg)
bridge = load_model(snakemake.params.model, device=cfg.device, dtype=cfg.dtype)
result = run_experiment(bridge, cfg)
result.write({t: getattr(snakemake.output, t) for t in (*EXPERIMENT_TABLES, "summary")})
cfg.write(snakemake.output.config, model=snakemake.params.model)
