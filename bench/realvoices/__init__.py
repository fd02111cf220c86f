"""Real recorded voices from Debian packages, as an evaluation-only corpus (``bench data real``).

>>> from bench.realvoices import build_real          # doctest: +SKIP
>>> build_real("data/real-eval", "data/real-cache")
"""

from bench.realvoices.build import RealConfig, RealVoicesUnavailable, build_real

__all__ = ["RealConfig", "RealVoicesUnavailable", "build_real"]
