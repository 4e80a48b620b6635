import torch

from anneuron.engines import load_engine
from anneuron.record import record_shard
from anneuron.stage_config import RecordConfig
from anneuron.watch import read_watched

from _common import setup_logging

setup_logging(snakemake)
p = snakemake.params
cfg = RecordConfig.from_dict(p.cfg)
torch.set_num_threads(snakemake.threads)
watched = read_watched(snakemake.input.watched)
engine = load_engine(p.model, device=cfg.device, dtype=cfg.dtype, engine=cfg.engine)
record_shard(
    engine,
    snakemake.input.shard,
    snakemake.output.tokens,
    snakemake.output.topk,
    [(w.layer, w.neuron) for w in watched],
    batch_size=cfg.batch_size,
    top_k=cfg.top_k_examples,
    pred_post=cfg.pred_post,
    pred_topk=cfg.pred_topk,
)
cfg.write(snakemake.output.config, model=p.model)
