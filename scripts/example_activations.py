from _common import setup_logging

import torch

from anneuron.engines import load_engine
from anneuron.example_activations import run_pass
from anneuron.resolve import resolve

setup_logging(snakemake)
p = snakemake.params
torch.set_num_threads(snakemake.threads)
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
