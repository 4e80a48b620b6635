from anneuron.jobs import gpu_requested, setup_logging

import torch

from anneuron.dataset.engines import load_engine
from anneuron.dataset.record import record_shard
from anneuron.dataset.watch import read_watched
from anneuron.models import resolve_device
from anneuron.provenance import provenance, require_gpu
from anneuron.stage_config import RecordConfig

setup_logging(snakemake)
p = snakemake.params
cfg = RecordConfig.from_dict(p.cfg)
torch.set_num_threads(snakemake.threads)
require_gpu(cfg.device, gpu_requested(snakemake))
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
cfg.write(snakemake.output.config, model=p.model,
          provenance=provenance(p.model, p.dataset, device=resolve_device(cfg.device), dtype=cfg.dtype))
