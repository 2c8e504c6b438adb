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

test: $(STAMP)
	$(BIN)/python -m pytest

bench: $(STAMP)
	$(BIN)/python bench/ingest_throughput.py

clean:
	rm -rf data/demo data/demo-corpus bench/out
