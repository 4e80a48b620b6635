# anneuron: which MLP neurons of GPT-2 predict which tokens, and the evidence (see README.md and docs/).
# This file only validates the configuration, resolves the models (no torch, no network) and includes the stages.
import sys

from snakemake.utils import min_version, validate

from anneuron import config as C
from anneuron.demos.specs import DATA_FILES, produced_models
from anneuron.jobs import export_library

min_version("9.0")

# Every job imports this checkout's library, whatever else is installed (anneuron.jobs.export_library).
export_library(workflow.basedir)


configfile: "config.yaml"


report: "workflow/report/workflow.rst"


try:
    config.update(
        C.check(
            config,
            workflow.source_path("workflow/schemas/config.schema.yaml"),
            validate,  # Snakemake's own: fills the schema's defaults
            produced_models,
            DATA_FILES,
            # the experiments the configfiles and --config name (config.yaml's are merged under them)
            workflow.config_settings.overwrite_config.get("experiments", {}),
        )
    )
    SPECS = C.resolve_models(config, produced_models)
except C.ConfigError as err:
    sys.exit(f"anneuron: {err}")


include: "workflow/rules/common.smk"
include: "workflow/rules/fetch.smk"
include: "workflow/rules/demo.smk"
include: "workflow/rules/tokenize.smk"
include: "workflow/rules/weights.smk"
include: "workflow/rules/dataset.smk"
include: "workflow/rules/experiments.smk"
include: "workflow/rules/universality.smk"
include: "workflow/rules/stages.smk"
include: "workflow/rules/emergent.smk"
include: "workflow/rules/real_demo.smk"
include: "workflow/rules/report.smk"
include: "workflow/rules/pages.smk"


rule all:
    default_target: True
    input:
        all_targets(),
