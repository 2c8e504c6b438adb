"""Stage 2, annotate: clip cache → CLAP/CLIP embeddings and CLAP-selected pseudo-captions
(docs/annotate.md). The Beam job is `job.py`; `store.py` reads and writes its parquet table."""
