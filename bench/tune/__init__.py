"""Optuna studies over loss hyper-parameters and a few recipe settings such as ``optim.lr`` (``bench tune``).

- :mod:`bench.tune.space`     ``--param NAME=LOW:HIGH[:log|:STEP]`` / ``NAME=A,B`` against the loss's config dataclass
- :mod:`bench.tune.keys`      the dotted recipe keys ``--param`` may also search (``optim.lr``, ...), checked as ``--set``
- :mod:`bench.tune.options`   :class:`TuneConfig`, the typed options of a study
- :mod:`bench.tune.objective` one trial = one run directory; last-epoch validation EER, per-epoch pruning
- :mod:`bench.tune.study`     create / join / resume a study, several workers on one storage
- :mod:`bench.tune.storage`   SQLite default, RDB URLs (PostgreSQL), journal files; dead-worker heartbeat
- :mod:`bench.tune.summary`   best trial and the ``bench run`` command for the final model
- :mod:`bench.tune.plots`     history, intermediate values, importances, contour, slice

Tuning never scores the evaluation trials; see :mod:`bench.tune.objective`.
"""

from bench.tune.options import TuneConfig
from bench.tune.space import ParamSpec, parse_param, parse_space

__all__ = ["ParamSpec", "TuneConfig", "parse_param", "parse_space"]
