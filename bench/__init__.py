"""bench: a benchmarking and ablation toolkit for speaker-verification training objectives."""

__version__ = "0.1.0"
