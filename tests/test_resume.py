"""Preemption: a job of EVERY rule the workflow runs is SIGKILLed at a random point (a SIGKILL runs no cleanup code,
as when a cluster preempts a job), the run is resumed with `--rerun-incomplete`, and every final table is
byte-identical to an uninterrupted run's (docs/architecture.md, "Atomic writes and resume").

Two scratch copies of the repository run the planted demo with a small config (few documents and examples, 2 shards,
one experiment). One runs it uninterrupted: the reference, which also measures each rule's CPU time. The other runs
it as a chain of resumed runs (`--keep-going --rerun-incomplete`): whenever a job of a rule not killed yet starts, it
is killed once it has used a random fraction (seeded per rule, printed) of that rule's reference CPU time. CPU time,
not wall time: on a busy machine a job's wall time stretches, its CPU time hardly. Rules that use less than `FAST`
s of CPU are too fast to catch mid-run and are killed as soon as their script process appears (the output says so),
as is a rule whose job ended before its kill point (it is forced to run again). Each resumed run carries on where
the last one stopped, so every rule's job is killed once and the chain does about 1.5 runs' work. The chain starts
once the reference has measured its first jobs and then trails it (each kill costs it a restart), so both run at
once. At the end every .parquet and .json under results/ and every file under resources/ must be byte-identical
between the two, and no temporary of a killed write may be left behind.

ANNEURON_RESUME_SEED picks other kill points. Marked slow: about 2.5 workflow runs of CPU.
"""

from __future__ import annotations

import hashlib
import os
import random
import re
import shutil
import signal
import subprocess
import time
from dataclasses import dataclass, field
from pathlib import Path

from configs import write_complete_config

import psutil
import pytest
from test_workflow import DEMO, ENV, SNAKEMAKE, TEST_RUN, copy_repo, write_yaml

SEED = int(os.environ.get("ANNEURON_RESUME_SEED", "1202"))
CONFIG = "tests/resume.yaml"
# small: few documents and examples, one experiment, few watched neurons and figures (every rule still runs)
OVERLAY = {"data": {"max_docs": 24, "shards": 2}, "demo": {"docs": 40}, "record": {"top_k_examples": 5},
           "congruence": {"tokens": [" an"]},
           "watch": {"top_pairs": 2, "neurons": {"demo-planted": [{"L2N892": " an"}]}},
           "stages": {"max_tokens": 1024, "lens_tokens": 128, "intervention_tokens": 256}}
EXPERIMENTS = ["an_picked"]
# the same job slots and threads for both runs: a job's thread count (hence its float sums) must not differ
RUN = (*TEST_RUN, "--replace-workflow-config", "--configfile", CONFIG)
FAST = 1.0  # s of CPU: below this a rule's script is mostly Python starting; killed as soon as it appears
POLL, POLL_NEAR = 0.25, 0.05  # s between looks at the jobs; the second when a kill is due within NEAR s of CPU
POLL_NEW = 0.005  # s between looks while a job's script file exists but its process is not seen yet
NEAR = 0.5
RUN_TIMEOUT = 900  # s, one snakemake invocation
MAX_ROUNDS = 30
TEMP = re.compile(r"^\..+\.tmp")  # anneuron.io's temporaries: .NAME.XXXXXXXX.tmp[SUFFIX]


def script_rules(repo: Path) -> dict[str, list[str]]:
    """Script file name -> the rules that run it (workflow/rules/*.smk)."""
    out: dict[str, list[str]] = {}
    for smk in sorted((repo / "workflow/rules").glob("*.smk")):
        parts = re.split(r"(?m)^rule (\w+):", smk.read_text())
        for rule, body in zip(parts[1::2], parts[2::2]):
            m = re.search(r'(?m)^\s+script:\s*\n\s+"([^"]+)"', body)
            if m:
                out.setdefault(Path(m.group(1)).name, []).append(rule)
    return out


def job_outputs(log: str) -> dict[str, list[str]]:
    """rule -> the outputs of its jobs, from what snakemake printed as it ran them."""
    out: dict[str, list[str]] = {}
    rule = None
    for line in log.splitlines():
        m = re.match(r"^(?:local)?rule (\w+):$", line.strip())
        if m:
            rule = m.group(1)
        elif rule and line.strip().startswith("output: "):
            out.setdefault(rule, []).extend(p.strip() for p in line.strip()[len("output: "):].split(","))
            rule = None
    return out


def benchmark_cpu(work: Path, rule: str) -> float:
    """CPU s of a rule's job by the `benchmark:` file snakemake wrote (benchmarks/<rule>/…tsv, column cpu_time; `NA`
    when its sampling saw nothing: a job that short is fast, 0)."""
    tsvs = sorted((work / "benchmarks" / rule).rglob("*.tsv"))
    assert tsvs, f"no script process seen for rule {rule}, and no benchmark of it under benchmarks/{rule}/"
    cpu = []
    for t in tsvs:
        header, *rows = [line.split("\t") for line in t.read_text().splitlines()]
        col = header.index("cpu_time")
        cpu += [float(r[col]) if r[col] not in ("NA", "") else 0.0 for r in rows]
    return max(cpu)


def fraction(rule: str) -> float:
    """Where in its rule's CPU time a job is killed: seeded per rule, whatever order the jobs come in."""
    return random.Random(f"{SEED}:{rule}").uniform(0.05, 0.95)


@dataclass
class Job:
    rule: str
    proc: psutil.Process
    seen: float
    cpu: float = 0.0
    target: bool = False  # to be killed
    kill_at: float | None = None  # s of CPU, once known


class Run:
    """One snakemake invocation in a scratch folder, and the rule scripts it runs
    (`python …/.snakemake/scripts/tmpXXXX.<script>.py`), by pid."""

    def __init__(self, work: Path, name: str, scripts: dict[str, list[str]], *args: str):
        self.work, self.out = work, work / f"snakemake-{name}.log"
        self.pattern = re.compile(re.escape(str(work / ".snakemake" / "scripts")) + r"/tmp[^./]+\.(.+\.py)$")
        self.scripts = scripts
        self.live: dict[int, Job] = {}
        self.seen_scripts: set[str] = set()  # script files whose process was seen
        self.t0 = time.monotonic()
        # its own process group: if the test fails, `stop` ends snakemake and its jobs, nothing else
        self.proc = subprocess.Popen([*SNAKEMAKE, *RUN, *args], cwd=work, env=ENV, stdout=self.out.open("w"),
                                     stderr=subprocess.STDOUT, text=True, start_new_session=True)
        self.rc: int | None = None

    def rule_of(self, script: str) -> str:
        rules = self.scripts.get(script, [])
        assert len(rules) == 1, f"script {script} runs rules {rules}: which job is which is ambiguous"
        return rules[0]

    def scan(self) -> tuple[list[Job], list[Job]]:
        """(jobs started, jobs ended) since the last scan; every live job's CPU time updated."""
        found = {}
        for p in psutil.process_iter(["cmdline"]):
            for arg in p.info["cmdline"] or []:
                m = self.pattern.match(arg)
                if m:
                    found[p.pid] = (m.group(1), p)
                    self.seen_scripts.add(arg)
        new = [Job(self.rule_of(s), p, time.monotonic()) for pid, (s, p) in found.items() if pid not in self.live]
        self.live.update((j.proc.pid, j) for j in new)
        ended = [self.live.pop(pid) for pid in [q for q in self.live if q not in found]]
        for job in list(self.live.values()):
            try:
                t = job.proc.cpu_times()
                job.cpu = t.user + t.system
            except psutil.Error:
                ended.append(self.live.pop(job.proc.pid))
        return new, ended

    def unseen(self) -> bool:
        """A job is starting: snakemake wrote its script file (before starting python, removed after it ends) and
        its process has not been seen yet. Some rules (manifest) run in ~0.1 s: the scan must then look often."""
        try:
            files = os.scandir(self.work / ".snakemake" / "scripts")
        except FileNotFoundError:
            return False
        with files:
            return any(f.path not in self.seen_scripts for f in files if f.name.endswith(".py"))

    def poll(self) -> int | None:
        if self.rc is None:
            self.rc = self.proc.poll()
            if self.rc is None and time.monotonic() - self.t0 > RUN_TIMEOUT:
                self.proc.kill()
                self.proc.wait()
                pytest.fail(f"snakemake ran longer than {RUN_TIMEOUT} s:\n{self.log()[-4000:]}")
        return self.rc

    def log(self) -> str:
        return self.out.read_text()

    def stop(self) -> None:
        if self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGKILL)
            self.proc.wait()


def temporaries(work: Path) -> list[str]:
    """Leftovers of interrupted atomic writes (anneuron.io) under results/ and resources/."""
    found = []
    for top in ("results", "resources"):
        for d, dirs, files in os.walk(work / top):
            found += [str(Path(d, n).relative_to(work)) for n in dirs + files if TEMP.match(n)]
    return sorted(found)


def of_outputs(temps: list[str], outputs: list[str]) -> list[str]:
    """The temporaries being written for these outputs (anneuron.io names them `.NAME.…` beside NAME)."""
    return [t for t in temps for o in outputs
            if Path(t).parent == Path(o).parent and Path(t).name.startswith(f".{Path(o).name}.")]


def final_files(work: Path) -> dict[str, str]:
    """sha256 of every final table (.parquet, .json under results/) and of every file under resources/; files of
    hidden (temporary) names are not final."""
    out = {}
    for top, keep in (("results", (".parquet", ".json")), ("resources", None)):
        for p in sorted((work / top).rglob("*")):
            rel = p.relative_to(work)
            if p.is_file() and not any(part.startswith(".") for part in rel.parts) and (
                    keep is None or p.suffix in keep):
                out[str(rel)] = hashlib.sha256(p.read_bytes()).hexdigest()
    return out


def owner(path: str, outputs: dict[str, list[str]]) -> str:
    best = ("?", 0)
    for rule, outs in outputs.items():
        for o in outs:
            if (path == o or path.startswith(o.rstrip("/") + "/")) and len(o) > best[1]:
                best = (rule, len(o))
    return best[0]


def scratch(root: Path) -> Path:
    work = copy_repo(root)
    overlay = write_yaml(work / "tests/resume-overlay.yaml", OVERLAY)
    write_complete_config(work / CONFIG, [DEMO, overlay], EXPERIMENTS, repo=work)
    return work


@dataclass
class Chain:
    """The killed-and-resumed runs: which rules are killed, and how."""

    work: Path
    scripts: dict[str, list[str]]
    run: Run | None = None
    n: int = -1
    kills: dict[str, dict] = field(default_factory=dict)
    forced: set[str] = field(default_factory=set)
    missed: set[str] = field(default_factory=set)
    rounds: list[tuple[int, int, list[str]]] = field(default_factory=list)

    def next_round(self) -> None:
        self.n += 1
        assert self.n < MAX_ROUNDS, f"{MAX_ROUNDS} resumed runs and still not done: {self.rounds}"
        args = ["--keep-going", "--rerun-incomplete"] + (["--forcerun", *sorted(self.forced)] if self.forced else [])
        self.run = Run(self.work, f"round-{self.n}", self.scripts, *args)
        self.missed = set()

    def step(self, cpu: dict[str, float], outputs: dict[str, list[str]]) -> None:
        """Pick the jobs to kill, and kill those whose point has come."""
        new, ended = self.run.scan()
        targeted = {j.rule for j in self.run.live.values() if j.target}
        for job in new:
            if job.rule not in self.kills and job.rule not in targeted:
                job.target = True
                targeted.add(job.rule)
        for job in ended:
            if job.target and job.rule not in self.kills:
                self.missed.add(job.rule)  # it ended before its kill point: forced to run again
        for job in list(self.run.live.values()):
            if not job.target or job.rule in self.kills:
                continue
            if job.kill_at is None and (job.rule in self.forced or job.rule in cpu):
                fast = job.rule in self.forced or cpu[job.rule] < FAST
                job.kill_at = 0.0 if fast else fraction(job.rule) * cpu[job.rule]
            if job.kill_at is None or job.cpu < job.kill_at:
                continue
            left = of_outputs(temporaries(self.work), outputs.get(job.rule, []))
            try:
                os.kill(job.proc.pid, signal.SIGKILL)
            except ProcessLookupError:
                continue
            if job.rule in self.forced:
                why = "at start: retry, its job had ended before its kill point"
            elif cpu[job.rule] < FAST:
                why = "at start: too fast to catch mid-run"
            else:
                why = f"mid-run: {job.cpu / cpu[job.rule]:.0%} of its {cpu[job.rule]:.1f} s of CPU"
                if job.cpu > job.kill_at + 0.5:
                    why += f" (planned {fraction(job.rule):.0%})"
            self.kills[job.rule] = dict(round=self.n, when=why, cpu=job.cpu, wall=time.monotonic() - job.seen,
                                        temporaries=len(left))
            print(f"round {self.n}: killed {job.rule} (pid {job.proc.pid}) {why}, after {job.cpu:.1f} s CPU / "
                  f"{self.kills[job.rule]['wall']:.1f} s wall; {len(left)} temporaries of its outputs", flush=True)

    def due_soon(self) -> bool:
        return any(j.target and j.kill_at is not None and j.kill_at - j.cpu < NEAR for j in self.run.live.values())


def drive(reference: Run, chain: Chain) -> tuple[float, float, list[str], dict[str, list[str]]]:
    """Run the reference and the chain side by side until both are done; returns the reference's wall time, when
    the chain started, the rules and their outputs."""
    cpu: dict[str, float] = {}  # rule -> CPU s of its first reference job
    first_batch: set[int] | None = None  # the reference's first jobs: the chain starts once they are measured
    started: set[int] = set()
    rules: list[str] | None = None
    outputs: dict[str, list[str]] = {}
    t_reference = None
    while True:
        if reference.rc is None:
            new, ended = reference.scan()
            started |= {j.proc.pid for j in new}
            if ended and first_batch is None:
                first_batch = set(started)
            for job in ended:
                cpu.setdefault(job.rule, job.cpu)
                first_batch.discard(job.proc.pid)
            if reference.poll() is not None:
                t_reference = time.monotonic() - reference.t0
                log = reference.log()
                assert reference.rc == 0, f"the reference run failed:\n{log[-6000:]}"
                outputs = job_outputs(log)
                rules = sorted(outputs.keys() - {"all"})
                for rule in sorted(set(rules) - cpu.keys()):  # ended between two looks: its benchmark has it
                    cpu[rule] = benchmark_cpu(reference.work, rule)
                    print(f"reference: {rule} ran between two looks; its benchmark says {cpu[rule]:.2f} s of CPU")
        if chain.run is None and first_batch is not None and not first_batch:
            t_chain0 = time.monotonic()
            chain.next_round()
        if chain.run is not None and chain.run.rc is None:
            chain.step(cpu, outputs)
            if chain.run.poll() is not None:
                chain.rounds.append((chain.n, chain.run.rc, sorted(r for r, k in chain.kills.items()
                                                                    if k["round"] == chain.n)))
                log = chain.run.log()
                if "LockException" in log or "cannot be locked" in log:
                    subprocess.run([*SNAKEMAKE, *RUN, "--unlock"], cwd=chain.work, env=ENV, capture_output=True,
                                   timeout=300)
                killed_now = any(k["round"] == chain.n for k in chain.kills.values())
                assert chain.run.rc == 0 or killed_now or chain.missed, (
                    f"round {chain.n} failed with no job killed:\n{log[-6000:]}")
        if chain.run is not None and chain.run.rc is not None:
            if chain.run.rc != 0 or chain.missed:  # resume (and force what ended before its kill point)
                chain.forced = chain.missed - chain.kills.keys()
                chain.next_round()
            elif rules is not None:  # done, unless a rule's job was never caught
                chain.forced = set(rules) - chain.kills.keys()
                if not chain.forced:
                    break
                chain.next_round()
        live = [r for r in (reference, chain.run) if r is not None and r.rc is None]
        near = chain.run in live and chain.due_soon()
        time.sleep(POLL_NEW if any(r.unseen() for r in live) else POLL_NEAR if near else POLL)
    return t_reference, t_chain0, rules, outputs


@pytest.mark.slow
def test_every_rule_killed_at_a_random_point_resumes_byte_identical(tmp_path_factory):
    t_start = time.monotonic()
    scripts = script_rules(Path(__file__).resolve().parents[1])
    root = tmp_path_factory.mktemp("resume")
    ref_work, chain_work = scratch(root / "reference"), scratch(root / "killed")

    reference = Run(ref_work, "reference", scripts)
    chain = Chain(chain_work, scripts)
    try:
        t_reference, t_chain0, rules, outputs = drive(reference, chain)
    finally:
        for run in (reference, chain.run):
            if run is not None:
                run.stop()
    t_chain = time.monotonic() - t_chain0

    # every final table byte-identical, nothing half-written left behind
    reference_files, got = final_files(ref_work), final_files(chain_work)
    assert any(p.startswith("results/") for p in reference_files)
    leftovers = temporaries(chain_work)
    differ = sorted(p for p in reference_files.keys() | got.keys() if reference_files.get(p) != got.get(p))
    lines = [f"seed {SEED}; reference run {t_reference:.0f} s; the killed and resumed chain {t_chain:.0f} s in "
             f"{len(chain.rounds)} runs, started {t_chain0 - reference.t0:.0f} s after the reference; "
             f"{len(reference_files)} files compared",
             f"{'rule':22} {'round':>5}  {'killed':62} {'CPU s':>6} {'wall s':>6} {'tmp':>3}  byte-identical"]
    for r in rules:
        k = chain.kills[r]
        bad = [p for p in differ if owner(p, outputs) == r]
        lines.append(f"{r:22} {k['round']:>5}  {k['when']:62} {k['cpu']:6.1f} {k['wall']:6.1f} {k['temporaries']:>3}  "
                     + ("yes" if not bad else "NO: " + ", ".join(bad)))
    lines.append(f"total {time.monotonic() - t_start:.0f} s")
    report = "\n".join(lines)
    print(report)
    assert not differ, f"not byte-identical after a kill and resume: {differ}\n{report}"
    assert not leftovers, f"temporaries of killed writes left behind: {leftovers}\n{report}"
    for work in (ref_work, chain_work):
        shutil.rmtree(work, ignore_errors=True)
