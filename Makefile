# Two commands for a newcomer: `make demo` (the whole pipeline on the offline demo model) and `make test`.
SHELL := /bin/bash
PY := .venv/bin/python
SNAKEMAKE := .venv/bin/snakemake
CORES ?= 2
DEMO ?= demo-planted

.PHONY: demo test test-slurm lint bench clean-demo venv browser screenshot

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
	@echo "neuron pages: open results/$(DEMO)/pages/index.html in a browser (from disk; e.g. #L2N892)"

# The headless browser of the pages' browser test (tests/test_pages_browser.py): Debian's chromium and its driver.
# As root with apt-get only; elsewhere install them yourself (the test is skipped, saying why, without them).
browser:
	@if command -v chromium >/dev/null && command -v chromedriver >/dev/null; then :; \
	elif [[ $$(id -u) == 0 ]] && command -v apt-get >/dev/null; then \
		apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium chromium-driver >/dev/null; \
	else echo "make browser: no chromium/chromedriver and no root apt-get: the browser test will be skipped"; fi

# The README's screenshot of the neuron pages (after `make demo`).
screenshot: venv
	$(PY) -m anneuron.pages.browser "results/$(DEMO)/pages/index.html#L2N892" docs/pages-screenshot.png --width 1280

lint: venv
	.venv/bin/ruff check .
	$(SNAKEMAKE) --lint --configfile workflow/configs/demo-planted.yaml
	.venv/bin/snakefmt --check Snakefile workflow/rules

test: venv
	.venv/bin/ruff check .
	HF_HUB_OFFLINE=1 $(PY) -m pytest -q -rs tests

test-slurm: venv
	bash tests/slurm/run.sh
