from anneuron.jobs import setup_logging

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
pairs = read_parquet(snakemake.input.pairs)
top = pairs.slice(0, p.top_pair_figures).select(["layer", "neuron"]).to_pylist()
draw = list(dict.fromkeys([tuple(x) for x in p.watch] + [(r["layer"], r["neuron"]) for r in top]))
token_ids = [single_token(bridge.tokenizer, s) for s in p.tokens]
with atomic_dir(snakemake.output[0]) as tmp:
    draw_weights_figures(tmp, weights_of(bridge), read_parquet(snakemake.input.tokens),
                         read_parquet(snakemake.input.neurons), pairs, draw, token_ids, p.basis, p.kurtosis,
                         p.partition_var, p.top_pairs_shown)
