"""What every stage shares: typed config base, registries, the clip/annotation/sample records,
atomic writes and digests (io), external tool versions, the AudioSet ontology. Imports no stage."""
