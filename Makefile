# Two commands do all set-up on a fresh machine (Python 3.10+ with venv):
#   make demo   # venv + requirements, writes the digits demo data, trains on CPU/GPU, prints metrics
#   make test   # venv + requirements, runs the test suite (offline, ~3.5 min on 2 CPU cores)
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python

.PHONY: demo test setup

setup: $(VENV)/.installed

# Re-installs only when requirements.txt changes.
$(VENV)/.installed: requirements.txt
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -r requirements.txt
	touch $@

demo: setup
	$(PY) data_prep.py demo data/demo
	rm -rf runs/demo
	$(PY) train_hf.py --config configs/demo.yaml

test: setup
	$(PY) -m pytest -q tests
