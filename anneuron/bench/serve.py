"""The interactive server under load (`make serve`'s API), on the planted demo model:

    python -m anneuron.bench serve [--seconds 60] [--requests 40] [--model resources/models/demo-planted]

Latency p50/p95 of /api/activations for 200-token texts with 1 client and with 8 concurrent clients, then a
sustained run of 8 clients for `--seconds`: errors (must be 0) and the server process's RSS at its start and end
(memory must stay flat: requests queue through one model instance). The server runs in this process on
127.0.0.1 (a uvicorn thread); clients are threads with their own HTTP connections. ONE JSON object on the last line.
"""

from __future__ import annotations

import argparse
import random
import socket
import statistics
import tempfile
import threading
import time
from pathlib import Path

from anneuron.bench.common import emit

SENTENCES = ["The walk ended.", "Then he picked an apple from the tree.", "She turned off the light before bed.",
             "The train runs at 90 km per hour.", "It looked to me as though it would rain.",
             "I climbed up the pear tree and picked a pear."]


def text_of(n_tokens: int, tokenizer, seed: int) -> str:
    """A text of exactly n_tokens tokens (without BOS) of plain English."""
    rng = random.Random(seed)
    ids: list[int] = []
    while len(ids) < n_tokens:
        ids += tokenizer.encode(" " + rng.choice(SENTENCES), add_special_tokens=False)
    return tokenizer.decode(ids[:n_tokens])


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _latencies(url: str, texts: list[str], clients: int, per_client: int) -> tuple[list[float], int]:
    import httpx

    lat: list[float] = []
    errors = [0]

    def client(k: int) -> None:
        with httpx.Client(timeout=120) as c:
            for i in range(per_client):
                t = time.perf_counter()
                r = c.get(url, params={"neuron": "L2N892", "text": texts[(k + i) % len(texts)]})
                lat.append(time.perf_counter() - t)
                errors[0] += r.status_code != 200

    threads = [threading.Thread(target=client, args=(k,)) for k in range(clients)]
    for th in threads:
        th.start()
    for th in threads:
        th.join()
    return lat, errors[0]


def _pct(xs: list[float], q: float) -> float:
    return round(statistics.quantiles(xs, n=100)[int(q) - 1] * 1000, 1) if len(xs) > 1 else round(xs[0] * 1000, 1)


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--seconds", type=float, default=60.0)
    ap.add_argument("--requests", type=int, default=40, help="per latency measurement")
    ap.add_argument("--tokens", type=int, default=200)
    ap.add_argument("--model", type=Path, default=Path("resources/models/demo-planted"),
                    help="the planted demo model's folder (built in a temporary folder if absent)")
    args = ap.parse_args(argv)

    import psutil
    import torch
    import uvicorn

    from anneuron.demos.planted import write_planted_model
    from anneuron.models import load_model
    from anneuron.pages.serve import ActivationModel, create_app

    torch.set_num_threads(2)
    folder = args.model
    if not folder.is_dir():
        folder = Path(tempfile.mkdtemp()) / "demo-planted"
        write_planted_model(folder, seed=0)
    model = ActivationModel(load_model(str(folder), device="cpu", dtype="float32"))
    port = _free_port()
    server = uvicorn.Server(uvicorn.Config(create_app(model), host="127.0.0.1", port=port, log_level="warning"))
    threading.Thread(target=server.run, daemon=True).start()
    while not server.started:
        time.sleep(0.05)
    url = f"http://127.0.0.1:{port}/api/activations"
    texts = [text_of(args.tokens, model.bridge.tokenizer, s) for s in range(8)]
    proc = psutil.Process()
    _latencies(url, texts, 1, 3)  # warm-up
    one, e1 = _latencies(url, texts, 1, args.requests)
    eight, e8 = _latencies(url, texts, 8, max(1, args.requests // 8))
    rss_start = proc.memory_info().rss / 2**30
    t0, sustained, errors, rss = time.perf_counter(), 0, 0, []
    while time.perf_counter() - t0 < args.seconds:
        lat, err = _latencies(url, texts, 8, 2)
        sustained += len(lat)
        errors += err
        rss.append(proc.memory_info().rss / 2**30)
    server.should_exit = True
    emit(dict(tokens_per_text=args.tokens + 1, one_client=dict(p50_ms=_pct(one, 50), p95_ms=_pct(one, 95), errors=e1),
              eight_clients=dict(p50_ms=_pct(eight, 50), p95_ms=_pct(eight, 95), errors=e8),
              sustained=dict(seconds=round(time.perf_counter() - t0, 1), requests=sustained, errors=errors,
                             rss_gb_start=round(rss_start, 3), rss_gb_end=round(rss[-1], 3),
                             rss_gb_max=round(max(rss), 3)),
              threads=torch.get_num_threads()))


if __name__ == "__main__":
    main()
