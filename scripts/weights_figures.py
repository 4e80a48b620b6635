from anneuron.jobs import setup_logging

import polars as pl
import torch

from anneuron.io import atomic_dir, read_parquet
from anneuron.models import load_model
from anneuron.tokenizer import single_token
from anneuron.weights.congruence import weights_of
from anneuron.weights.figures import draw_weights_figures

setup_logging(snakemake)
p = snakemake.params
torch.set_num_threads(snakemake.threads)
bridge = load_model(p.model, device="cpu", dtype="float32")
pairs = pl.from_arrow(read_parquet(snakemake.input.pairs))
top = pairs.head(p.top_pair_figures).select("layer", "neuron").rows()
draw = list(dict.fromkeys([tuple(x) for x in p.watch] + top))
token_ids = [single_token(bridge.tokenizer, s) for s in p.tokens]
with atomic_dir(snakemake.output[0]) as tmp:
    tokens, neurons = (pl.from_arrow(read_parquet(f)) for f in (snakemake.input.tokens, snakemake.input.neurons))
    draw_weights_figures(tmp, weights_of(bridge), tokens, neurons, pairs, draw, token_ids, p.basis, p.kurtosis,
                         p.partition_var, p.top_pairs_shown)
