"""Questions with a target accuracy: the cheapest configuration of each init that reaches it on
validation (with its test interval), the level every init reaches, and the break-even number of
uses of pretrained weights at that target.

Separate from the frontier: these rank points by cost within a group and write the sentences
the report quotes, where the frontier only marks non-dominated points.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, replace

import numpy as np
import pandas as pd

from xfer.cost_axis import DEFAULT_COST, PRETRAIN, break_even_uses, check_axis
from xfer.errors import UsageError
from xfer.names import TRAIN_MACS
from xfer.uncertainty import (ACCURACY, CI_HIGH, CI_LOW, REACH_TOLERANCE, SELECTION, accuracy_text,
                              percent, reach_on_test, reach_words)


def check_target(target: float | None) -> float | None:
    if target is None:
        return None
    if not (isinstance(target, (int, float)) and 0 < target <= 1):
        raise UsageError(f"target accuracy must be in (0, 1], got {target!r}")
    return float(target)


@dataclass(frozen=True)
class BreakEven:
    """How many uses of the pretrained weights pay for their pretraining, at ``target``:
    ``uses`` = pretrain_macs / (scratch train_macs - pretrained train_macs); inf: never (the
    pretrained fine-tune is not cheaper); nan: unknown."""
    target: float
    uses: float
    pretrain_macs: float
    pretrained_cost: float
    scratch_cost: float
    pretrained_config: str
    scratch_config: str
    sentence: str


@dataclass(frozen=True)
class TargetAnswer:
    """Per init: the cheapest point reaching the target on validation (``reached`` False when
    none does, with the init's best), its test accuracy and interval with ``on_test`` (reaches /
    within noise / falls short), the break-even uses, and the sentences that say so."""
    target: float
    cost: str
    reference: str  # the init the ratios divide by: scratch when present
    table: pd.DataFrame  # init, reached, config, cost, val/test accuracy, interval, on_test, cost_ratio
    sentences: list[str]
    break_even: BreakEven | None = None


def cheapest_reaching(points: pd.DataFrame, target: float, cost: str = DEFAULT_COST,
                      by: str = "init") -> TargetAnswer:
    """For each value of ``by``, the cheapest point whose mean validation accuracy is >= ``target``
    (ties: the more accurate on validation), its cost over the reference init's, and whether
    its test interval confirms the target."""
    target = check_target(target)
    check_axis(cost)
    rows = []
    for name, group in points.groupby(by, sort=True):
        reached = group[group[SELECTION] >= target - REACH_TOLERANCE]
        best = group.sort_values([SELECTION, cost], ascending=[False, True]).iloc[0]
        row = {by: name, "reached": not reached.empty, "best_val_accuracy": best[SELECTION],
               "best_config": best["config"]}
        if not reached.empty:
            hit = reached.sort_values([cost, SELECTION], ascending=[True, False]).iloc[0]
            row.update({"config": hit["config"], "cost": hit[cost], SELECTION: hit[SELECTION],
                        ACCURACY: hit[ACCURACY], **{c: hit.get(c, np.nan) for c in (CI_LOW, CI_HIGH)},
                        "on_test": reach_on_test(hit[ACCURACY], hit.get(CI_LOW, np.nan),
                                                 hit.get(CI_HIGH, np.nan), target),
                        "n_runs": hit["n_runs"], TRAIN_MACS: hit.get(TRAIN_MACS, np.nan),
                        PRETRAIN: hit.get(PRETRAIN, np.nan)})
        rows.append(row)
    table = pd.DataFrame(rows).reindex(columns=[by, "reached", "config", "cost", SELECTION,
                                                ACCURACY, CI_LOW, CI_HIGH, "on_test", "n_runs",
                                                TRAIN_MACS, PRETRAIN, "best_val_accuracy", "best_config"])
    names = list(table[by])
    reference = "scratch" if "scratch" in names else names[0]
    ref = table[table[by] == reference].iloc[0]
    table["cost_ratio"] = table["cost"] / ref["cost"] if ref["reached"] else np.nan
    return TargetAnswer(target, cost, reference, table, _target_sentences(table, by, reference, target, cost),
                        break_even(table, target, by))


def _target_sentences(table: pd.DataFrame, by: str, reference: str, target: float,
                      cost: str) -> list[str]:
    goal = percent(target)
    reached = table[table["reached"]]
    if reached.empty:
        bests = ", ".join(f"{r[by]} {percent(r['best_val_accuracy'])}" for _, r in table.iterrows())
        return [f"No {by} reaches {goal} validation accuracy (best: {bests})."]
    sentences = []
    ref = table[table[by] == reference].iloc[0]
    compared = ref["reached"] and len(reached) > 1  # the ratio sentences name the reference's cost
    for _, row in table.iterrows():
        if not row["reached"]:
            sentences.append(f"{row[by]} never reaches {goal} validation accuracy (its best is "
                             f"{percent(row['best_val_accuracy'])}, {row['best_config']}).")
            continue
        if row[by] == reference and compared:
            continue
        on_test = f"test {_test_words(row, goal)}"
        if row[by] != reference and ref["reached"]:
            sentences.append(f"{row[by]} reaches {goal} validation accuracy at {row['cost_ratio']:.2g}x the "
                             f"{cost} of {reference} ({row['cost']:.3g} vs {ref['cost']:.3g}: "
                             f"{row['config']}, {on_test}; vs {ref['config']}, test {_test_words(ref, goal)}).")
            if not row["on_test"] == ref["on_test"] == "reaches":
                sentences.append(f"The test set does not confirm that both reach {goal}, so the "
                                 f"{row['cost_ratio']:.2g}x holds only within its noise.")
        else:
            sentences.append(f"{row[by]} reaches {goal} validation accuracy at {cost} {row['cost']:.3g} "
                             f"({row['config']}, {on_test}).")
    return sentences


def _test_words(row, goal: str) -> str:
    return (f"{accuracy_text(row[ACCURACY], row[CI_LOW], row[CI_HIGH])}: "
            f"{reach_words(row['on_test'], goal)}")


def break_even(table: pd.DataFrame, target: float, by: str = "init") -> BreakEven | None:
    """Break-even uses of the pretraining for the pair the target query chose (None unless
    both pretrained and scratch are in ``table``); the sentence says why when there is none."""
    if by != "init" or not {"pretrained", "scratch"} <= set(table[by]):
        return None
    rows = table.set_index(by)
    pre, scr = rows.loc["pretrained"], rows.loc["scratch"]
    goal = percent(target)
    nan = math.nan
    if not (pre["reached"] and scr["reached"]):
        who = " and ".join(n for n, r in (("pretrained", pre), ("scratch", scr)) if not r["reached"])
        return BreakEven(target, nan, nan, nan, nan, "", "", f"No break-even at {goal}: {who} never "
                         "reaches it on validation.")
    pretrain, p_cost, s_cost = float(pre[PRETRAIN]), float(pre[TRAIN_MACS]), float(scr[TRAIN_MACS])
    base = BreakEven(target, nan, pretrain, p_cost, s_cost, pre["config"], scr["config"], "")
    if not (math.isfinite(p_cost) and math.isfinite(s_cost)):
        return replace(base, sentence=f"No break-even at {goal}: {TRAIN_MACS} was not logged.")
    if not math.isfinite(pretrain):
        return replace(base, sentence=f"No break-even at {goal}: the pretrained runs logged no "
                                      f"{PRETRAIN}, so what their weights cost is unknown.")
    uses = break_even_uses(pretrain, p_cost, s_cost)
    if math.isinf(uses):
        words = (f"Break-even at {goal}: never. A pretrained fine-tune reaching it costs {p_cost:.3g} "
                 f"{TRAIN_MACS} ({pre['config']}), no less than training from scratch ({s_cost:.3g}, "
                 f"{scr['config']}), so its pretraining ({pretrain:.3g} MACs) is never paid back.")
    else:
        first = math.floor(uses) + 1  # the first whole N at which pretrained is strictly cheaper
        words = (f"Break-even at {goal}: N = {uses:.3g} uses. Pretraining ({pretrain:.3g} MACs) is paid "
                 f"back by fine-tunes that each save {s_cost - p_cost:.3g} {TRAIN_MACS} ({pre['config']} at "
                 f"{p_cost:.3g} vs {scr['config']} at {s_cost:.3g}); counting it, pretrained is cheaper "
                 f"from {first:,} use{'s' if first > 1 else ''} of the weights on.")
    return replace(base, uses=uses, sentence=words)


def common_target(points: pd.DataFrame, by: str = "init") -> float | None:
    """The highest validation accuracy every group reaches (the weakest group's best), None with
    one group or when some group never got a validation image right (every group "reaches" 0:
    nothing to say): the level at which "how much cheaper" has an answer for all of them."""
    bests = points.groupby(by)[SELECTION].max()
    return float(bests.min()) if len(bests) > 1 and bests.min() > 0 else None
