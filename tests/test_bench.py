"""Every benchmark (`python -m anneuron.bench NAME`, anneuron/bench) runs, at a tiny size, as a user runs it: a
subprocess whose LAST stdout line is one JSON object with the figures the README quotes, all finite, the timings
and rates positive. Not a measurement (the README's figures are measured at full size on a quiet machine): a
benchmark that no longer runs against the library it measures fails here, not months later."""

from __future__ import annotations

import json
import math
import os
import subprocess
import sys
from pathlib import Path

import pytest

from anneuron.bench import BENCHES
from anneuron.devtools.browser import missing

REPO = Path(__file__).resolve().parents[1]
ENV = dict(os.environ, HF_HUB_OFFLINE="1", TOKENIZERS_PARALLELISM="false")
TIMEOUT = 300


def bench(name: str, *args: str, cwd: Path = REPO) -> dict:
    """Run one benchmark; its last stdout line, parsed."""
    r = subprocess.run([sys.executable, "-m", "anneuron.bench", name, *args], cwd=cwd, env=ENV, capture_output=True,
                       text=True, timeout=TIMEOUT)
    assert r.returncode == 0, r.stderr[-4000:]
    lines = r.stdout.strip().splitlines()
    assert lines, r.stderr[-4000:]
    out = json.loads(lines[-1])
    assert isinstance(out, dict)
    return out


def numbers(obj, prefix: str = "") -> dict[str, float]:
    """Every number of a JSON object (nested keys joined with '.', list items by index); booleans left out."""
    if isinstance(obj, dict):
        return {k: v for key, val in obj.items() for k, v in numbers(val, f"{prefix}{key}.").items()}
    if isinstance(obj, list):
        return {k: v for i, val in enumerate(obj) for k, v in numbers(val, f"{prefix}{i}.").items()}
    return {prefix.rstrip("."): obj} if isinstance(obj, (int, float)) and not isinstance(obj, bool) else {}


def check(out: dict, keys: set[str], positive: set[str]) -> None:
    """`keys` present, every number finite, those of `positive` (nested as numbers() names them) above zero and
    every other one at least zero (times may round to 0 at these sizes)."""
    assert keys <= set(out), keys - set(out)
    nums = numbers(out)
    assert positive <= set(nums), positive - set(nums)
    for k, v in nums.items():
        assert math.isfinite(v), (k, v)
        assert v > 0 if k in positive else v >= 0 or k.startswith("ld_"), (k, v)


def test_every_bench_has_a_smoke_test():
    tests = {n.removeprefix("test_") for n in globals() if n.startswith("test_")}
    assert set(BENCHES) <= tests, set(BENCHES) - tests


def test_congruence():
    out = bench("congruence", "--layers", "2", "--d-mlp", "128", "--d-model", "64", "--vocab", "2000",
                "--threads", "1")
    check(out, {"seconds", "peak_rss_gb", "basis", "dtype"},
          {"gflops", "gemm_gflops", "ratio", "peak_rss_gb", "neurons", "chunk_neurons", "raw_products_timed"})
    assert out["neurons"] == 2 * 128 and out["d_vocab"] == 2000 and out["d_model"] == 64


def test_record():
    out = bench("record", "--layers", "2", "--d-model", "64", "--d-mlp", "256", "--batch", "2", "--seq-len", "32",
                "--rounds", "3", "--watch", "4", "--top-k", "2", "--run-tokens", "10000")
    check(out, {"engine", "overhead_method"},
          {"bare_tok_s", "record_tok_s", "overhead", "overhead_floor", "overhead_cold", "f_run", "record_cold_tok_s",
           "record_floor_tok_s", "peak_rss_gb", "neurons", "watched"})
    assert out["shape"] == "2x64x256" and out["neurons"] == 512 and len(out["overhead_cold_rounds"]) == 3


def test_stages():
    out = bench("stages", "--layers", "2", "--d-model", "64", "--d-mlp", "128", "--seq-len", "32", "--rows", "4",
                "--batch", "2", "--lens-fraction", "0.5", "--threads", "1")
    check(out, {"arch", "shape", "seconds"},
          {"record_tok_s", "layers_tok_s", "layers_overhead", "layers_no_lens_overhead", "interventions_tok_s",
           "interventions_forwards", "forwards_per_intervention", "peak_rss_gb", "tokens", "intervention_tokens"})
    assert out["shape"] == "2x64x128" and out["tokens"] == 4 * 32 and out["interventions"] == 3


def test_patching():
    out = bench("patching", "--layers", "2", "--d-model", "64", "--d-mlp", "256", "--layer", "0", "--sample", "4",
                "--threads", "1")
    check(out, {"ours_s", "ours_all_positions_s", "attribution_s", "ld_gap", "h100_assumed"},
          {"naive_s", "speedup", "flops_ratio_layer", "gpt2_large_tflop", "gpt2_large_naive_tflop",
           "gpt2_large_h100_s", "peak_rss_gb", "n_pos", "suffix"})
    assert (out["n_layers"], out["d_mlp"], out["sample"]) == (2, 256, 4)
    assert out["max_abs_diff"] < 1e-3 and out["max_abs_diff_all_positions"] < 1e-3  # the engine is exact


def test_tasks():
    out = bench("tasks", "--layers", "2", "--d-model", "64", "--d-mlp", "128", "--layer", "0", "--pairs", "3",
                "--threads", "1")
    check(out, {"batched_s", "loop_s", "speedup", "dtype"}, {"pairs", "d_mlp", "n_pos", "suffix", "peak_rss_gb"})
    assert (out["pairs"], out["d_mlp"]) == (3, 128)
    assert out["max_abs_diff_ld"] < 1e-4  # batched across pairs = one pair at a time


def test_rehearsal(tmp_path):
    """Two rules' Snakemake benchmark files (one per job), one of another model, one with no model wildcard."""
    header = "s\th:m:s\tmax_rss\tmax_vms\tmax_uss\tmax_pss\tio_in\tio_out\tmean_load\tcpu_time\n"
    files = {"record/m/0.tsv": "10.5\t0:00:10\t2048.0\t1\t1\t1\t0\t0\t90\t9.5",
             "record/m/1.tsv": "20.0\t0:00:20\t1024.0\t1\t1\t1\t0\t0\t90\t19.0",
             "congruence/m.tsv": "5.0\t0:00:05\t512.0\t1\t1\t1\t0\t0\t100\t5.0",
             "congruence/other.tsv": "99.0\t0:01:39\t9999.0\t1\t1\t1\t0\t0\t100\t99.0",
             "tokenize/ds/gpt2.tsv": "2.0\t0:00:02\t100.0\t1\t1\t1\t0\t0\t100\t2.0"}
    for rel, row in files.items():
        (tmp_path / "benchmarks" / rel).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / "benchmarks" / rel).write_text(header + row + "\n")
    out = bench("rehearsal", "--model", "m", "--limit-gb", "1.5", cwd=tmp_path)
    check(out, {"model", "rules", "over_limit", "limit_gb"}, {"total_wall_s", "total_cpu_s", "peak_rss_gb"})
    assert set(out["rules"]) == {"record", "congruence"} and out["rules"]["record"]["jobs"] == 2
    assert out["total_wall_s"] == 35.5 and out["peak_rss_gb"] == 2.0 and out["over_limit"] == ["record"]
    every = bench("rehearsal", "--model", "m", "--all", "--root", str(tmp_path / "benchmarks"))
    assert set(every["rules"]) == {"record", "congruence", "tokenize"} and every["rules"]["congruence"]["jobs"] == 2


def test_serve(demo_dir):
    out = bench("serve", "--seconds", "1", "--requests", "4", "--tokens", "20", "--model", str(demo_dir))
    check(out, {"one_client", "eight_clients", "sustained"},
          {"one_client.p50_ms", "one_client.p95_ms", "eight_clients.p50_ms", "eight_clients.p95_ms",
           "sustained.requests", "sustained.seconds", "sustained.rss_gb_start", "sustained.rss_gb_end", "threads"})
    assert out["tokens_per_text"] == 21
    assert out["one_client"]["errors"] == out["eight_clients"]["errors"] == out["sustained"]["errors"] == 0


@pytest.mark.skipif(missing() is not None, reason=f"no headless browser: {missing()}")
def test_pages(demo_site):
    """On the planted demo's site (tests/pages_demo.py: 4 x 1,024 neurons)."""
    out = bench("pages", str(demo_site.parent), "--neurons", "2")
    check(out, {"model", "under_1s", "console_errors"},
          {"neurons", "site_gb", "files", "views", "view_median_s", "view_max_s", "index_s", "token_view_s"})
    assert (out["model"], out["neurons"], out["views"], out["console_errors"]) == ("demo-planted", 4 * 1024, 2, 0)


def test_universality():
    out = bench("universality", "--tile-mb", "16.65", "--tokens", "2048", "--batch", "512", "--threads", "1")
    check(out, {"paper", "ratio", "peak_rss_gb", "within_budget"},
          {"gflops", "gemm_gflops", "ratio", "tile_side", "paper.hours_fp32", "paper.tiles_per_pair"})
    # 36 B per pair of 64 x 64, a chunk of 4 x 512 x 64 float32 and the 16 MB workspace: 16.64 MB
    assert out["tile_side"] == 64 and out["tokens"] == 2048
    assert out["within_budget"], (out["tile_rss_gb"], out["budget_gb"])
