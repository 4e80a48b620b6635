from _common import setup_logging

import polars as pl
import torch

from anneuron.io import atomic_dir
from anneuron.models import load_model
from anneuron.tokenizer import single_token
from anneuron.weights.congruence import weights_of
from anneuron.weights.figures import draw_weights_figures

setup_logging(snakemake)
p = snakemake.params
torch.set_num_threads(snakemake.threads)
bridge = load_model(p.model, device="cpu", dtype="float32")
pairs = pl.read_parquet(snakemake.input.pairs)
top = pairs.head(p.top_pair_figures).select("layer", "neuron").rows()
draw = list(dict.fromkeys([tuple(x) for x in p.watch] + top))
token_ids = [single_token(bridge.tokenizer, s) for s in p.tokens]
with atomic_dir(snakemake.output[0]) as tmp:
    draw_weights_figures(tmp, weights_of(bridge), pl.read_parquet(snakemake.input.tokens),
                         pl.read_parquet(snakemake.input.neurons), pairs, draw, token_ids, p.basis, p.kurtosis,
                         p.partition_var, p.top_pairs_shown)
