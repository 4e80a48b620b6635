# anneuron: which MLP neurons of GPT-2 predict which tokens, and the evidence (see README.md).
# This file only loads and validates the configuration and includes the stages in workflow/rules/.
import sys

from snakemake.utils import min_version

from anneuron.config import ConfigError, check, load_schema

min_version("9.0")


configfile: "config.yaml"


report: "workflow/report/workflow.rst"


include: "workflow/rules/common.smk"


try:
    config.update(check(config, load_schema(workflow.source_path("workflow/schemas/config.schema.yaml")), PRODUCED))
except ConfigError as err:
    sys.exit(f"anneuron: {err}")


include: "workflow/rules/demo.smk"
include: "workflow/rules/tokenize.smk"
include: "workflow/rules/weights.smk"
include: "workflow/rules/dataset.smk"
include: "workflow/rules/experiments.smk"
include: "workflow/rules/emergent.smk"
include: "workflow/rules/report.smk"


rule all:
    default_target: True
    input:
        all_targets(),
