"""Human review of the selected captions (`t2a review`, `t2a audit sign`): a stratified sample, judgments
in SQLite, precision estimates with Wilson intervals, and the overrides the shard stage applies."""
