import logging

from anneuron.jobs import gpu_requested, setup_logging

import torch

from anneuron.dataset.engines import load_engine
from anneuron.models import resolve_device
from anneuron.pages.example_activations import run_pass
from anneuron.provenance import require_gpu
from anneuron.resolve import resolve

setup_logging(snakemake)
p = snakemake.params
torch.set_num_threads(snakemake.threads)
require_gpu(p.run["device"], gpu_requested(snakemake))
logging.info("device %s, dtype %s", resolve_device(p.run["device"]), p.run["dtype"])
engine = load_engine(p.model, device=p.run["device"], dtype=p.run["dtype"], engine=p.run["engine"])
run_pass(
    engine,
    snakemake.input.examples,
    list(snakemake.input.tokens),
    snakemake.output[0],
    resolve(p.model).tokenizer(),
    window=p.window,
    batch_size=p.run["batch_size"],
)
