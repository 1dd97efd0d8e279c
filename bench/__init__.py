"""Benchmarks for portkey-user-proxy against the upstream alone and nginx. Run `python -m bench`."""
