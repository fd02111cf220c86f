"""Experiment runner: training loop, checkpoints, evaluation and run directories.

Entry point for the CLI is :func:`bench.runner.experiment.run_experiment`; the pieces are usable
on their own (``bench embed``/``bench eval`` reuse :mod:`bench.runner.evaluate`).
"""
