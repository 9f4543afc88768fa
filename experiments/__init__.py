"""elk's experiments: benchmarks (``bench_*.py``), the solver studies (``gap_study``, ``tune_solver``), the
paper's evaluation (``experiments.paper``, ``run_all``) and CI's Dask check.

A package so that its scripts import each other by name, without editing ``sys.path``: run them from the
repository root as modules, ``python -m experiments.run_all --out out/paper``. Nothing in ``elk``,
``solvers`` or ``formulations`` imports it.
"""
