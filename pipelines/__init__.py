"""t2a pipelines: Beam jobs that turn public audio/video manifests into text-audio training data."""

__version__ = "0.1.0"
