from anneuron.jobs import setup_logging

import polars as pl
import torch

from anneuron.io import atomic_dir, read_parquet
from anneuron.models import load_model
from anneuron.stage_config import WeightsFiguresConfig
from anneuron.tokenizer import single_token
from anneuron.weights.congruence import weights_of
from anneuron.weights.figures import draw_weights_figures, neurons_to_draw

setup_logging(snakemake)
p = snakemake.params
cfg = WeightsFiguresConfig.from_dict(p.cfg)
torch.set_num_threads(snakemake.threads)
bridge = load_model(p.model, device="cpu", dtype="float32")
pairs = pl.from_arrow(read_parquet(snakemake.input.pairs))
token_ids = [single_token(bridge.tokenizer, s) for s in cfg.tokens]
with atomic_dir(snakemake.output[0]) as tmp:
    tokens, neurons = (pl.from_arrow(read_parquet(f)) for f in (snakemake.input.tokens, snakemake.input.neurons))
    draw_weights_figures(tmp, weights_of(bridge), tokens, neurons, pairs, neurons_to_draw(pairs, cfg.neurons),
                         token_ids, cfg.basis, cfg.classes.kurtosis, cfg.classes.partition_var)
