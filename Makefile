# Two set-up commands (README.md): `make demo` and `make test`. Both install into .venv first.
PYTHON ?= python3
VENV   := .venv
BIN    := $(CURDIR)/$(VENV)/bin
STAMP  := $(VENV)/.installed
LOCK   := requirements.lock

# The lock pins every package, extras (s3, gs, test) included, with hashes. torch and torchvision
# are held at the releases pip takes from this machine kind's local files (a CUDA build that runs on
# CPU); a newer PyPI release is a ~3 GB download. `make lock` keeps every other pin as it is; to move
# one package: `make lock UPGRADE="-P transformers"` (or `-P transformers==5.26.0`), everything:
# `make lock UPGRADE=--upgrade`.
TORCH       ?= 2.14.1
TORCHVISION ?= 0.29.1
PIP_TOOLS   := pip-tools==7.7.0
UPGRADE     ?=

.PHONY: install lock check-lock demo demo-tokens demo-clipsonic test lint format bench clean

install: $(STAMP)

# Everything comes from the lock (--require-hashes), then the project itself without dependencies.
$(STAMP): pyproject.toml $(LOCK)
	$(PYTHON) .ci/lock.py check
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --require-hashes -r $(LOCK)
	$(BIN)/python -m pip install --quiet --no-deps --no-build-isolation -e .
	touch $(STAMP)

check-lock:
	$(PYTHON) .ci/lock.py check

lock:
	$(PYTHON) -m venv $(VENV)-lock
	$(VENV)-lock/bin/python -m pip install --quiet $(PIP_TOOLS)
	CUSTOM_COMPILE_COMMAND="make lock" $(VENV)-lock/bin/pip-compile --quiet --allow-unsafe --generate-hashes \
		--no-emit-index-url --no-emit-find-links --extra gs --extra s3 --extra test \
		-P torch==$(TORCH) -P torchvision==$(TORCHVISION) $(UPGRADE) --output-file $(LOCK) pyproject.toml
	$(PYTHON) .ci/lock.py stamp

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

# The CLIPSonic demo (clipsonic/dvc.yaml): CLIPSonic-SD (mel diffusion on one random frame's CLIP embedding,
# the diffusion prior, text queries through it) on the demo corpus; runs the main pipeline's stages it needs first.
demo-clipsonic: $(STAMP)
	PATH="$(BIN):$$PATH" t2a serve data/demo-corpus --port 8765 -- dvc repro clipsonic/dvc.yaml
	@echo
	@echo "Samples: runs/demo-clipsonic/samples/ (text → prior → CLIP image embedding → mel diffusion → Griffin-Lim)."
	@echo "Modality gap (CLIPSonic Table 2): runs/demo-clipsonic/prior/gap.json. The demo CLIP is tiny and random: the figures test the path, not the method."

# The token demo (tokens/dvc.yaml): a tiny codebook and Diffsound's discrete diffusion on the demo corpus,
# sampled on the held-out prompts and scored; runs the main pipeline's stages it needs first.
demo-tokens: $(STAMP)
	PATH="$(BIN):$$PATH" t2a serve data/demo-corpus --port 8765 -- dvc repro tokens/dvc.yaml
	@echo
	@PATH="$(BIN):$$PATH" t2a evaluate --generated runs/demo-tokens/samples --reference data/demo/shards --split test \
		--prompts runs/demo/prompts.txt --clap runs/demo/clap/model --baseline runs/demo-tokens/samples_unconditional \
		--out runs/demo-tokens/evaluation.json --cache-dir runs/demo/embeddings
	@echo "Samples: runs/demo-tokens/samples/ (codebook tokens → mel → Griffin-Lim). Logs: runs/demo-tokens/{vq,dd}/logs."

test: $(STAMP)
	$(PYTHON) .ci/lock.py check
	$(BIN)/python -m pytest

# The rules the code checks (the test suite runs them too: tests/test_rules.py).
lint: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/lint-imports

format: $(STAMP)
	$(BIN)/ruff format .
	$(BIN)/ruff check --fix .

bench: $(STAMP)
	$(BIN)/python bench/ingest_throughput.py

clean:
	rm -rf data/demo data/demo-corpus runs/demo runs/demo-tokens runs/demo-clipsonic bench/out $(VENV)-lock
