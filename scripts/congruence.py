import logging
import time

from anneuron.jobs import gpu_requested, setup_logging

import torch

from anneuron.io import write_json, write_parquet
from anneuron.models import load_model, resolve_device
from anneuron.provenance import provenance, require_gpu
from anneuron.stage_config import CongruenceConfig
from anneuron.weights import congruence as CG
from anneuron.weights.entropy import entropy_columns

setup_logging(snakemake)
cfg = CongruenceConfig.from_dict(snakemake.params.cfg)
model = snakemake.params.model
torch.set_num_threads(snakemake.threads)
require_gpu(cfg.device, gpu_requested(snakemake))
device = resolve_device(cfg.device)
dtype = CG.resolve_congruence_dtype(cfg.dtype, device)
bridge = load_model(model, device=device, dtype="float32")  # processed in fp32; products in `dtype`
weights = CG.weights_of(bridge)
t0 = time.perf_counter()
res = CG.congruence_pass(weights, basis=cfg.basis, top_k=cfg.top_k, chunk_neurons=cfg.chunk_neurons, device=device,
                         dtype=dtype, matrix_dir=snakemake.output.get("matrix"))
seconds = time.perf_counter() - t0
write_parquet(snakemake.output.tokens, CG.tokens_table(res, CG.token_strings(bridge.tokenizer, weights.d_vocab)))
entropy = entropy_columns(weights.w_out, weights.W_U, cfg.null_dims)
write_parquet(snakemake.output.stats, CG.neurons_table(res, entropy))
write_json(snakemake.output.summary, {  # no wall times here (they are in the log): reruns stay byte-identical
    "model": model, "basis": cfg.basis, "top_k": cfg.top_k, "device": device,
    "dtype": str(dtype).removeprefix("torch."),
    "chunk_neurons": CG.resolve_chunk(cfg.chunk_neurons, weights, cfg.basis, device, dtype),
    "n_layers": weights.n_layers, "d_mlp": weights.d_mlp, "d_vocab": weights.d_vocab, "save_matrix": cfg.save_matrix,
})
logging.getLogger("congruence").info("%.2f s, %.2f GFLOP/s on %d threads", seconds,
                                     CG.flops(weights, cfg.basis) / seconds / 1e9, torch.get_num_threads())
cfg.write(snakemake.output.config, model=model,
          provenance=provenance(model, device=device, dtype=str(dtype).removeprefix("torch.")))
