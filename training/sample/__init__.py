"""Sampling: `generate` (text → mel → waveform, style transfer, inpainting), `io` (WAV/PNG out)."""
