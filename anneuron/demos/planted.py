"""The offline demo model `demo-planted`: GPT-2 architecture, the real GPT-2 vocabulary, PLANTED structure.

Every stage of the pipeline must find exactly what is planted here (written to `ground_truth.json`):
- token neurons: w_out along one token's unembedding direction, w_in along the normalised residual of its
  trigger token(s), so the neuron fires on a trigger and lifts its token to the model's top-1 prediction, and
  forms a mutually exclusive neuron-token pair that ranks at the top of the congruence pairs;
- one prediction neuron (w_out along + a small set of related tokens) and one suppression neuron (along -),
  so the vocabulary-moment classes are exercised;
- one prompt pair per token neuron (clean ends in a trigger, corrupted does not); the two-trigger neuron gets two.

With random embeddings of width d a single-token neuron's cosine kurtosis is only ~3 + d^2/50,257 (4.3 at d=256),
so the demo config uses class thresholds fitted to this width (see workflow/configs/demo-planted.yaml).
"""

from __future__ import annotations

import json
import random
from dataclasses import asdict, dataclass, field
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import torch
from transformers import GPT2Config, GPT2LMHeadModel

from anneuron.contracts import neuron_name
from anneuron.demos.specs import N_HEAD, PLANTED
from anneuron.io import atomic_dir, write_json
from anneuron.tokenizer import gpt2_tokenizer, single_token

D_MODEL, D_MLP, N_LAYER, N_CTX = PLANTED.d_model, PLANTED.d_mlp, PLANTED.n_layers, PLANTED.n_ctx
TARGET_PRE, THRESHOLD = 5.0, 4.0  # pre-activation on a trigger, and the margin below zero elsewhere
OUT_SHIFT = 3.0  # a firing token neuron adds OUT_SHIFT * |e| along its token (beats repeating the current token)


@dataclass(frozen=True)
class TokenNeuron:
    layer: int
    neuron: int
    token: str
    triggers: tuple[str, ...]


@dataclass(frozen=True)
class SetNeuron:
    layer: int
    neuron: int
    tokens: tuple[str, ...]
    sign: int  # +1 prediction, -1 suppression


@dataclass(frozen=True)
class Experiment:
    name: str
    clean: str
    corrupted: str
    answer: str
    wrong: str
    neuron: str  # the planted neuron that carries the clean-corrupted difference


TOKEN_NEURONS = (
    TokenNeuron(0, 137, "/", (" km",)),
    TokenNeuron(1, 421, " though", (" even", " as")),
    TokenNeuron(2, 892, " an", (" picked",)),
    TokenNeuron(3, 77, " off", (" turned",)),
)
SET_NEURONS = (
    SetNeuron(3, 500, (" cat", " dog", " horse"), +1),
    SetNeuron(2, 300, (" red", " blue", " green"), -1),
)
EXPERIMENTS = (
    Experiment("an_picked", "I climbed up the apple tree and picked", "I climbed up the apple tree and walked",
               " an", " a", "L2N892"),
    Experiment("though_even", "She went out in the rain even", "She went out in the rain today",
               " though", " when", "L1N421"),
    Experiment("though_as", "It looked to me as", "It looked to me like", " though", " such", "L1N421"),
    Experiment("off_turned", "Before bed he turned", "Before bed he sang", " off", " on", "L3N77"),
    Experiment("slash_km", "The train runs at 90 km", "The train runs at 90 miles", "/", " per", "L0N137"),
)


@dataclass
class GroundTruth:
    seed: int
    d_model: int = D_MODEL
    d_mlp: int = D_MLP
    n_layer: int = N_LAYER
    token_neurons: list[dict] = field(default_factory=list)
    prediction_neurons: list[dict] = field(default_factory=list)
    suppression_neurons: list[dict] = field(default_factory=list)
    experiments: list[dict] = field(default_factory=list)


def _ids(tok, strings) -> list[int]:
    out = []
    for s in strings:
        i = single_token(tok, s)
        if i is None:
            raise ValueError(f"demo token {s!r} is not a single GPT-2 token")
        out.append(i)
    return out


def _unit(v: torch.Tensor) -> torch.Tensor:
    return v / v.norm()


@torch.no_grad()
def build_planted_model(*, seed: int) -> tuple[GPT2LMHeadModel, GroundTruth]:
    """Random GPT-2 (tied embeddings, randomised LayerNorms so folding matters) with the planted neurons."""
    tok = gpt2_tokenizer()
    cfg = GPT2Config(
        vocab_size=len(tok), n_positions=N_CTX, n_embd=D_MODEL, n_layer=N_LAYER, n_head=N_HEAD, n_inner=D_MLP,
        activation_function="gelu_new", resid_pdrop=0.0, embd_pdrop=0.0, attn_pdrop=0.0,
        bos_token_id=tok.bos_token_id, eos_token_id=tok.eos_token_id, tie_word_embeddings=True,
    )
    torch.manual_seed(seed)
    model = GPT2LMHeadModel(cfg).eval()
    g = torch.Generator().manual_seed(seed)
    tr = model.transformer
    tr.wte.weight.copy_(torch.randn(tr.wte.weight.shape, generator=g) / D_MODEL**0.5)  # |e| ~ 1
    tr.wpe.weight.copy_(torch.randn(tr.wpe.weight.shape, generator=g) * 0.1 / D_MODEL**0.5)
    for ln in [m for b in tr.h for m in (b.ln_1, b.ln_2)] + [tr.ln_f]:
        ln.weight.copy_(1 + 0.1 * torch.randn(D_MODEL, generator=g))
        ln.bias.copy_(0.05 * torch.randn(D_MODEL, generator=g))
    emb = tr.wte.weight
    gamma_f = tr.ln_f.weight

    def unembed_dir(token_ids: list[int]) -> torch.Tensor:
        """The residual direction that raises these tokens' logits: ln_f's gain times their (tied) embeddings."""
        return _unit(sum(_unit(gamma_f * emb[i]) for i in token_ids))

    truth = GroundTruth(seed=seed)
    planted = []
    for tn in TOKEN_NEURONS:
        (token_id,) = _ids(tok, [tn.token])
        trig_ids = _ids(tok, tn.triggers)
        tr.h[tn.layer].mlp.c_proj.weight[tn.neuron] = (
            unembed_dir([token_id]) * OUT_SHIFT * emb[token_id].norm() / TARGET_PRE)
        planted.append((tn, trig_ids))
        truth.token_neurons.append(
            dict(name=neuron_name(tn.layer, tn.neuron), layer=tn.layer, neuron=tn.neuron, token_id=token_id,
                 token_str=tn.token, triggers=list(tn.triggers), trigger_ids=trig_ids)
        )
    _calibrate_inputs(model, planted, tok, seed)
    for sn in SET_NEURONS:
        ids = _ids(tok, sn.tokens)
        norm = OUT_SHIFT * float(emb[ids].norm(dim=1).mean()) / TARGET_PRE
        tr.h[sn.layer].mlp.c_proj.weight[sn.neuron] = sn.sign * norm * unembed_dir(ids)
        entry = dict(name=neuron_name(sn.layer, sn.neuron), layer=sn.layer, neuron=sn.neuron, token_ids=ids,
                     tokens=list(sn.tokens))
        (truth.prediction_neurons if sn.sign > 0 else truth.suppression_neurons).append(entry)
    truth.experiments = [asdict(e) for e in EXPERIMENTS]
    return model, truth


@torch.no_grad()
def _calibrate_inputs(model: GPT2LMHeadModel, planted: list[tuple[TokenNeuron, list[int]]], tok, seed: int) -> None:
    """Point each token neuron's w_in at its triggers as the MLP really sees them (the normalised residual of
    demo text, earlier planted neurons included), layer by layer, so a trigger gives pre-activation TARGET_PRE
    and every other position stays below -THRESHOLD + noise."""
    texts = demo_documents(64, seed=seed + 1, sentences=(6, 10))
    ids = [torch.tensor([tok.bos_token_id] + t[: N_CTX - 1]) for t in tok(texts, add_special_tokens=False)["input_ids"]]
    tr = model.transformer
    for layer in sorted({tn.layer for tn, _ in planted}):
        block = tr.h[layer]
        xs, toks = [], []
        handle = block.ln_2.register_forward_hook(lambda mod, inp, out: xs.append(out[0]))
        for row in ids:
            model(row[None])
            toks.append(row)
        handle.remove()
        x, t = torch.cat(xs), torch.cat(toks)
        for tn, trig_ids in planted:
            if tn.layer != layer:
                continue
            is_trig = torch.isin(t, torch.tensor(trig_ids))
            base = x[~is_trig].mean(0)
            deltas = [x[t == i].mean(0) - base for i in trig_ids]
            w_in = _unit(sum(_unit(d) for d in deltas))
            a = (TARGET_PRE + THRESHOLD) / min(float(w_in @ d) for d in deltas)
            block.mlp.c_fc.weight[:, tn.neuron] = a * w_in
            block.mlp.c_fc.bias[tn.neuron] = -a * float(w_in @ base) - THRESHOLD


def write_planted_model(out_dir: str | Path, *, seed: int) -> GroundTruth:
    """Build and save model, tokenizer and ground_truth.json atomically; identical bytes for the same seed."""
    model, truth = build_planted_model(seed=seed)
    with atomic_dir(out_dir) as tmp:
        model.save_pretrained(tmp)
        gpt2_tokenizer().save_pretrained(tmp)
        write_json(Path(tmp) / "ground_truth.json", asdict(truth))
    return truth


# --- the demo corpus --------------------------------------------------------------------------------------------

_FRUITS = ["apple", "orange", "pear", "lemon", "apricot", "banana", "olive", "plum", "avocado", "cherry", "fig",
           "peach", "onion", "egg"]
_NAMES = ["John", "Mary", "Anna", "Tom", "Sara", "Ben", "Lucy", "Sam"]
_ANIMALS = ["cat", "dog", "horse", "cow", "bird", "fox"]
_COLORS = ["red", "blue", "green", "yellow", "black", "white"]
_PLACES = ["garden", "house", "park", "kitchen", "field", "market", "station"]
_THINGS = ["light", "radio", "stove", "engine", "music", "television", "fan"]
_ADJ = ["tired", "happy", "late", "cold", "busy", "quiet"]


def _article(word: str) -> str:
    return "an" if word[0] in "aeiou" else "a"


def _sentence(r: random.Random) -> str:
    kind = r.random()
    n, m = r.choice(_NAMES), r.choice(_NAMES)
    if kind < 0.12:
        f = r.choice(_FRUITS)
        return f"{n} climbed up the {f} tree and picked {_article(f)} {f}."
    if kind < 0.20:
        return f"{n} went out even though it was {r.choice(_ADJ)}."
    if kind < 0.27:
        return f"It looked as though the {r.choice(_ANIMALS)} was {r.choice(_ADJ)}."
    if kind < 0.34:
        return f"{n} turned off the {r.choice(_THINGS)} in the {r.choice(_PLACES)}."
    if kind < 0.40:
        return f"The train runs at {r.randint(20, 300)} km/h near the {r.choice(_PLACES)}."
    if kind < 0.55:
        return f"The {r.choice(_ANIMALS)} sat in the {r.choice(_PLACES)} with {m}."
    if kind < 0.70:
        return f"{n} painted the {r.choice(_THINGS)} {r.choice(_COLORS)} and {m} was {r.choice(_ADJ)}."
    if kind < 0.85:
        f = r.choice(_FRUITS)
        return f"{n} gave {m} {_article(f)} {f} from the {r.choice(_PLACES)}."
    return f"{n} and {m} walked to the {r.choice(_PLACES)} to see the {r.choice(_ANIMALS)}."


def demo_documents(n_docs: int, *, seed: int, sentences: tuple[int, int] = (8, 20)) -> list[str]:
    r = random.Random(seed)
    return [" ".join(_sentence(r) for _ in range(r.randint(*sentences))) for _ in range(n_docs)]


def write_demo_corpus(path: str | Path, *, n_docs: int, seed: int) -> None:
    """A Parquet file with a `text` column (~14 sentences x ~13 tokens per document)."""
    from anneuron.io import atomic_path

    table = pa.table({"text": demo_documents(n_docs, seed=seed)})
    with atomic_path(path) as tmp:
        pq.write_table(table, tmp)


def load_ground_truth(model_dir: str | Path) -> dict:
    return json.loads((Path(model_dir) / "ground_truth.json").read_text())
