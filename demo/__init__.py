"""The embedded demo corpus: a deterministic generator and a loopback server."""
