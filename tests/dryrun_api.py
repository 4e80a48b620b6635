"""Dry-runs through the Snakemake API, several in one process (the Snakefile's imports are paid once):
which jobs would run, per scenario. Used by tests/test_workflow.py in a subprocess (the API changes the working
directory and installs log handlers, which a pytest process should not inherit).

    python tests/dryrun_api.py WORKDIR SPEC.json   ->   prints one JSON object on its last line
    python tests/dryrun_api.py --outputs WORKDIR CONFIGFILE...   ->   {"rules": {rule: [declared output patterns]},
                                                                      "torch_imported": whether parsing imported torch,
                                                                      "pythonpath": PYTHONPATH after parsing}

SPEC: {"scenario name": {"configfiles": [...], "forceall": false, "replace_workflow_config": false,
"groups": {rule: group}, "group_components": {group: n}, "resources": {name: n}, "resource_scopes": {name: scope}},
...}, paths relative to WORKDIR (as a profile's `groups:`, `group-components:`, `resources:` and
`set-resource-scopes:` give them).
Output: {"scenario name": [{"rule": ..., "inputs": [...], "outputs": [...], "local": bool, "gpu": int,
"group": "groupid#n" or null, "group_resources": what that group job asks for, or null}, ...], ...} (jobs
Snakemake would run, `all` left out).
"""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path


def scheduled(workdir: Path, configfiles: list[str], forceall: bool = False,
              replace_workflow_config: bool = False, groups: dict | None = None,
              group_components: dict | None = None, resources: dict | None = None,
              resource_scopes: dict | None = None) -> list[dict]:
    from snakemake.api import SnakemakeApi
    from snakemake.settings.types import (
        ConfigSettings,
        DAGSettings,
        GroupSettings,
        OutputSettings,
        Quietness,
        ResourceSettings,
    )

    with SnakemakeApi(OutputSettings(quiet={Quietness.ALL})) as api:
        wf = api.workflow(
            resource_settings=ResourceSettings(cores=1, resources=resources or {},
                                               overwrite_resource_scopes=resource_scopes or {}),
            config_settings=ConfigSettings(configfiles=[workdir / c for c in configfiles],
                                           replace_workflow_config=replace_workflow_config),
            snakefile=workdir / "Snakefile",
            workdir=workdir,
        )
        dag_api = wf.dag(DAGSettings(forceall=forceall))
        updated: list[str] = []  # outputs of the jobs that would run, filled before scheduling
        dag_api.execute_workflow(executor="dryrun", updated_files=updated, group_settings=GroupSettings(
            overwrite_groups=groups or {}, group_components=group_components or {}))
        updated_set = set(map(str, updated))
        # The API lists outputs only; the DAG's jobs name their rules (an internal attribute, pinned Snakemake).
        dag = wf._workflow.dag
        jobs = [dict(rule=j.rule.name, inputs=sorted(str(f) for f in j.input), outputs=sorted(str(f) for f in j.output),
                     local=j.rule.name in wf._workflow._localrules, gpu=int(j.resources.get("gpu", 0) or 0),
                     group=_group_of(dag, j), group_resources=_group_resources(dag, j))
                for j in dag.jobs if j.rule.name != "all" and updated_set & set(map(str, j.output))]
    return sorted(jobs, key=lambda j: (j["rule"], j["outputs"]))


def _group_of(dag, job) -> str | None:
    """The group job (one cluster submission) a job belongs to, as `groupid#n` (n tells apart group jobs sharing
    a group id), or None."""
    group = dag.get_job_group(job)
    if group is None:
        return None
    same = sorted({id(g) for g in dag._group.values() if g.groupid == group.groupid})
    return f"{group.groupid}#{same.index(id(group))}"


def _group_resources(dag, job) -> dict | None:
    """What the group job holding `job` would ask the cluster for (gpu, mem_mb, runtime, threads), or None."""
    group = dag.get_job_group(job)
    if group is None:
        return None
    res = group.resources
    return {k: res.get(k) for k in ("gpu", "mem_mb", "runtime", "_cores")}


def declared_outputs(workdir: Path, configfiles: list[str]) -> dict[str, list[str]]:
    """Rule name -> the output patterns it declares (as parsed, wildcards unfilled)."""
    from snakemake.api import SnakemakeApi
    from snakemake.settings.types import ConfigSettings, OutputSettings, Quietness, ResourceSettings

    with SnakemakeApi(OutputSettings(quiet={Quietness.ALL})) as api:
        wf = api.workflow(resource_settings=ResourceSettings(cores=1),
                          config_settings=ConfigSettings(configfiles=[workdir / c for c in configfiles]),
                          snakefile=workdir / "Snakefile", workdir=workdir)
        return {r.name: [str(f) for f in r.output] for r in wf._workflow.rules if r.name != "all"}


def main(argv: list[str]) -> int:
    if argv[0] == "--outputs":  # python tests/dryrun_api.py --outputs WORKDIR CONFIGFILE...
        outputs = declared_outputs(Path(argv[1]).resolve(), argv[2:])
        print(json.dumps({"rules": outputs, "torch_imported": "torch" in sys.modules,
                          "pythonpath": os.environ.get("PYTHONPATH")}))
        return 0
    workdir, spec = Path(argv[0]).resolve(), json.loads(Path(argv[1]).read_text())
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    out = {}
    for name, s in spec.items():
        out[name] = scheduled(workdir, s["configfiles"], s.get("forceall", False),
                              s.get("replace_workflow_config", False), s.get("groups"), s.get("group_components"),
                              s.get("resources"), s.get("resource_scopes"))
        print(f"{name}: {len(out[name])} jobs", file=sys.stderr)
    print(json.dumps(out))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
