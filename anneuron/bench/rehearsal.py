"""The full-shape dress rehearsal's measurements (`make rehearsal`): every rule's wall time, CPU time and peak RSS,
read from the Snakemake benchmark files of one model, as a Markdown table and ONE JSON object on the last line.

    python -m anneuron.bench rehearsal [--model rehearsal-gpt2-large] [--limit-gb 8] [--all] [--root benchmarks]

A rule's row sums its jobs' wall and CPU times and takes the largest peak RSS of any one job. Wall time on a shared
machine grows with the load (`mean load` is the benchmark's own mean CPU load of the job, 100 = one core busy);
CPU time does not. `--all` counts every benchmark file under the root, not only those naming the model: for a run
in a working directory of its own, where the corpus and token-shard rules (whose benchmark paths name the dataset,
not the model) belong to the rehearsal too.
"""

from __future__ import annotations

import argparse
import csv
from collections import defaultdict
from pathlib import Path

from anneuron.bench.common import emit


def _number(row: dict, key: str) -> float:
    v = row.get(key, "-")
    try:
        return float(v)
    except (TypeError, ValueError):
        return 0.0


def rule_costs(model: str, root: Path = Path("benchmarks"), every_file: bool = False) -> dict[str, dict]:
    """Rule -> {jobs, wall_s (sum over its jobs), max_wall_s, cpu_s (sum), peak_rss_gb (max over its jobs)} for
    every benchmark file that belongs to `model` (its path names the model id, or the rule has no model wildcard),
    or for every file under `root` with every_file."""
    out: dict[str, dict] = defaultdict(lambda: dict(jobs=0, wall_s=0.0, max_wall_s=0.0, cpu_s=0.0, peak_rss_gb=0.0))
    for tsv in sorted(root.rglob("*.tsv")):
        rel = tsv.relative_to(root)
        if not every_file and model not in rel.parts and rel.stem != model:
            continue
        with tsv.open() as fh:
            row = next(csv.DictReader(fh, delimiter="\t"))
        r = out[rel.parts[0]]
        wall = _number(row, "s")
        r["jobs"] += 1
        r["wall_s"] += wall
        r["max_wall_s"] = max(r["max_wall_s"], wall)
        r["cpu_s"] += _number(row, "cpu_time")
        r["peak_rss_gb"] = max(r["peak_rss_gb"], _number(row, "max_rss") / 1024)
    return dict(out)


def table(costs: dict[str, dict]) -> list[str]:
    """The Markdown table, slowest rule first, with a total row."""
    lines = ["| rule | jobs | wall time (s, all jobs) | slowest job (s) | CPU time (s) | peak RSS (GB) |",
             "|---|---|---|---|---|---|"]
    for rule, c in sorted(costs.items(), key=lambda kv: -kv[1]["wall_s"]):
        lines.append(f"| `{rule}` | {c['jobs']} | {c['wall_s']:.0f} | {c['max_wall_s']:.0f} | {c['cpu_s']:.0f} | "
                     f"{c['peak_rss_gb']:.2f} |")
    total = {k: sum(c[k] for c in costs.values()) for k in ("jobs", "wall_s", "cpu_s")}
    peak = max((c["peak_rss_gb"] for c in costs.values()), default=0.0)
    lines.append(f"| **all** | {total['jobs']} | {total['wall_s']:.0f} | | {total['cpu_s']:.0f} | {peak:.2f} |")
    return lines


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", default="rehearsal-gpt2-large")
    ap.add_argument("--limit-gb", type=float, default=8.0)
    ap.add_argument("--root", type=Path, default=Path("benchmarks"))
    ap.add_argument("--all", action="store_true", help="every benchmark file under --root, not only the model's")
    args = ap.parse_args(argv)
    costs = rule_costs(args.model, args.root, args.all)
    print("\n".join(table(costs)))
    over = sorted(r for r, c in costs.items() if c["peak_rss_gb"] > args.limit_gb)
    emit(dict(model=args.model, rules=costs, total_wall_s=round(sum(c["wall_s"] for c in costs.values()), 1),
              total_cpu_s=round(sum(c["cpu_s"] for c in costs.values()), 1),
              peak_rss_gb=round(max((c["peak_rss_gb"] for c in costs.values()), default=0.0), 2),
              over_limit=over, limit_gb=args.limit_gb))


if __name__ == "__main__":
    main()
