import logging

from anneuron.jobs import gpu_requested, setup_logging

import torch

from anneuron.dataset.engines import load_engine
from anneuron.models import resolve_device
from anneuron.pages.example_activations import run_pass
from anneuron.provenance import require_gpu
from anneuron.resolve import resolve
from anneuron.stage_config import ExampleActivationsConfig

setup_logging(snakemake)
p = snakemake.params
cfg = ExampleActivationsConfig.from_dict(p.cfg)
torch.set_num_threads(snakemake.threads)
require_gpu(cfg.device, gpu_requested(snakemake))
logging.info("device %s, dtype %s", resolve_device(cfg.device), cfg.dtype)
engine = load_engine(p.model, device=cfg.device, dtype=cfg.dtype, engine=cfg.engine)
run_pass(
    engine,
    snakemake.input.examples,
    list(snakemake.input.tokens),
    snakemake.output[0],
    resolve(p.model).tokenizer(),
    window=cfg.window,
    batch_size=cfg.batch_size,
)
