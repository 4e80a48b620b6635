import torch
from _common import setup_logging, watched_neurons

from anneuron.engines import load_engine
from anneuron.record import record_shard

setup_logging(snakemake)
p = snakemake.params
torch.set_num_threads(snakemake.threads)
watched = watched_neurons(snakemake)
engine = load_engine(p.model, device=p.device, dtype=p.dtype, engine=p.engine)
record_shard(
    engine,
    snakemake.input.shard,
    snakemake.output.tokens,
    snakemake.output.topk,
    [(w.layer, w.neuron) for w in watched],
    batch_size=p.batch_size,
    top_k=p.top_k,
    pred_post=p.pred_post,
    pred_topk=p.pred_topk,
)
