from pathlib import Path

import torch
from _common import setup_logging

from anneuron.experiments import PatchingConfig, run_experiment
from anneuron.models import load_model

setup_logging(snakemake)
torch.set_num_threads(snakemake.threads)
bridge = load_model(snakemake.params.model, device=snakemake.params.device, dtype=snakemake.params.dtype)
result = run_experiment(bridge, snakemake.params.experiment, PatchingConfig.from_config(snakemake.params.patching))
result.write(Path(snakemake.output.summary).parent)
