# Two set-up commands (README.md): `make demo` and `make test`. Both install into .venv first.
PYTHON ?= python3
VENV   := .venv
BIN    := $(CURDIR)/$(VENV)/bin
STAMP  := $(VENV)/.installed

.PHONY: install demo test bench clean

install: $(STAMP)

# The standard PyPI torch build (CUDA-enabled; it runs on CPU) comes in through pyproject.toml.
$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet -e ".[test]"
	touch $(STAMP)

# Build the demo corpus, serve it on 127.0.0.1:8765, and run the DVC pipeline against it.
demo: $(STAMP)
	PATH="$(BIN):$$PATH" t2a serve data/demo-corpus --port 8765 -- dvc repro
	@echo
	@PATH="$(BIN):$$PATH" t2a evaluate --generated runs/demo/samples --reference data/demo/shards --split test \
		--prompts runs/demo/prompts.txt --clap runs/demo/clap/model --baseline runs/demo/samples_unconditional \
		--out runs/demo/evaluation.json --cache-dir runs/demo/embeddings
	@echo
	@echo "Samples: runs/demo/samples/ (WAV + spectrogram PNG per held-out prompt; samples.json); prompts: runs/demo/prompts.txt."
	@echo "The CLAP that annotated the corpus, conditioned the LDM and scored the samples is runs/demo/clap/model"
	@echo "(recall on the valid split: runs/demo/clap/recall.json). Models trained for minutes on a CPU on ~130"
	@echo "synthetic clips: the figures say whether samples follow their prompts, not that they sound good."
	@echo "TensorBoard logs: runs/demo/clap/logs, runs/demo/vae/logs, runs/demo/ldm/logs."

test: $(STAMP)
	$(BIN)/python -m pytest

bench: $(STAMP)
	$(BIN)/python bench/ingest_throughput.py

clean:
	rm -rf data/demo data/demo-corpus runs/demo bench/out
