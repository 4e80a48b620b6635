import time

import torch
from _common import setup_logging

from anneuron import congruence as CG
from anneuron.io import write_json, write_parquet
from anneuron.models import load_model, resolve_device

setup_logging(snakemake)
p = snakemake.params
torch.set_num_threads(snakemake.threads)
device = resolve_device(p.device)
dtype = CG.resolve_congruence_dtype(p.dtype, device)
bridge = load_model(p.model, device=device, dtype="float32")  # processed in fp32; products in `dtype`
weights = CG.weights_of(bridge)
t0 = time.perf_counter()
res = CG.congruence_pass(weights, basis=p.basis, top_k=p.top_k, chunk_neurons=p.chunk_neurons, device=device,
                         dtype=dtype, matrix_dir=snakemake.output.get("matrix"))
seconds = time.perf_counter() - t0
write_parquet(snakemake.output.tokens, CG.tokens_table(res, CG.token_strings(bridge.tokenizer, weights.d_vocab)))
write_parquet(snakemake.output.stats, CG.neurons_table(res))
write_json(snakemake.output.summary, {
    "model": p.model, "basis": p.basis, "top_k": p.top_k, "device": device, "dtype": str(dtype).removeprefix("torch."),
    "chunk_neurons": CG.resolve_chunk(p.chunk_neurons, weights, p.basis, device, dtype),
    "n_layers": weights.n_layers, "d_mlp": weights.d_mlp, "d_vocab": weights.d_vocab,
    "seconds": round(seconds, 2), "gflops": round(CG.flops(weights, p.basis) / seconds / 1e9, 2),
    "threads": torch.get_num_threads(), "save_matrix": p.save_matrix,
})
