"""The sweep layer: Ray Tune + Optuna + ASHA fan trials out; MLflow records each exactly once.

- ``study``:   a study = named presets, each a search space + fixed settings + data + weights;
  ``Preset.grid_axes`` is the one expansion of the grid (the plan and Ray's param_space)
- ``options``: the options every sweep script shares (docs/commands.md), validated before Ray starts
- ``sources``: where a sweep's dataset comes from (a preset's PDF plots, CIFAR, a folder)
- ``plan``:    expand a preset into trials, count them, estimate MACs and time (``--dry-run``)
- ``driver``:  ``run_study``: the whole sweep, from the checks and the plan to the summary
- ``tune_run``: ``launch``: start Ray, open the parent run, build the Tuner, run it, finish
- ``parent_run``: the parent run and the sweep's record, opened and ended together
- ``trial``:   the function each Ray trial runs: ``fit`` with Tune reports and checkpoints
- ``mlflow_logger``: a Tune callback in the driver: one child run per trial, through the spool
- ``schedulers``: ASHA grouped by dataset size, init and seed
- ``progress``: the live progress line; ``system_metrics``: GPU/CPU sampling in trials
- ``interrupts``: SIGINT/SIGTERM stop a sweep resumably; ``faults``: test-only stall points
- ``storage``, ``home_dir``: where a sweep's state lives, and nowhere else

This package and ``xfer.tracking`` are the only places in xfer that import Ray or MLflow.
"""
