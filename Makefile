# Two commands for a newcomer: `make demo` (the whole pipeline on the offline demo model) and `make test`.
SHELL := /bin/bash
PY := .venv/bin/python
SNAKEMAKE := .venv/bin/snakemake
CORES ?= 2
DEMO ?= demo-planted

.PHONY: demo test test-slurm lint bench clean-demo venv

venv: .venv/.installed

.venv/.installed: requirements.txt pyproject.toml
	test -x $(PY) || python3 -m venv .venv
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -r requirements.txt
	$(PY) -m pip install --quiet --no-deps -e .
	touch $@

demo: venv
	HF_HUB_OFFLINE=1 $(SNAKEMAKE) --workflow-profile workflow/profiles/default --cores $(CORES) \
		--configfile workflow/configs/$(DEMO).yaml
	@echo "demo outputs: results/$(DEMO)/ (tables, figures), resources/ (model, corpus, token shards)"

lint: venv
	.venv/bin/ruff check .
	$(SNAKEMAKE) --lint --configfile workflow/configs/demo-planted.yaml
	.venv/bin/snakefmt --check Snakefile workflow/rules

test: venv
	.venv/bin/ruff check .
	HF_HUB_OFFLINE=1 $(PY) -m pytest -q tests

test-slurm: venv
	bash tests/slurm/run.sh
