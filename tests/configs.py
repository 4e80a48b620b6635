"""Complete configs for the end-to-end tests (tests/test_workflow.py, tests/slurm/run.sh): config.yaml and overlay
files merged as Snakemake merges `--configfile`s, keeping only the experiments a test needs. Run with
`--replace-workflow-config`, so the default experiments are not added back (fewer jobs, a faster test); the SLURM
test writes it over its scratch copy's config.yaml instead (SLURM jobs are not passed that flag).

    python tests/configs.py OUT.yaml --experiments an_a,an_picked workflow/configs/demo-planted.yaml more.yaml
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import yaml

REPO = Path(__file__).resolve().parents[1]
SCHEMA = REPO / "workflow/schemas/config.schema.yaml"


def merge(base: dict, overlay: dict) -> dict:
    """Snakemake's update_config: mappings merge key by key, anything else is replaced."""
    for key, value in overlay.items():
        if isinstance(value, dict) and isinstance(base.get(key), dict):
            merge(base[key], value)
        else:
            base[key] = value
    return base


def complete_config(overlays: list[str | Path], experiments: list[str], repo: Path = REPO) -> dict:
    config = merged(*overlays, repo=repo)
    unknown = set(experiments) - set(config["experiments"])
    if unknown:
        raise KeyError(f"no experiments {sorted(unknown)} in the merged config")
    config["experiments"] = {name: config["experiments"][name] for name in experiments}
    return config


def merged(*overlays: str | Path, repo: Path = REPO) -> dict:
    """config.yaml with config files merged on top, as Snakemake's `--configfile` does (nothing validated)."""
    config = yaml.safe_load((repo / "config.yaml").read_text())
    for path in overlays:
        merge(config, yaml.safe_load((repo / path).read_text()) or {})
    return config


def validated(config: dict) -> dict:
    """The config with the schema's defaults filled by Snakemake's own validator, as the Snakefile has it checked."""
    from snakemake.utils import validate

    from anneuron.config import validate_schema

    return validate_schema(config, SCHEMA, validate)


def checked(config: dict, named_experiments: tuple[str, ...] = ()) -> dict:
    """The whole pre-flight check, as the Snakefile calls it (`named_experiments`: those the configfiles name)."""
    from snakemake.utils import validate

    from anneuron.config import check
    from anneuron.demos.specs import DATA_FILES, produced_models

    return check(config, SCHEMA, validate, produced_models, DATA_FILES, named_experiments)


def defaults(**sections: dict) -> dict:
    """The schema's defaults (the only source of defaults) for a minimal config, each given section merged in."""
    return validated(merge({"models": ["gpt2"], "dataset": "x.parquet"}, sections))


def experiment_config(exp: dict, **patching):
    """An ExperimentConfig for one prompt pair (`name`, `clean`, ... as in the config or ground_truth.json), with the
    schema's patching defaults and the given overrides."""
    from anneuron.stage_config import ExperimentConfig

    keys = ("clean", "corrupted", "answer", "wrong", "neuron_layers")
    name = exp.get("name", "exp")
    config = defaults(device="cpu", dtype="float32", patching=patching,
                      experiments={name: {k: exp[k] for k in keys if k in exp}})
    return ExperimentConfig.of(config, name)


def task_config(name: str, entry: dict, **patching):
    """A TaskConfig for one task (`pairs:` or `template:` + `fills:`, as in the config), with the schema's defaults
    and the given patching overrides."""
    from anneuron.stage_config import TaskConfig

    config = defaults(device="cpu", dtype="float32", patching=patching, experiments={name: entry})
    return TaskConfig.of(config, name)


def write_complete_config(out: Path, overlays: list[str | Path], experiments: list[str], repo: Path = REPO) -> Path:
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(yaml.safe_dump(complete_config(overlays, experiments, repo), sort_keys=False, allow_unicode=True))
    return out


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("out", type=Path)
    ap.add_argument("overlays", nargs="*")
    ap.add_argument("--experiments", required=True, help="comma-separated names to keep")
    ap.add_argument("--repo", type=Path, default=Path.cwd())
    args = ap.parse_intermixed_args(argv)
    write_complete_config(args.out, args.overlays, args.experiments.split(","), args.repo)
    return 0


if __name__ == "__main__":
    sys.exit(main())
