"""Sampler backends, one per file; see loop.sample for the contract."""
