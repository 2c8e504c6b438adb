"""Stage 1, ingest: manifests → segment-only fetch → one ffmpeg pass per clip → the clip cache and a
status row per manifest row (docs/ingest.md). The Beam job is `job.py`."""
