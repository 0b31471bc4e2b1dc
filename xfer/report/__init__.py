"""The sweep report, from the tables ``xfer.tracking.runs`` reads to files on disk (no MLflow).

- ``write``:          :func:`write_report`, the entry point: every file of a report
- ``chosen_runs``:    which runs' artifacts a report needs, chosen before any is loaded
- ``markdown``:       report.md's sections in order, the generated summary and the tables
- ``conclusions``:    the sentences that conclude, each as sure as its 95% interval
- ``sections``:       sections a report adds when runs carry them: pretraining gain, ROC, embeddings
- ``card``:           the study's departures, the replication card, the dataset audit
- ``figures``:        the report's figures (matplotlib)
- ``trial_figures``:  a trial's own figures (confusion matrix, embeddings) and the pieces both share
- ``html``:           report.md as one self-contained HTML file for MLflow's artifact viewer
- ``parent_summary``: the sweep's parent run's summary metrics and description

``xfer.tracking.sweep_report`` reads a sweep from MLflow, writes its report with these and logs
it on the parent run.
"""

from xfer.report.chosen_runs import comparison_run_ids, detail_run_ids, group_run_ids
from xfer.report.figures import frontier_figure
from xfer.report.write import FILE_NAMES, write_report

__all__ = ["FILE_NAMES", "comparison_run_ids", "detail_run_ids", "frontier_figure", "group_run_ids",
           "write_report"]
