"""The names a trial's record is written and read under: MLflow params, metrics and tags, and the
keys of the result ``xfer.train.fit`` returns and reports.

Writers (``xfer.train``, ``xfer.sweep``) and readers (``xfer.tracking``, ``xfer.frontier``, the
report) import them from here, so a renamed metric changes in one place and a reader cannot
drift from its writer. Plain strings and tuples only: this module imports nothing, so the
torch-only trial path and the MLflow-free report can both use it.

tests/test_names.py holds the lists to the code: every key a tiny ``fit`` returns or reports is
declared here, the param lists cover TrialConfig's fields, and no tag name is spelled out
elsewhere in xfer/.
"""

from __future__ import annotations

# --- metrics: one value per epoch ---------------------------------------------------------------

EPOCH = "epoch"  # the epoch's number, from 1: the step of every per-epoch MLflow metric
TRAIN_LOSS = "train_loss"
TRAIN_ACCURACY = "train_accuracy"
VAL_LOSS = "val_loss"
VAL_ACCURACY = "val_accuracy"  # what every choice reads (ASHA, the searchers, the frontier)
LR = "lr"  # the learning rate of the epoch's first step
EPOCH_TIME_S = "epoch_time_s"
IMAGES_PROCESSED = "images_processed"  # cumulative
# What fit reports once per epoch (xfer.train explains each).
EPOCH_METRICS = (EPOCH, TRAIN_LOSS, TRAIN_ACCURACY, VAL_LOSS, VAL_ACCURACY, LR, EPOCH_TIME_S,
                 IMAGES_PROCESSED)
# What the sweep's logger records per epoch, step = epoch: the epoch is the step itself, and
# images_processed is cumulative, so its final value says it all.
EPOCH_STEP_METRICS = (TRAIN_LOSS, TRAIN_ACCURACY, VAL_LOSS, VAL_ACCURACY, EPOCH_TIME_S, LR)
# Metrics logged under another name. MLflow keeps params and metrics apart, but tables of runs
# put both in one row, where a metric "lr" would shadow the param "lr".
METRIC_RENAMES = {LR: "learning_rate"}
# The per-epoch curves a report reads back by default (the learning rate is a setting, not a result).
HISTORY_METRICS = (TRAIN_LOSS, TRAIN_ACCURACY, VAL_LOSS, VAL_ACCURACY, EPOCH_TIME_S)
# The latest step of this metric is the latest epoch a run has logged (every epoch logs it).
STEP_MARKER = VAL_ACCURACY

# --- metrics: one value per trial (at its end, or as of an epoch milestone) ----------------------

TEST_ACCURACY = "test_accuracy"  # reported with its interval, never maximised
TEST_ACCURACY_CI_LOW = "test_accuracy_ci_low"  # Wilson 95% over the test images
TEST_ACCURACY_CI_HIGH = "test_accuracy_ci_high"
TEST_LOSS = "test_loss"
EPOCHS_RUN = "epochs_run"  # < the epochs param when early stopping or ASHA ended the trial
WALL_TIME_S = "wall_time_s"
TRAIN_TIME_S = "train_time_s"
MACS_PER_IMAGE = "macs_per_image"
BACKWARD_MACS_PER_IMAGE = "backward_macs_per_image"
TRAIN_MACS = "train_macs"  # forward + backward through the trained layers, x images processed
PRETRAIN_MACS = "pretrain_macs"  # what producing the starting weights cost (0 for scratch)
MACS_EPOCHS_PER_BATCH = "macs_epochs_per_batch"
GPU_SECONDS = "gpu_seconds"  # wall time x the GPUs the trial held (a fraction when shared)
N_VAL, N_TEST = "n_val", "n_test"
TEST_SCORES = (TEST_ACCURACY, "test_precision_macro", "test_recall_macro", "test_f1_macro",
               "test_auc_roc_ovr", TEST_LOSS)
COSTS = (WALL_TIME_S, TRAIN_TIME_S, MACS_PER_IMAGE, TRAIN_MACS, MACS_EPOCHS_PER_BATCH, GPU_SECONDS)
# Logged once per run at step 0 (mlflow_logger says why step 0).
FINAL_METRICS = (*TEST_SCORES, EPOCHS_RUN, *COSTS, IMAGES_PROCESSED,
                 TEST_ACCURACY_CI_LOW, TEST_ACCURACY_CI_HIGH, N_VAL, N_TEST, PRETRAIN_MACS,
                 BACKWARD_MACS_PER_IMAGE)
# The cost axes a frontier can be drawn on (the report's --cost).
COST_METRICS = (TRAIN_MACS, WALL_TIME_S, GPU_SECONDS, MACS_EPOCHS_PER_BATCH)
# Metric names made per run: one silhouette per embedded stage and kind ("features", "2d"),
# and MLflow's system metrics, per epoch.
SILHOUETTE_METRIC = "silhouette_{stage}_{kind}"
SYSTEM_METRIC_PREFIX = "system/"

# --- the rest of fit's result: records, provenance ----------------------------------------------

HISTORY = "history"  # every epoch's EPOCH_METRICS so far
CONFUSION_MATRIX = "confusion_matrix"
ROC_CURVE = "roc_curve"
CLASSES = "classes"
WEIGHTS = "weights"  # {"source", "sha256", "meta"}; the sweep logs its sha256 and origin as params
EMBEDDINGS = "embeddings"
MILESTONES = "milestones"  # {epoch: the MILESTONE_KEYS as of that epoch}
TEST_PREDICTIONS = "test_predictions"
N_TRAIN = "n_train"
INPUT_SIZE = "input_size"
SPLIT = "split"
TEST_SET_SHA256 = "test_set_sha256"
PRETRAIN_MACS_BASIS = "pretrain_macs_basis"
DATASET = "dataset"  # fit: the dataset's identity; a sweep's report: its name
# Every key fit's result can hold; the trial adds those in TRIAL_REPORT_KEYS to its reports.
RESULT_KEYS = (*FINAL_METRICS, TRAIN_LOSS, TRAIN_ACCURACY, VAL_LOSS, VAL_ACCURACY, N_TRAIN, INPUT_SIZE,
               SPLIT, TEST_SET_SHA256, PRETRAIN_MACS_BASIS, TEST_PREDICTIONS, HISTORY, CONFUSION_MATRIX, ROC_CURVE, CLASSES,
               "config", WEIGHTS, "normalization", DATASET, MILESTONES, "device", "git_sha",
               "packages", EMBEDDINGS)
# The part of the result a sweep's per-epoch report carries once the test split is scored: all
# but what the run's params and artifacts already hold (config, device, packages...).
SWEEP_REPORT_KEYS = (TEST_ACCURACY, TEST_ACCURACY_CI_LOW, TEST_ACCURACY_CI_HIGH, *TEST_SCORES[1:],
                     EPOCHS_RUN, *COSTS, N_TRAIN, N_VAL, N_TEST, INPUT_SIZE, HISTORY,
                     CONFUSION_MATRIX, ROC_CURVE, CLASSES, WEIGHTS, EMBEDDINGS, MILESTONES,
                     BACKWARD_MACS_PER_IMAGE, PRETRAIN_MACS, PRETRAIN_MACS_BASIS, SPLIT,
                     TEST_SET_SHA256, TEST_PREDICTIONS)
# What a milestone keeps of the result as of its epoch: the numbers a run with that budget
# reports, without the history (the full run's holds it) or the provenance (the same).
MILESTONE_KEYS = (TEST_ACCURACY, TEST_ACCURACY_CI_LOW, TEST_ACCURACY_CI_HIGH, *TEST_SCORES[1:],
                  EPOCHS_RUN, *COSTS, IMAGES_PROCESSED, TRAIN_LOSS, TRAIN_ACCURACY, VAL_LOSS,
                  VAL_ACCURACY, CONFUSION_MATRIX, ROC_CURVE, TEST_PREDICTIONS, PRETRAIN_MACS)
# What a Ray trial adds to fit's reports (xfer.sweep.trial): where it ran and on what.
NODE_IP = "node_ip"
DATASET_PATH = "dataset_path"
IMAGE_SIZE = "image_size"
DATA_SKIPPED_FILES = "data_skipped_files"  # an image folder's unreadable files
WEIGHTS_SHA256 = "weights_sha256"
WEIGHTS_ORIGIN = "weights_origin"
SYSTEM_METRICS = "system_metrics"  # [{"epoch": e, "system/...": value, ...}]
TRIAL_REPORT_KEYS = (GPU_SECONDS, MILESTONES, DATASET_PATH, NODE_IP, DATASET, IMAGE_SIZE,
                     DATA_SKIPPED_FILES, WEIGHTS_SHA256, WEIGHTS_ORIGIN, SYSTEM_METRICS)

# --- params of a trial's run ----------------------------------------------------------------------

# Listed, not derived from TrialConfig's fields: TrialConfig lives in xfer.train, which imports
# torch, and the readers of these names (the report, xfer.tracking) must not load torch (~2 s,
# and absent where reports are made). tests/test_names.py checks the lists cover its fields.
# TrialConfig fields logged as params under their own name.
CONFIG_FIELD_PARAMS = ("model", "init", "train_layers", "weights", "head", IMAGE_SIZE, "epochs",
                       "batch_size", LR, "optimizer", "schedule", "weight_decay", "seed",
                       "early_stopping_patience", "augment", "rotate_degrees", "lr_constant_epochs",
                       "lr_decay_rate", "plateau_patience", "plateau_factor", "label_smoothing",
                       EMBEDDINGS, "momentum", "resize_mode")
# TrialConfig fields that are no param: data and n are logged as dataset_path and dataset_size;
# device and eval_batch_size change no result; report_test_each_epoch is the sweep's mechanics;
# epoch_milestones is the tag EPOCH_MILESTONES_TAG; embedding_points shapes the embeddings
# artifact only.
CONFIG_FIELDS_NOT_PARAMS = ("data", "n", "device", "eval_batch_size", "report_test_each_epoch",
                            "embedding_points", "epoch_milestones")
DATASET_SIZE = "dataset_size"
# Params a sweep knows besides TrialConfig's (its trial's resolved config, sized data, resources).
SWEEP_PARAMS = (DATASET, DATASET_SIZE, N_TRAIN, DATASET_PATH, WEIGHTS_SHA256, INPUT_SIZE,
                "cpus_per_trial", "gpus_per_trial", "arm")
# Logged when a trial's run opens.
TRIAL_PARAMS = CONFIG_FIELD_PARAMS + SWEEP_PARAMS
# Logged as soon as a report carries them: only the trial knows them (resolved weights, split
# sizes, input size).
PARAMS_KNOWN_AFTER_START = (DATASET, IMAGE_SIZE, N_TRAIN, INPUT_SIZE, WEIGHTS_SHA256, WEIGHTS_ORIGIN,
                            DATASET_PATH, DATA_SKIPPED_FILES, SPLIT, TEST_SET_SHA256,
                            PRETRAIN_MACS_BASIS)
# Recipe knobs a study may leave at TrialConfig's default; logged with that default then, so a
# run always says which momentum and resize it trained with (Keras' SGD has momentum 0, ours 0.9).
DEFAULTED_PARAMS = ("momentum", "resize_mode")
# Params that name a run's inputs rather than what it was asked to do (the frontier groups seeds
# by the rest). test_set_sha256 too: under the 80:10:10 split it follows dataset_size (already a
# config column), and it must never split the seeds of one configuration into separate points.
RUN_IDENTITY_PARAMS = ("seed", DATASET_PATH, WEIGHTS_SHA256, WEIGHTS_ORIGIN, TEST_SET_SHA256,
                       PRETRAIN_MACS_BASIS)
# What defines a configuration when the caller does not say; whichever are in the table count.
# `seed` is left out on purpose (it is what gets aggregated), and so are params that only
# identify a run's inputs (dataset_path, weights_sha256).
CONFIG_PARAMS = ("model", "init", "train_layers", "weights", "head", DATASET, DATASET_SIZE, N_TRAIN,
                 IMAGE_SIZE, "epochs", EPOCHS_RUN, "batch_size", LR, "optimizer", "weight_decay",
                 "schedule", "early_stopping_patience", "label_smoothing", "augment")

# The parent run's summary metrics (xfer.report.parent_summary writes them, step 0)
BEST_VAL_PREFIX = "best_val_accuracy_"  # + condition: the best configuration's validation accuracy
CHOSEN_TEST_PREFIX = "chosen_test_accuracy_"  # + condition: that configuration's test accuracy
GAIN = "pretraining_gain"  # pretrained - scratch test accuracy (fraction), with _ci_low/_ci_high
FRONTIER_SIZE = "frontier_size"  # configurations on the overall frontier, on the report's cost axis
TOTAL_TRAIN_MACS = "total_train_macs"  # sum of train_macs over the sweep's trials
TOTAL_TRIAL_SECONDS = "total_trial_seconds"  # sum of wall_time_s over the sweep's trials
FINISHED_TRIALS, FAILED_TRIALS = "finished_trials", "failed_trials"
# The data-scaling forecast (xfer.forecast) at the largest budget: the dataset size from which
# scratch stays within 1 point of pretrained, with _ci_low/_ci_high (left out when not within 10x
# the largest size: a non-finite metric), whether it is within that horizon (1/0), and the largest
# hold-out error of the sweep's curves (fraction).
CATCH_UP_N = "scratch_catch_up_dataset_size"
FORECAST_AT = "forecast_at"  # a parent param: "400,1000", the full grid's sizes a cheap sweep forecasts
CATCH_UP_WITHIN = "scratch_catch_up_within_horizon"
FORECAST_HOLDOUT_ERROR = "forecast_holdout_abs_error"

# A transferability run's metrics (xfer.transferability.score_transferability; its params are
# model, init, weights, dataset_size, image_size)
TRANSFER_METRICS = ("logme", "knn_accuracy", "knn_k", "feature_dim", "n_train", "n_val", "embed_macs",
                    "embed_seconds", "score_seconds", "wall_time_s")

# --- tags ------------------------------------------------------------------------------------------

TAG_PREFIX = "xfer."  # every tag xfer defines starts so
SWEEP_TAG = "xfer.sweep_id"  # on the parent and every child: which sweep
ROLE_TAG = "xfer.role"  # ROLES: what the run stands for
ROLE_PARENT, ROLE_TRIAL, ROLE_MILESTONE = "parent", "trial", "milestone"
ROLE_TRANSFERABILITY = "transferability"  # a backbone's scores before fine-tuning (--score-transferability)
TRANSFER_KEY_TAG = "xfer.transferability_of"  # such a run: "<model>|<init>|<weights>|n<size>", found again by it
TRIAL_TAG = "xfer.trial_id"  # a trial's run: Tune's trial id
ERROR_TAG = "xfer.error"  # a FAILED run: the end of its traceback
INTERRUPTED_TAG = "xfer.interrupted"  # on the runs an interrupt ended KILLED: SIGINT or SIGTERM,
DRIVER_LOST = "driver lost"  # or this: --resume ended a run that a SIGKILLed driver left RUNNING
MILESTONE_OF_TAG = "xfer.milestone_of"  # an epoch milestone's run: the trial it was measured in
MILESTONE_EPOCH_TAG = "xfer.milestone_epoch"  # an epoch milestone's run: its epoch
EPOCH_MILESTONES_TAG = "xfer.epoch_milestones"  # on a trial's run: "10,20"
NODE_TAG = "xfer.node_ip"  # the Ray node that ran the trial's latest epoch
PRESET_TAG = "xfer.preset"  # the parent: the study's preset
GIT_SHA_TAG = "xfer.git_sha"  # the parent: the commit, "-dirty" when the tree had changes
GAIN_AT_TAG = "xfer.pretraining_gain_at"  # the parent: which cell of the gain table the metric is
STORE_CHECKED_TAG = "xfer.store_checked"  # an experiment: when a sweep last checked it could write
XFER_TAGS = (SWEEP_TAG, ROLE_TAG, TRIAL_TAG, ERROR_TAG, INTERRUPTED_TAG, MILESTONE_OF_TAG,
             MILESTONE_EPOCH_TAG, EPOCH_MILESTONES_TAG, NODE_TAG, PRESET_TAG, GIT_SHA_TAG,
             GAIN_AT_TAG, STORE_CHECKED_TAG, TRANSFER_KEY_TAG)

# MLflow's own tags, which its UI reads; xfer sets them where mlflow.start_run would.
PARENT_TAG = "mlflow.parentRunId"  # nests a child run under the sweep's parent in the UI
SOURCE_NAME_TAG = "mlflow.source.name"
SOURCE_TYPE_TAG = "mlflow.source.type"  # LOCAL or JOB
SOURCE_COMMIT_TAG = "mlflow.source.git.commit"
USER_TAG = "mlflow.user"
NOTE_TAG = "mlflow.note.content"  # a run's description, rendered as markdown by the UI
DATASET_CONTEXT_TAG = "mlflow.data.context"  # an input tag: what a dataset was used for
SHARED_VIEW_TAG_PREFIX = "mlflow.sharedViewState."  # an experiment tag: the UI's shared views
MLFLOW_TAGS = (PARENT_TAG, SOURCE_NAME_TAG, SOURCE_TYPE_TAG, SOURCE_COMMIT_TAG, USER_TAG, NOTE_TAG,
               DATASET_CONTEXT_TAG, SHARED_VIEW_TAG_PREFIX)
