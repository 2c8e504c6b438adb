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
	@PATH="$(BIN):$$PATH" t2a evaluate runs/demo/samples --reference data/demo/shards --split test --clap data/demo-models/clap \
		--baseline runs/demo/samples_unconditional --out runs/demo/evaluation.json --cache-dir runs/demo/embeddings
	@echo
	@echo "Samples: runs/demo/samples/ (WAV + spectrogram PNG per prompt; samples.json). What they show:"
	@echo "the tiny VAE and LDM trained for minutes on 131 clips, conditioned on a random tiny CLAP, so the"
	@echo "audio is mel-shaped noise that does not follow its prompt. The demo shows the path working end to"
	@echo "end (streaming, VAE, latents, CLAP conditioning, guidance, Griffin-Lim), not audio quality."
	@echo "TensorBoard logs: runs/demo/vae/logs, runs/demo/ldm/logs."

test: $(STAMP)
	$(BIN)/python -m pytest

bench: $(STAMP)
	$(BIN)/python bench/ingest_throughput.py

clean:
	rm -rf data/demo data/demo-corpus runs/demo bench/out
