"""Stage 3, shard: clip cache (+ annotations) → deterministic WebDataset shards (docs/shards.md).
The shard contract is the boundary between the pipelines and training.

    job        the Beam job
    contract   keys, member names, codecs, tar header settings, the sample JSON schema
    writer     the deterministic, atomic shard writer and per-shard stats (the commit marker)
    index      wids-readable index.json per split, and the corpus index over the splits
    reader     plain, webdataset, wids and Hugging Face readers; `inspect_shard`
    plan       which clips go into which shard

The mel profiles the shards carry are in pipelines.core.features (annotate and training use them too).
"""
