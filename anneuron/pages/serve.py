"""The interactive half of studying a neuron: type any text, see where it fires (README, "Neuron pages").

A local web server (FastAPI) over one model's neuron pages (`results/{model}/pages/`, served as static files) with
a JSON API that runs the model on a text and returns one neuron's activation and the model's top-1 prediction at
every token:

    GET  /api/activations?neuron=L2N892&text=...
    POST /api/activations   {"neuron": "L2N892", "text": "..."}
    ->   {"neuron": "L2N892", "tokens": [...], "activations": [...], "predictions": [...]}

Tokens are the tokenizer's own decoding of each token. BOS is included and first, as everywhere in the pipeline: it
is marked by its own decoding (`<|endoftext|>` for GPT-2), which `/api/health` gives as `bos_token`. Safe by
default: it binds to 127.0.0.1, caps the text length (characters, and tokens at the model's context length: never
silently truncated), answers every bad request with a 4xx and a one-line JSON error, and runs every request through
one model instance behind a lock, so concurrent users queue instead of multiplying memory.

    python -m anneuron.pages.serve --model demo-planted [--configfile workflow/configs/demo-planted.yaml] [--port 8000]
"""

from __future__ import annotations

import argparse
import json
import threading
from pathlib import Path

import torch
from fastapi import FastAPI, HTTPException, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import HTMLResponse, JSONResponse
from fastapi.staticfiles import StaticFiles
from jaxtyping import Int

from anneuron.contracts import PATHS, parse_neuron

MAX_CHARS = 4000  # default cap on a request's text (characters)
LIVE_SCRIPT = '<script src="assets/live.js"></script>'  # anneuron/pages/static/live.js


class TooLong(ValueError):
    """A text of more tokens than the model's context (one line)."""


class ActivationModel:
    """One loaded model, used by one request at a time: a neuron's activation and the top-1 prediction per token."""

    def __init__(self, bridge):
        self.bridge = bridge
        self.n_layers, self.d_mlp, self.n_ctx = bridge.cfg.n_layers, bridge.cfg.d_mlp, bridge.cfg.n_ctx
        tok = bridge.tokenizer
        self.bos_token = tok.decode([tok.bos_token_id]) if tok.bos_token_id is not None else None
        self.lock = threading.Lock()

    def neuron(self, name: str) -> tuple[int, int]:
        """(layer, neuron) of `name`, or ValueError (one line) when it is malformed or out of range."""
        layer, n = parse_neuron(name)
        if not (0 <= layer < self.n_layers and 0 <= n < self.d_mlp):
            raise ValueError(f"neuron {name} is out of range ({self.n_layers} layers × {self.d_mlp} neurons)")
        return layer, n

    def tokens(self, text: str) -> Int[torch.Tensor, "1 pos"]:
        """The text's tokens, BOS first as everywhere in the pipeline; TooLong beyond the context."""
        tokens = self.bridge.to_tokens(text, truncate=False)
        if tokens.shape[1] > self.n_ctx:
            raise TooLong(f"text is {tokens.shape[1]} tokens with BOS; the model's context is {self.n_ctx}")
        return tokens

    @torch.no_grad()
    def activations(self, name: str, text: str) -> dict:
        layer, n = self.neuron(name)
        hook = f"blocks.{layer}.mlp.hook_post"
        with self.lock:  # the tokenizer too: a fast tokenizer's padding/truncation state is not thread-safe
            tokens = self.tokens(text)
            logits, cache = self.bridge.run_with_cache(tokens, names_filter=lambda h: h == hook)
            acts = cache[hook][0, :, n].float().tolist()
            preds = logits[0].float().argmax(-1).tolist()
        tok = self.bridge.tokenizer
        return dict(neuron=name, tokens=[tok.decode([t]) for t in tokens[0].tolist()], activations=acts,
                    predictions=[tok.decode([t]) for t in preds])


def _error(status: int, message: str) -> JSONResponse:
    return JSONResponse({"error": " ".join(str(message).split())}, status_code=status)


def create_app(model: ActivationModel, pages_dir: str | Path | None = None, max_chars: int = MAX_CHARS) -> FastAPI:
    """The app: the API, and the pages folder as static files at / (when given)."""
    app = FastAPI(title="anneuron", docs_url=None, redoc_url=None, openapi_url=None)

    @app.exception_handler(RequestValidationError)
    async def _invalid(request: Request, exc: RequestValidationError) -> JSONResponse:
        first = exc.errors()[0] if exc.errors() else {}
        where = ".".join(str(x) for x in first.get("loc", ()) if x not in ("query", "body"))
        return _error(400, f"{where or 'request'}: {first.get('msg', 'invalid request')}")

    @app.exception_handler(HTTPException)
    async def _http(request: Request, exc: HTTPException) -> JSONResponse:
        return _error(exc.status_code, exc.detail)

    @app.exception_handler(Exception)
    async def _unexpected(request: Request, exc: Exception) -> JSONResponse:  # never a traceback in the page
        return _error(500, f"internal error: {type(exc).__name__}")

    def answer(neuron: str, text: str) -> dict:
        if len(text) > max_chars:
            raise HTTPException(413, f"text is {len(text)} characters; the limit is {max_chars}")
        if not text.strip():
            raise HTTPException(400, "text is empty")
        try:
            model.neuron(neuron)
        except ValueError as e:
            raise HTTPException(404 if "out of range" in str(e) else 400, str(e)) from None
        try:
            return model.activations(neuron, text)
        except TooLong as e:
            raise HTTPException(413, str(e)) from None

    @app.get("/api/activations")
    def get_activations(neuron: str, text: str) -> dict:
        return answer(neuron, text)

    @app.post("/api/activations")
    async def post_activations(request: Request) -> dict:
        raw = await request.body()
        try:
            body = json.loads(raw.decode("utf-8"))
        except UnicodeDecodeError:
            raise HTTPException(400, "the request body is not UTF-8") from None
        except json.JSONDecodeError:
            raise HTTPException(400, "the request body is not JSON") from None
        if not isinstance(body, dict) or not isinstance(body.get("neuron"), str) or not isinstance(
                body.get("text"), str):
            raise HTTPException(400, 'the body must be {"neuron": "L2N892", "text": "..."}')
        from starlette.concurrency import run_in_threadpool

        return await run_in_threadpool(answer, body["neuron"], body["text"])

    @app.get("/api/health")
    def health() -> dict:
        return {"ok": True, "n_layers": model.n_layers, "d_mlp": model.d_mlp, "max_chars": max_chars,
                "n_ctx": model.n_ctx, "bos_token": model.bos_token}

    if pages_dir is not None:
        index = Path(pages_dir) / "index.html"

        @app.get("/", response_class=HTMLResponse)
        @app.get("/index.html", response_class=HTMLResponse)
        def page() -> str:
            """The pages' index with the live text box's script added (only this server has the API behind it: from
            disk or a plain static server, the pages never load it)."""
            return index.read_text(encoding="utf-8").replace("</body>", LIVE_SCRIPT + "\n</body>", 1)

        app.mount("/", StaticFiles(directory=str(pages_dir), html=True), name="pages")
    return app


def model_name(model_id: str, configfile: str | Path | None) -> str:
    """The hub name or folder behind a model id, as the workflow resolves it (config.yaml + the configfile)."""
    import yaml

    from anneuron.resolve import model_id as id_of

    repo = Path(__file__).resolve().parents[2]
    config = yaml.safe_load((repo / "config.yaml").read_text())
    configfile = configfile or next((p for p in [repo / f"workflow/configs/{model_id}.yaml"] if p.exists()), None)
    if configfile:  # a list in a configfile replaces the base's (as Snakemake merges them)
        config["models"] = (yaml.safe_load(Path(configfile).read_text()) or {}).get("models", config["models"])
    for name in config["models"]:
        if id_of(name) == model_id:
            return name
    return model_id  # a folder or hub name given directly


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description="Serve a model's neuron pages with a live activation API.")
    ap.add_argument("--model", required=True, help="model id (as in results/{model}/), folder or hub name")
    ap.add_argument("--configfile", help="the config the model was run with (default: workflow/configs/<id>.yaml)")
    ap.add_argument("--host", default="127.0.0.1", help="default 127.0.0.1 (this machine only)")
    ap.add_argument("--port", type=int, default=8000)
    ap.add_argument("--device", default="auto")
    ap.add_argument("--dtype", default="float32")
    ap.add_argument("--max-chars", type=int, default=MAX_CHARS)
    args = ap.parse_args(argv)

    import uvicorn

    from anneuron.models import load_model
    from anneuron.resolve import model_id

    name = model_name(args.model, args.configfile)
    mid = model_id(name)
    pages = Path(PATHS["pages_index"].format(model=mid)).parent
    if not pages.is_dir():
        raise SystemExit(f"anneuron: no pages in {pages}: run the workflow for {mid} first (make demo)")
    app = create_app(ActivationModel(load_model(name, device=args.device, dtype=args.dtype)), pages, args.max_chars)
    print(f"anneuron: serving {pages} and the activation API for {mid} on http://{args.host}:{args.port}/")
    uvicorn.run(app, host=args.host, port=args.port, log_level="warning", workers=1)


if __name__ == "__main__":
    main()
