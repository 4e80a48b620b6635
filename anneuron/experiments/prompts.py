"""A prompt pair as the experiments use it: tokenised (BOS first), its tokens checked, and whether each prompt
prefers the token it should (docs/science.md "Logit difference")."""

from __future__ import annotations

from anneuron.contracts import MIN_LD_GAP
from anneuron.experiments import patching as P
from anneuron.tokenizer import single_token

TOP_K_PREDICTIONS = 10


def make_pair(bridge, clean: str, corrupted: str, answer: str, wrong: str) -> P.PromptPair:
    """Tokenize (BOS first) and check what the config check already checked, for callers outside the workflow."""
    ids = {}
    for key, text in (("answer", answer), ("wrong", wrong)):
        ids[key] = single_token(bridge.tokenizer, text)
        if ids[key] is None:
            raise ValueError(f"experiment: {key} {text!r} is not a single token")
    return P.PromptPair(bridge.to_tokens(clean), bridge.to_tokens(corrupted), ids["answer"], ids["wrong"])


def prompt_check(runs: P.PairRuns, answer: str, wrong: str) -> str:
    """"ok" when the clean prompt prefers the answer and the corrupted one the wrong token; else what is wrong."""
    problems = []
    if not runs.ld_clean > 0:
        problems.append(f"clean prompt prefers {wrong!r} over {answer!r} (LD {runs.ld_clean:.3g})")
    if not runs.ld_corrupted < 0:
        problems.append(f"corrupted prompt prefers {answer!r} over {wrong!r} (LD {runs.ld_corrupted:.3g})")
    gap = runs.ld_clean - runs.ld_corrupted
    if abs(gap) < MIN_LD_GAP:
        problems.append(f"LD_clean - LD_corrupted is only {gap:.3g}: every patch score divides by it, so scores "
                        "are unstable")
    return "ok" if not problems else "; ".join(problems)


def prediction_rows(bridge, runs: P.PairRuns, k: int = TOP_K_PREDICTIONS) -> list[dict]:
    """The top-k next tokens of both prompts (the `exp_predictions` table's rows)."""
    rows = []
    for name, run in (("clean", runs.clean), ("corrupted", runs.corrupted)):
        logits = run.logits.float()
        probs = logits.softmax(-1)
        top = probs.topk(k)
        for rank, (p, t) in enumerate(zip(top.values.tolist(), top.indices.tolist()), start=1):
            rows.append(dict(prompt=name, rank=rank, token_id=t, token_str=bridge.tokenizer.decode([t]), prob=p,
                             logit=float(logits[t])))
    return rows
