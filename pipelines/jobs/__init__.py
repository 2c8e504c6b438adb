"""Beam jobs: one module per job, each a composite PTransform plus run(argv)."""
