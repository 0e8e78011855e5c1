"""loop: a self-improving RL data-synthesis daemon (propose, sample, verify, store, train, evaluate)."""

__version__ = "0.1.0"
