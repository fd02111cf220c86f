"""Backbone registry: each entry maps a name to (backbone class, config dataclass)."""

from bench.registry import Registry

BACKBONES = Registry("backbone")

__all__ = ["BACKBONES"]
