"""Real recorded voices from Debian packages, as an evaluation-only corpus (``bench data real``).

Building it downloads Debian packages and writes hundreds of MB, so the call is not run as a doctest:

>>> from bench.realvoices import build_real
>>> build_real("data/real-eval", "data/real-cache")  # doctest: +SKIP
"""

from bench.realvoices.build import RealConfig, RealVoicesUnavailable, build_real

__all__ = ["RealConfig", "RealVoicesUnavailable", "build_real"]
