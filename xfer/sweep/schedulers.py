"""The trial schedulers a sweep runs: ASHA within groups of comparable trials, or FIFO.

Ray's AsyncHyperBandScheduler compares every trial with every other at its rungs. Over a
space that sweeps dataset sizes and inits that judges a trial on 100 images against one on
10,000 (on ~10 validation images against ~1,000) and stops small-n and scratch trials for
what they are, not for how they train; the studies ran every configuration to its budget.
``GroupedASHA`` keeps one ASHA per group of trials with equal values of ``group_keys`` (read
through ``resolve_trial``, so a value an arm sets counts) and hands each callback to the
trial's group: rungs compare a trial only with its own group. Cost: one ASHA's bookkeeping
per group (a dict of rung values each), nothing per result beyond the group lookup.

What to run is decided before Ray starts, in ``Preset.scheduler_plan`` (xfer.sweep.study,
free of Ray); ``build_scheduler`` turns that plan into a Ray scheduler.
"""

from __future__ import annotations

from collections.abc import Hashable
from typing import Optional

from ray.tune.result import DEFAULT_METRIC
from ray.tune.schedulers import ASHAScheduler, FIFOScheduler, TrialScheduler

from xfer.sweep.study import SchedulerPlan, resolve_trial

SELECTION_METRIC = "val_accuracy"  # ASHA reads validation only; test accuracy is reported, never used


class GroupedASHA(FIFOScheduler):
    """Asynchronous successive halving, one ASHA per group of trials with equal
    ``group_keys`` values; ``asha_kwargs`` are ASHAScheduler's (``metric``, ``mode``,
    ``time_attr``, ``max_t``, ``grace_period``, ``reduction_factor``, ...). No keys: one group,
    i.e. plain ASHA. Trials are started in submission order (FIFOScheduler's choice), as ASHA
    does."""

    def __init__(self, group_keys: tuple[str, ...] = (), **asha_kwargs):
        super().__init__()
        self.group_keys = tuple(group_keys)
        self._metric = asha_kwargs.pop("metric", None)
        self._mode = asha_kwargs.pop("mode", None)
        self._asha_kwargs = asha_kwargs
        ASHAScheduler(**asha_kwargs)  # bad settings fail here, not at the first trial
        self._groups: dict[tuple, ASHAScheduler] = {}
        self._group_of: dict[str, tuple] = {}  # trial_id -> group key
        self._num_stopped = 0

    # --- groups --------------------------------------------------------------------------------

    def group_key(self, trial) -> tuple:
        """The trial's group: its values of ``group_keys`` (missing ones read as None)."""
        config = resolve_trial(trial.config)
        return tuple((key, _hashable(config.get(key))) for key in self.group_keys)

    def _asha(self, trial) -> ASHAScheduler:
        group = self._group_of.get(trial.trial_id)
        if group is None:
            group = self._group_of[trial.trial_id] = self.group_key(trial)
        if group not in self._groups:
            self._groups[group] = ASHAScheduler(metric=self._metric, mode=self._mode, **self._asha_kwargs)
        return self._groups[group]

    # --- TrialScheduler ------------------------------------------------------------------------

    def set_search_properties(self, metric: Optional[str], mode: Optional[str], **spec) -> bool:
        # ASHA's rule: a metric or mode set here may not override one given to the constructor.
        # Groups are made at their first trial, after Tune has called this, and get both.
        if (self._metric and metric) or (self._mode and mode):
            return False
        self._metric = metric or self._metric
        self._mode = mode or self._mode
        if self._metric is None and self._mode:
            self._metric = DEFAULT_METRIC
        for asha in self._groups.values():
            asha.set_search_properties(metric, mode, **spec)
        return True

    def on_trial_add(self, tune_controller, trial) -> None:
        # a trial requeued after an error is added again: its group is read afresh
        self._group_of.pop(trial.trial_id, None)
        self._asha(trial).on_trial_add(tune_controller, trial)

    def on_trial_error(self, tune_controller, trial) -> None:
        self._asha(trial).on_trial_error(tune_controller, trial)

    def on_trial_result(self, tune_controller, trial, result: dict) -> str:
        action = self._asha(trial).on_trial_result(tune_controller, trial, result)
        if action == TrialScheduler.STOP:
            self._num_stopped += 1
        return action

    def on_trial_complete(self, tune_controller, trial, result: dict) -> None:
        self._asha(trial).on_trial_complete(tune_controller, trial, result)
        self._group_of.pop(trial.trial_id, None)

    def on_trial_remove(self, tune_controller, trial) -> None:
        self._asha(trial).on_trial_remove(tune_controller, trial)
        self._group_of.pop(trial.trial_id, None)

    def debug_string(self) -> str:
        keys = ", ".join(self.group_keys) or "one pool"
        lines = [f"Using ASHA per ({keys}): {len(self._groups)} groups, num_stopped={self._num_stopped}"]
        for group, asha in self._groups.items():
            name = ", ".join(f"{key}={value}" for key, value in group) or "all trials"
            lines.append(f"{name}: " + asha.debug_string().replace("\n", "; "))
        return "\n".join(lines)

    # No save/restore: Tuner.restore brings the scheduler back from the pickled TuneConfig,
    # empty, and re-adds every trial (Tune never calls a scheduler's save/restore).


def _hashable(value):
    return value if isinstance(value, Hashable) else repr(value)


def build_scheduler(plan: SchedulerPlan) -> TrialScheduler:
    """The Ray scheduler for a plan: ASHA over epochs on validation accuracy, per the plan's
    groups, or FIFO."""
    if plan.kind != "asha":
        return FIFOScheduler()
    return GroupedASHA(plan.group_keys, time_attr="epoch", metric=SELECTION_METRIC, mode="max",
                       max_t=plan.max_t, grace_period=plan.grace_period,
                       reduction_factor=plan.reduction_factor)
