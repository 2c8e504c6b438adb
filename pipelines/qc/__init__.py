"""Audio quality measures and near-duplicate/leakage search (`t2a qc`), applied by the shard stage."""
