"""The interactive neuron server (anneuron/pages/serve.py): its API against a direct hooked forward, and every bad
input a 4xx with a one-line JSON error (never a 500)."""

from __future__ import annotations

import pytest
import torch
from fastapi.testclient import TestClient

from anneuron.pages.serve import ActivationModel, create_app

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
    assert list(body) == ["neuron", "tokens", "activations", "predictions"]  # exactly the form
    toks = demo_bridge.to_tokens(TEXT)
    with torch.no_grad():
        logits, cache = demo_bridge.run_with_cache(toks)
    want = cache["blocks.2.mlp.hook_post"][0, :, 892]
    assert len(body["tokens"]) == len(body["activations"]) == len(body["predictions"]) == toks.shape[1]
    assert torch.allclose(torch.tensor(body["activations"]), want, atol=1e-5)
    assert body["tokens"][0] == "<|endoftext|>" == client.get("/api/health").json()["bos_token"]  # BOS, marked
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


def test_a_text_beyond_the_context_is_refused_not_truncated(demo_bridge):
    """The character cap is not a token cap: a text of more tokens than the context gets a 413, never a silent cut."""
    client = TestClient(create_app(ActivationModel(demo_bridge), None, max_chars=100_000))
    n_ctx = demo_bridge.cfg.n_ctx
    fits, over = " a" * (n_ctx - 1), " a" * n_ctx  # " a" is one token: with BOS, n_ctx and n_ctx + 1 tokens
    r = client.get("/api/activations", params={"neuron": "L2N892", "text": fits})
    assert r.status_code == 200 and len(r.json()["tokens"]) == n_ctx
    r = client.get("/api/activations", params={"neuron": "L2N892", "text": over})
    assert r.status_code == 413 and r.json()["error"] == (
        f"text is {n_ctx + 1} tokens with BOS; the model's context is {n_ctx}")


def test_bad_bodies_are_4xx_with_one_line(client):
    for body, words in [(b"\xff\xfe not utf-8", "not UTF-8"), (b"{not json", "not JSON"),
                        (b'{"neuron": 3}', "must be")]:
        r = client.post("/api/activations", content=body, headers={"content-type": "application/json"})
        assert r.status_code == 400 and words in r.json()["error"], r.text


def test_pages_are_served(client):
    page = client.get("/").text
    assert "pages" in page and 'src="assets/live.js"' in page  # only this server adds the live box
    assert client.get("/api/health").json()["max_chars"] == 200


def test_model_name_follows_the_demo_config():
    """`make serve DEMO=smollm2-wiki` passes the model id and the demo's config: the folder behind the id is found."""
    from anneuron.pages.serve import model_name

    assert model_name("smollm2-135m", "workflow/configs/smollm2-wiki.yaml") == "resources/models/smollm2-135m"
    assert model_name("demo-planted", None) == "resources/models/demo-planted"
    assert model_name("some/folder", None) == "some/folder"  # not a configured id: taken as given
