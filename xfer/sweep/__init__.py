"""The sweep layer: Ray Tune + Optuna + ASHA fan trials out; MLflow records each exactly once.

- ``study``:   a study = named presets, each a search space + fixed settings + data + weights
- ``options``: the options every sweep script shares (SPEC), validated before Ray starts
- ``plan``:    expand a preset into trials, count them, estimate MACs and time (``--dry-run``)
- ``trial``:   the function each Ray trial runs: ``fit`` with Tune reports and checkpoints
- ``mlflow_logger``: a Tune callback in the driver: one parent run, one child run per trial
- ``driver``:  ``run_study``: the whole sweep, from the plan to the summary and the report

This package and ``xfer.tracking`` are the only places in xfer that import Ray or MLflow.
"""
