"""Evaluation: `run` (the `t2a evaluate` command and its verdict), `data` (generated and reference
sets), `metrics` (FD, KL, IS, CLAP score, prompt ranking), `embedders` and `panns` (the models)."""
