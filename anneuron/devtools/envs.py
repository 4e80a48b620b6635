"""The conda environments cluster jobs deploy (`--software-deployment-method conda`), generated from
requirements.txt so that the two never disagree:

    python -m anneuron.devtools.envs            # rewrite envs/cpu.yaml and envs/gpu.yaml
    python -m anneuron.devtools.envs --check    # exit 1 if they are out of date (tests/devtools/test_envs.py runs this)

Snakemake copies an env file before it creates the environment, so the files hold every pin inline (no
`-r ../requirements.txt`, no `-e ..`, which are relative to a file that has moved) and the environment's hash
changes whenever a pin does. The jobs find the `anneuron` library through PYTHONPATH, on which the Snakefile puts
the workflow's own checkout first (the slurm profile's `conda-not-block-search-path-envvars` keeps it in these envs).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
# the suite's tools, not the jobs'
DEV_ONLY = ("pytest", "pytest-xdist", "execnet", "black", "snakefmt", "ruff", "selenium", "playwright")
ENVS = {
    "cpu": ("CPU jobs on a cluster (tokenize, pairs, curves, figures, demo)", "https://download.pytorch.org/whl/cpu"),
    "gpu": ("GPU jobs on a cluster (record, experiments, congruence on CUDA): torch's CUDA build from PyPI", None),
}


def pins(requirements: str) -> list[str]:
    """`name==version` lines of a requirements file, in its order, without comments and test-only tools."""
    out = []
    for line in requirements.splitlines():
        line = line.split("#", 1)[0].strip()
        if line and line.split("==")[0].lower() not in DEV_ONLY:
            out.append(line)
    return out


def env_file(kind: str, requirements: str) -> str:
    what, index = ENVS[kind]
    lines = [f"# {what}.",
             "# Generated from requirements.txt by `python -m anneuron.devtools.envs`: do not edit by hand.",
             f"name: anneuron-{kind}", "channels: [conda-forge]", "dependencies:", "  - python=3.11", "  - pip",
             "  - pip:"]
    if index:
        lines.append(f"      - --extra-index-url {index}")
    lines += [f"      - {p}" for p in pins(requirements)]
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description="conda env files from requirements.txt")
    ap.add_argument("--check", action="store_true", help="only check that envs/*.yaml are up to date")
    args = ap.parse_args(argv)
    requirements = (REPO / "requirements.txt").read_text()
    stale = []
    for kind in ENVS:
        path, text = REPO / "envs" / f"{kind}.yaml", env_file(kind, requirements)
        if args.check:
            if not path.exists() or path.read_text() != text:
                stale.append(str(path.relative_to(REPO)))
        else:
            path.write_text(text)
    if stale:
        print(f"anneuron: {', '.join(stale)} out of date with requirements.txt: run python -m anneuron.devtools.envs",
              file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
