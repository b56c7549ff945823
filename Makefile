# `make test` and `make demo` set everything up on a fresh machine: a virtual
# environment in .venv with the package installed editable, torch pinned by
# constraints.txt (an unpinned torch would pull a multi-GB CUDA build).
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed
export PIP_CONSTRAINT := $(CURDIR)/constraints.txt

.PHONY: test demo bench clean

# torch first, then everything else without build isolation: DeepSpeed ships as source and
# its build imports torch, which an isolated build would fetch again (as a CUDA build).
$(STAMP): setup.py constraints.txt
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet torch==2.13.0 "setuptools>=64" wheel
	$(PY) -m pip install --quiet --no-build-isolation -e ".[dev]"
	touch $@

test: $(STAMP)
	$(PY) -m pytest -q tests

# The main job on the shipped sample: tokenizer -> shards -> pretraining -> generation ->
# instruction tuning (judged by greedy answers on the held-out instructions) -> evaluation of
# both models on the sample questions (IgakuQA and JMED-LLM formats) and a checkpoint sweep.
SAMPLE_BENCH := data/sample/benchmarks
demo: $(STAMP)
	rm -rf runs/demo runs/data/sample runs/pretrain/tiny-sample runs/finetune/tiny-sample runs/eval runs/export/tiny-sample
	$(PY) -m tokenizer.train --input data/sample/corpus --vocab-size 8000 --allow-smaller-vocab --out runs/demo/tokenizer
	$(PY) -m slm.data.prepare --config configs/data/sample.yaml
	$(PY) train.py --config configs/pretrain/tiny-sample.yaml
	$(PY) -m slm.demo --run runs/pretrain/tiny-sample
	$(PY) finetune.py --config configs/finetune/sample.yaml
	$(PY) evaluate.py igakuqa --model runs/finetune/tiny-sample --data $(SAMPLE_BENCH)/igakuqa
	$(PY) evaluate.py jmed-llm --model runs/finetune/tiny-sample --data $(SAMPLE_BENCH)/jmed-llm --max-new-tokens 32
	$(PY) evaluate.py sweep runs/pretrain/tiny-sample --benchmarks igakuqa jmed-llm perplexity --method loglik \
		--igakuqa-data $(SAMPLE_BENCH)/igakuqa --jmed-llm-data $(SAMPLE_BENCH)/jmed-llm \
		--perplexity-data data/sample/corpus/nursing_notes.txt
	$(PY) -m slm.export --model runs/finetune/tiny-sample --out runs/export/tiny-sample

bench: $(STAMP)
	$(PY) bench/model_cpu.py
	$(PY) bench/tokenizer_throughput.py --check-lossless
	$(PY) bench/eval_throughput.py
	$(PY) bench/train_memory.py

clean:
	rm -rf $(VENV) runs .pytest_cache
