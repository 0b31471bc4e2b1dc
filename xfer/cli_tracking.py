"""``xfer frontier`` and ``xfer replay``: the commands that read from or write to MLflow (a
sweep's report from its runs; what a sweep spooled while its tracking server was down).

One module per group of commands, so ``xfer.cli`` stays the parser and the error contract.
MLflow is imported inside the commands: ``xfer --help`` and ``xfer train`` never load it.
"""

from __future__ import annotations

import argparse

from xfer.argtypes import accuracy_gap, accuracy_level, at_least_one, positive_int, size_list
from xfer.errors import EXIT_FAILED, EXIT_OK
from xfer.names import FORECAST_AT, SWEEP_TAG


def _cmd_frontier(args: argparse.Namespace) -> int:
    from xfer.tracking.sweep_report import build_report
    from xfer.tracking.endpoints import tracking_calls

    # the sweep's bounded retries and one line, exit 1, for a server that does not answer
    # (MLflow's defaults: ~4 minutes of silence, then a traceback)
    with tracking_calls():
        path = build_report(args.experiment, args.sweep_id, cost=args.cost,
                            target_accuracy=args.target_accuracy, out_dir=args.out,
                            log_to_parent=args.log_to_parent,
                            amortize_pretraining=args.amortize_pretraining)
    summary = path.read_text().split("## Summary", 1)[-1].split("\n## ", 1)[0]  # its first section
    print(summary.strip())
    print(f"report: {path}")
    return EXIT_OK


def add_frontier_commands(sub: argparse._SubParsersAction) -> None:
    frontier = sub.add_parser(
        "frontier", help="read a sweep's runs from MLflow; write its cost-accuracy frontier and report")
    frontier.add_argument("--experiment", required=True, metavar="NAME",
                          help="MLflow experiment of the sweep (tracking URI: MLFLOW_TRACKING_URI, "
                               "else MLflow's default sqlite:///mlflow.db)")
    frontier.add_argument("--sweep-id", default=None, metavar="ID",
                          help=f"the sweep's {SWEEP_TAG} tag (default: the latest sweep)")
    frontier.add_argument("--cost", default="train_macs",
                          metavar="wall_time_s|train_macs|gpu_seconds|macs_epochs_per_batch",
                          help="cost axis (default: train_macs, which does not depend on the hardware)")
    frontier.add_argument("--target-accuracy", type=accuracy_level, default=None, metavar="A",
                          help="also report, per init, the cheapest configuration reaching "
                               "validation accuracy A, in (0, 1] (its test accuracy beside it, with "
                               "its 95%% interval), and the cost ratio between inits")
    frontier.add_argument("--amortize-pretraining", type=positive_int, default=None, metavar="N",
                          help="count pretraining on the cost axis, shared over N uses of the "
                               "weights: train_macs + pretrain_macs / N per pretrained run (needs "
                               "--cost train_macs; default: not counted; the report always shows "
                               "the break-even N)")
    frontier.add_argument("--out", required=True, metavar="DIR",
                          help="folder for report.md, frontier.csv, configurations.csv and the figures")
    frontier.add_argument("--log-to-parent", action="store_true",
                          help="also log the files as artifacts of the sweep's parent run "
                               "(the sweep scripts do this when a sweep ends)")
    frontier.set_defaults(handler=_cmd_frontier)


# --- xfer forecast --------------------------------------------------------------------------

def _cmd_forecast(args: argparse.Namespace) -> int:
    import json

    from xfer import forecast, frontier
    from xfer.tracking import runs as tracking_runs
    from xfer.tracking.endpoints import tracking_calls
    from xfer.tracking.sweep_report import dataset_audit, dataset_num_classes

    with tracking_calls():
        sweep = tracking_runs.load_sweep(args.experiment, args.sweep_id)
    points = frontier.analyse(sweep.runs, config_columns=sweep.config_columns).points
    ceiling = (dataset_audit(sweep.runs) or {}).get("bayes_accuracy_ceiling")
    targets = args.at or forecast.targets_param(sweep.parent_params.get(FORECAST_AT))
    classes = dataset_num_classes(sweep.runs)
    result = forecast.scaling_forecast(points, ceiling=ceiling, chance=1 / classes if classes else None,
                                       delta=args.delta, horizon=args.horizon, targets=targets)
    print(f"{args.experiment}, sweep {sweep.sweep_id}: validation accuracy against dataset size "
          f"({', '.join(map(str, result.sizes))}), power-law fits, 95% bootstrap intervals")
    for line in forecast.summary_lines(result):
        print(line)
    if args.json:
        table = {"curves": result.table().to_dict("records"),
                 "catch_ups": result.crossover_table().to_dict("records")}
        with open(args.json, "w") as out:
            json.dump(table, out, indent=1, default=float)
        print(f"written: {args.json}")
    return EXIT_OK


def add_forecast_commands(sub: argparse._SubParsersAction) -> None:
    parser = sub.add_parser(
        "forecast", help="fit a sweep's validation accuracy against dataset size; forecast it at 2x "
                         "and 10x the largest size and say where scratch catches up with pretrained")
    parser.add_argument("--experiment", required=True, metavar="NAME",
                        help="MLflow experiment of the sweep (tracking URI: MLFLOW_TRACKING_URI, "
                             "else MLflow's default sqlite:///mlflow.db)")
    parser.add_argument("--sweep-id", default=None, metavar="ID",
                        help=f"the sweep's {SWEEP_TAG} tag (default: the latest sweep)")
    parser.add_argument("--delta", type=accuracy_gap, default=0.01, metavar="D",
                        help="scratch has caught up when within D of pretrained (a fraction; default "
                             "0.01, one point)")
    parser.add_argument("--horizon", type=at_least_one, default=10.0, metavar="X",
                        help="search the crossover up to X times the largest measured size (default 10)")
    parser.add_argument("--at", type=size_list, default=(), metavar="N1,N2",
                        help="also forecast at these dataset sizes, with the pretrained - scratch gain "
                             "(default: the sizes the sweep's preset names, e.g. the forecast preset's)")
    parser.add_argument("--json", default=None, metavar="PATH", help="also write the fits and crossovers as JSON")
    parser.set_defaults(handler=_cmd_forecast)


# --- xfer replay ----------------------------------------------------------------------------

def _cmd_replay(args: argparse.Namespace) -> int:
    from xfer.tracking.replay import replay_spool

    outcome = replay_spool(args.spool, tracking_uri=args.tracking_uri, echo=print)
    runs = f" ({outcome.runs_created} runs created, {outcome.runs_found} found)" if outcome.applied else ""
    skipped = f", {outcome.skipped} of them already in MLflow (their run was FINISHED)" if outcome.skipped else ""
    print(f"replayed {outcome.applied} records{runs}{skipped}"
          + (f", {outcome.rejected} refused by MLflow (see rejected.jsonl)" if outcome.rejected else "")
          + (f"; {outcome.left} still waiting: MLflow is unavailable ({outcome.unavailable}); "
             "run this again when it answers" if outcome.left else "; nothing is left to replay"))
    if outcome.report_missing:
        sweep_id = outcome.header.get("sweep_id")
        print(f"the sweep ended while MLflow was unavailable and wrote no report; write it with: xfer "
              f"frontier --experiment {outcome.header.get('experiment')} --sweep-id {sweep_id} "
              f"--out xfer_reports/{sweep_id} --log-to-parent")
    return EXIT_FAILED if outcome.left or outcome.rejected else EXIT_OK


def add_replay_commands(sub: argparse._SubParsersAction) -> None:
    replay = sub.add_parser(
        "replay", help="write to MLflow what a sweep spooled while its tracking server was "
                       "unavailable; safe to run twice")
    replay.add_argument("spool", metavar="SPOOL_PATH",
                        help="the spool folder the sweep printed (<storage>/<experiment>/<sweep id>/"
                             "mlflow_spool, or ./xfer_spool/<sweep id> for s3:// storage)")
    replay.add_argument("--tracking-uri", default=None, metavar="URI",
                        help="MLflow to replay into: the server the sweep logged to (default: "
                             "MLFLOW_TRACKING_URI, else the URI recorded in the spool)")
    replay.set_defaults(handler=_cmd_replay)
