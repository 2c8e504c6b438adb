"""The trainer's data: `loader` (streaming shard loader with exact resume), `stream` (shard
listing, decoding, per-sample RNG), `examples` (sample → training example, augmentations)."""
