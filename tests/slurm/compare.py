"""Checks after `make test-slurm` ran the demo locally and through SLURM (tests/slurm/run.sh).

"Equal" here means the same output files under results/ and resources/ (logs and benchmarks aside; hidden files
left out), each identical or equal within `anneuron.devtools.compare.Tolerance` (a job may run with another thread
count on the cluster, so float sums may reorder; its docstring says what each file type may differ by).
Then, from the queue log (squeue every second) and the Snakemake log: every job of the SLURM run was submitted
to SLURM; jobs of GPU rules (the slurm profile's set-resources entries on the gpu partition) ran on the gpu
partition with one GPU; the jobs of grouped rules (the experiments: `group:` in their rule) ran inside group jobs
(here one, holding both experiments), never on their own; two `record` shards ran at the same time, each on a GPU
of its own (the CUDA_VISIBLE_DEVICES their logs report).
Prints what it checked; exits 1 on the first list of failures.
"""

from __future__ import annotations

import argparse
import re
import sys
from collections import Counter, defaultdict
from pathlib import Path

import yaml

from anneuron.devtools.compare import IDENTICAL, Tolerance, compare_trees, passed

OUTPUT_ROOTS = ("results", "resources")
HIDDEN = (".*", "*/.*")


def compare_runs(local: Path, slurm: Path) -> tuple[list[str], dict[str, int]]:
    """The failures (one line per file that is not equal within the tolerance) and a count of files by type."""
    errors, counts = [], Counter()
    for top in OUTPUT_ROOTS:
        results = compare_trees(local / top, slurm / top, HIDDEN, Tolerance())
        for r in results:
            counts[Path(r.path).suffix.lstrip(".") or "other"] += 1
            counts["identical bytes"] += r.status == IDENTICAL
            if not passed([r], tolerance=True):
                errors.append(f"{top}/{r.path}: {r.status}" + (f": {r.detail}" if r.detail else ""))
    return errors, dict(counts)


def group_jobs(log_text: str) -> list[tuple[str, list[str]]]:
    """(group id, the rules of its jobs) for every group job the Snakemake log announces: a line `Group job ID (jobs
    in lexicogr. order):` followed by each member's indented `rule NAME:` block."""
    out: list[tuple[str, list[str]]] = []
    current: list[str] | None = None
    for line in log_text.splitlines():
        m = re.search(r"Group job (\S+) \(jobs in lexicogr\. order\):", line)
        if m:
            current = []
            out.append((m.group(1), current))
        elif current is not None and line[:1].isspace():
            r = re.match(r"\s+(?:local)?rule (\w+):$", line)
            if r:
                current.append(r.group(1))
        elif current is not None and line.strip() and not line.startswith("Shell command:"):
            current = None  # (each member's block ends with an unindented "Shell command: ..." line)
    return out


def gpu_rules(profile: Path) -> set[str]:
    """Rules the slurm profile sends to a GPU partition."""
    cfg = yaml.safe_load(profile.read_text())
    gpu_partitions = {v.get("slurm_partition") for v in cfg.get("set-resources", {}).values()}
    gpu_partitions.discard(cfg.get("default-resources", {}).get("slurm_partition"))
    return {rule for rule, res in cfg.get("set-resources", {}).items()
            if res.get("slurm_partition") in gpu_partitions}


def job_stats(log_text: str) -> dict[str, int]:
    """The 'Job stats' table Snakemake prints at the start of a run: rule -> job count."""
    m = re.search(r"Job stats:\n.*?\n-+\s+-+\n(.*?)\ntotal\s+(\d+)", log_text, re.S)
    if not m:
        return {}
    return {line.split()[0]: int(line.split()[1]) for line in m.group(1).splitlines() if line.strip()}


def record_gpus(root: Path) -> dict[str, str]:
    """record log -> the CUDA_VISIBLE_DEVICES its SLURM job reported (anneuron.jobs logs it)."""
    out = {}
    for log in sorted((root / "logs" / "record").rglob("*.log")):
        m = re.search(r"CUDA_VISIBLE_DEVICES=(\S+)", log.read_text(errors="replace"))
        out[str(log.relative_to(root))] = m.group(1) if m else "not logged"
    return out


def check_slurm_usage(queue_log: Path, slurm_log: Path, root: Path) -> tuple[list[str], list[str]]:
    """`root`: the SLURM run's copy of the repository (its profile, its job logs)."""
    profile = root / "workflow/profiles/slurm/config.yaml"
    text = slurm_log.read_text()
    stats = job_stats(text)
    submitted = set(re.findall(r"submitted with SLURM jobid (\d+)", text))
    errors, notes = [], []
    # local rules (the tiny ones: pairs, classes, watch, figures, summaries, paper check, manifest) run on the submit
    # host, as the profile intends: Snakemake logs them as "localrule X:", and they never reach SLURM
    local = [r for r in re.findall(r"^localrule (\w+):", text, re.M) if r != "all"]
    notes.append(f"jobs run on the submit host (local rules): {len(local)}")
    groups_logged = group_jobs(text)
    grouped = {r for _, rules in groups_logged for r in rules}
    in_groups = sum(len(rules) for _, rules in groups_logged)
    # one submission per job outside the groups, one per group job
    expected = (sum(n for rule, n in stats.items() if rule != "all" and rule not in grouped) - len(local)
                + len(groups_logged))
    jobs: dict[str, dict] = {}
    running_at: dict[int, list[str]] = defaultdict(list)
    for line in queue_log.read_text().splitlines() if queue_log.exists() else []:
        parts = line.split("|")
        if len(parts) < 7:
            continue
        t, jid, part, state, tres, _name, comment = parts[:7]
        members: list[str] = []
        gid = next((g for g, _ in groups_logged if comment.startswith(f"rule_{g}_")), None)
        if gid is not None:  # a group job: rule_{groupid}_{its rules, sorted, joined by _}
            members = sorted({r for g, rules in groups_logged if g == gid for r in rules})
            rule = "group"
        else:
            m = re.match(r"rule_([A-Za-z0-9_]+?)_wildcards", comment) or re.match(r"rule_([A-Za-z0-9_]+)", comment)
            rule = m.group(1) if m else comment
        jobs[jid] = dict(partition=part, tres=tres, rule=rule, members=members)
        if state == "RUNNING":
            running_at[int(t)].append(jid)
    seen_rules = defaultdict(int)
    for j in jobs.values():
        seen_rules[j["rule"]] += 1
    notes.append(f"jobs seen in squeue per rule: {dict(seen_rules)}")
    if len(jobs) < expected:
        # A job shorter than the 1 s sampling can be missed by squeue; the Snakemake log is the authority then.
        if len(submitted) < expected:
            errors.append(f"{expected} jobs to run but only {max(len(jobs), len(submitted))} went through SLURM")
    groups = {jid: j for jid, j in jobs.items() if j["rule"] == "group"}
    notes.append(f"group jobs in the log: {groups_logged}; seen in squeue: {len(groups)}")
    for rule in grouped:
        held = sum(rules.count(rule) for _, rules in groups_logged)
        if held != stats.get(rule, 0):
            errors.append(f"group jobs held {held} of the {stats.get(rule, 0)} jobs of grouped rule {rule}")
    if stats.get("experiment", 0) >= 2 and not groups_logged:
        errors.append("the experiments ran without a group job (the slurm profile's group-components?)")
    if in_groups and in_groups == len(groups_logged):
        errors.append(f"every group job held one job: {groups_logged}")
    for rule in gpu_rules(profile):
        for jid, j in jobs.items():
            if (j["rule"] == rule or rule in j["members"]) and (j["partition"] != "gpu" or "gpu" not in j["tres"]):
                errors.append(f"job {jid} of GPU rule {rule} ran on {j['partition']} with '{j['tres']}'")
            if j["rule"] == rule and rule in grouped:
                errors.append(f"job {jid} of grouped rule {rule} was submitted on its own, not in its group")
        if stats.get(rule) and not any(rule in (j["rule"], *j["members"]) for j in jobs.values()):
            errors.append(f"no job of GPU rule {rule} seen in squeue")
    for jid, j in jobs.items():
        if j["rule"] not in gpu_rules(profile) | {"group"} and j["partition"] != "cpu":
            errors.append(f"job {jid} of CPU rule {j['rule']} ran on partition {j['partition']}")
    if stats.get("record", 0) >= 2:
        most = max((sum(jobs[j]["rule"] == "record" for j in ids) for ids in running_at.values()), default=0)
        notes.append(f"most record shards running at once: {most}")
        if most < 2:
            errors.append("record shards never ran concurrently")
        gpus = record_gpus(root)
        notes.append(f"GPU of each record shard: {gpus}")
        if len(set(gpus.values())) != len(gpus) or {"unset", "not logged"} & set(gpus.values()):
            errors.append(f"record shards did not each get a GPU of their own: {gpus}")
    else:
        notes.append("no record stage in this DAG yet: concurrency not checked")
    return errors, notes


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--local", type=Path, required=True)
    ap.add_argument("--slurm", type=Path, required=True)
    ap.add_argument("--queue-log", type=Path)
    ap.add_argument("--slurm-log", type=Path)
    args = ap.parse_args(argv)
    errors, counts = compare_runs(args.local, args.slurm)
    print(f"compared files by type: {counts}")
    if args.queue_log and args.slurm_log:
        more, notes = check_slurm_usage(args.queue_log, args.slurm_log, args.slurm)
        errors += more
        for n in notes:
            print(n)
    for e in errors:
        print("FAIL:", e, file=sys.stderr)
    return 1 if errors else 0


if __name__ == "__main__":
    sys.exit(main())
