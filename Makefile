# `make test` and `make demo` set everything up on a fresh machine: a virtual
# environment in .venv with the package installed editable, torch pinned by
# constraints.txt (an unpinned torch would pull a multi-GB CUDA build).
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed
export PIP_CONSTRAINT := $(CURDIR)/constraints.txt

.PHONY: test demo bench clean

$(STAMP): setup.py constraints.txt
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet -e ".[dev]"
	touch $@

test: $(STAMP)
	$(PY) -m pytest -q tests

demo: $(STAMP)
	$(PY) -m slm.demo --out runs/demo

bench: $(STAMP)
	$(PY) bench/model_cpu.py
	$(PY) bench/tokenizer_throughput.py --check-lossless

clean:
	rm -rf $(VENV) runs .pytest_cache
