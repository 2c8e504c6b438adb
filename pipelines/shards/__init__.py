"""Shards: the data contract between the pipelines and training (docs/shards.md).

    contract   keys, member names, codecs, tar header settings, the sample JSON schema
    writer     the deterministic, atomic shard writer and per-shard stats (the commit marker)
    index      wids-readable index.json per split, and the corpus index over the splits
    reader     plain, webdataset, wids and Hugging Face readers; `inspect_shard`
    plan       which clips go into which shard
"""
