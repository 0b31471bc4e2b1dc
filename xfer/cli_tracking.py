"""``xfer frontier`` and ``xfer replay``: the commands that read from or write to MLflow (a
sweep's report from its runs; what a sweep spooled while its tracking server was down).

One module per group of commands, so ``xfer.cli`` stays the parser and the error contract.
MLflow is imported inside the commands: ``xfer --help`` and ``xfer train`` never load it.
"""

from __future__ import annotations

import argparse

from xfer.argtypes import accuracy_level, positive_int
from xfer.errors import EXIT_FAILED, EXIT_OK
from xfer.names import SWEEP_TAG


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
