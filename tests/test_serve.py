"""The interactive neuron server (anneuron/serve.py): its API against a direct hooked forward, and every bad input a
4xx with a one-line JSON error (never a 500)."""

from __future__ import annotations

import pytest
import torch
from fastapi.testclient import TestClient

from anneuron.serve import ActivationModel, create_app

TEXT = "The walk ended. Then he picked an apple"


@pytest.fixture(scope="module")
def client(demo_bridge, tmp_path_factory):
    pages = tmp_path_factory.mktemp("pages")
    (pages / "index.html").write_text("<!doctype html><title>pages</title><body></body>")
    return TestClient(create_app(ActivationModel(demo_bridge), pages, max_chars=200))


def test_api_equals_a_hooked_forward(client, demo_bridge):
    r = client.get("/api/activations", params={"neuron": "L2N892", "text": TEXT})
    assert r.status_code == 200
    body = r.json()
    assert set(body) == {"neuron", "tokens", "activations", "predictions", "bos"}
    toks = demo_bridge.to_tokens(TEXT)
    with torch.no_grad():
        logits, cache = demo_bridge.run_with_cache(toks)
    want = cache["blocks.2.mlp.hook_post"][0, :, 892]
    assert len(body["tokens"]) == len(body["activations"]) == len(body["predictions"]) == toks.shape[1]
    assert torch.allclose(torch.tensor(body["activations"]), want, atol=1e-5)
    assert body["bos"] == 0 and body["tokens"][0] == "<|endoftext|>"
    tok = demo_bridge.tokenizer
    assert body["predictions"] == [tok.decode([t]) for t in logits[0].argmax(-1).tolist()]
    picked = body["tokens"].index(" picked")
    assert max(range(len(body["activations"])), key=body["activations"].__getitem__) == picked
    assert body["predictions"][picked] == " an"  # the planted neuron makes " an" the top prediction there
    post = client.post("/api/activations", json={"neuron": "L2N892", "text": TEXT}).json()
    assert post == body


@pytest.mark.parametrize("params, status, words", [
    ({"neuron": "L2N892"}, 400, "text"),
    ({"text": "hi"}, 400, "neuron"),
    ({"neuron": "L9N0", "text": "hi"}, 404, "out of range"),
    ({"neuron": "L2N5000", "text": "hi"}, 404, "out of range"),
    ({"neuron": "neuron-2", "text": "hi"}, 400, "not of the form"),
    ({"neuron": "L2N892", "text": "x" * 201}, 413, "limit is 200"),
    ({"neuron": "L2N892", "text": "   "}, 400, "empty"),
])
def test_bad_queries_are_4xx_with_one_line(client, params, status, words):
    r = client.get("/api/activations", params=params)
    assert r.status_code == status, r.text
    err = r.json()["error"]
    assert words in err and "\n" not in err and "Traceback" not in err


def test_bad_bodies_are_4xx_with_one_line(client):
    for body, words in [(b"\xff\xfe not utf-8", "not UTF-8"), (b"{not json", "not JSON"),
                        (b'{"neuron": 3}', "must be")]:
        r = client.post("/api/activations", content=body, headers={"content-type": "application/json"})
        assert r.status_code == 400 and words in r.json()["error"], r.text


def test_pages_are_served(client):
    page = client.get("/").text
    assert "pages" in page and 'src="assets/live.js"' in page  # only this server adds the live box
    assert client.get("/api/health").json()["max_chars"] == 200
