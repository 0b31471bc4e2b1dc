"""The separability audit: identical and scale-only pairs, both ceilings, the empirical check on
rendered pixels, and audit.json as a dataset build and `xfer data audit` write it."""

from __future__ import annotations

import json

import pytest

from xfer.cli import main
from xfer.data.pdf.audit import audit_dataset, audit_entries, format_audit
from xfer.data.pdf.families import FAMILY_NAMES, SEED_PARAMETERS
from xfer.data.pdf.generate import PdfDatasetSpec, image_parameters, plan, write_dataset
from xfer.errors import UsageError

SEED_LABELS = list(FAMILY_NAMES) * 5  # 40 images, 5 per family
SEED_VALUES = [list(SEED_PARAMETERS[name]) for name in SEED_LABELS]
# The `seed` preset, family by family, under each reading of gamma's beta (see families.py)
IDENTICAL = {"rate": {("chi2", "gamma"), ("exponential", "weibull")}, "scale": {("exponential", "weibull")}}
SCALE_ONLY = {"rate": set(), "scale": {("chi2", "gamma")}}
CEILINGS = {("rate", True): 0.75, ("rate", False): 0.75, ("scale", True): 0.875, ("scale", False): 0.75}


def _seed_audit(gamma_beta: str, tick_labels: bool = True, image_size: int = 256) -> dict:
    return audit_entries(SEED_LABELS, SEED_VALUES, observations=100, image_size=image_size,
                         gamma_beta=gamma_beta, tick_labels=tick_labels)


def _pairs(entries: list[dict]) -> set[tuple[str, str]]:
    return {tuple(p["classes"]) for p in entries}


@pytest.mark.parametrize("gamma_beta", ["rate", "scale"])
def test_identical_pairs_of_the_seed_preset_under_each_gamma_reading(gamma_beta):
    audit = _seed_audit(gamma_beta)
    assert _pairs(audit["identical"]) == IDENTICAL[gamma_beta]
    for pair in audit["identical"]:
        assert pair["reason"].startswith("same distribution")
        assert pair["raw_distance"] < 1e-9 and pair["distance"] < 1e-9
        assert pair["affected_fraction"] == 1.0
    assert audit["gamma_beta"] == gamma_beta


@pytest.mark.parametrize("gamma_beta", ["rate", "scale"])
def test_scale_only_pairs_of_the_seed_preset(gamma_beta):
    audit = _seed_audit(gamma_beta)
    assert _pairs(audit["scale_only"]) == SCALE_ONLY[gamma_beta]
    for pair in audit["scale_only"]:
        # gamma(1.5, scale 0.5) is chi2(3) shrunk 4x: the same curve, another density
        assert pair["reason"].startswith("same shape up to location and scale")
        assert pair["distance"] < 1e-9 and pair["raw_distance"] > 0.1


@pytest.mark.parametrize("gamma_beta,tick_labels", list(CEILINGS))
def test_ceiling_and_confusable_pairs_follow_the_rendering(gamma_beta, tick_labels):
    audit = _seed_audit(gamma_beta, tick_labels)
    assert audit["ceilings"] == {"with_tick_labels": CEILINGS[(gamma_beta, True)],
                                 "without_tick_labels": CEILINGS[(gamma_beta, False)]}
    assert audit["bayes_accuracy_ceiling"] == CEILINGS[(gamma_beta, tick_labels)]
    assert audit["tick_labels"] is tick_labels
    # confusable: identical pairs, and scale-only ones only when no tick labels show the scale
    expected = IDENTICAL[gamma_beta] | (set() if tick_labels else SCALE_ONLY[gamma_beta])
    assert _pairs(audit["confusable"]) == expected
    assert set(audit) >= {"confusable", "bayes_accuracy_ceiling", "method", "distance_threshold",
                          "identical", "scale_only", "ceilings", "tick_labels", "gamma_beta", "empirical"}
    assert all(set(p) >= {"classes", "reason", "distance"} for p in audit["confusable"])


def test_ceiling_uses_the_largest_class_in_an_indistinguishable_group():
    # n = 100: counts 13 (beta, chi2, exponential, gamma), 12 (laplace, normal, uniform, weibull);
    # groups {chi2 13, gamma 13} and {exponential 13, weibull 12} each answer their larger class
    labels = [FAMILY_NAMES[f] for f, _ in plan(100)]
    values = [list(SEED_PARAMETERS[name]) for name in labels]
    audit = audit_entries(labels, values, observations=100, image_size=256)
    assert audit["bayes_accuracy_ceiling"] == pytest.approx((13 + 13 + 13 + 12 + 12 + 12) / 100)


def test_location_scale_lookalikes_are_confusable_only_without_tick_labels():
    # weibull(scale 2, shape 1) is exponential(scale 2): exponential(scale 0.5)'s curve at 4x
    labels, values = ["exponential", "weibull", "normal"], [[0.5], [2.0, 1.0], [0.0, 1.0]]
    with_ticks = audit_entries(labels, values, observations=100, image_size=256)
    assert with_ticks["confusable"] == [] and with_ticks["bayes_accuracy_ceiling"] == 1.0
    assert _pairs(with_ticks["scale_only"]) == {("exponential", "weibull")}
    without = audit_entries(labels, values, observations=100, image_size=256, tick_labels=False)
    (pair,) = without["confusable"]
    assert pair["classes"] == ["exponential", "weibull"] and pair["category"] == "scale_only"
    assert without["bayes_accuracy_ceiling"] == pytest.approx(2 / 3)


def test_axis_ranges_within_a_pixel_are_identical_even_with_tick_labels():
    # weibull with shape 1 is an exponential: scale 0.5005 draws exponential(0.5)'s curve on axes
    # a tenth of a pixel wider (the same picture, ticks included); scale 0.6 on axes 20% wider
    labels = ["exponential", "weibull", "weibull"]
    audit = audit_entries(labels, [[0.5], [0.5005, 1.0], [0.6, 1.0]], observations=100, image_size=256)
    (identical,) = audit["identical"]
    assert identical["reason"].startswith("same curve and axis ranges within one pixel")
    assert identical["raw_distance"] > 1e-6  # not the same density, though the same picture
    assert identical["affected_fraction"] == pytest.approx(2 / 3)  # exponential + one weibull
    (scale_only,) = audit["scale_only"]
    assert scale_only["affected_fraction"] == pytest.approx(2 / 3)  # weibull(0.6) + exponential
    assert audit["ceilings"] == {"with_tick_labels": pytest.approx(2 / 3),
                                 "without_tick_labels": pytest.approx(2 / 3)}


def _varied(n: int) -> tuple[list[str], list[list[float]]]:
    return image_parameters("varied", 0, n)


@pytest.mark.parametrize("gamma_beta", ["rate", "scale"])
def test_varied_preset_is_distinguishable_at_256px(gamma_beta):
    labels, values = _varied(800)
    audit = audit_entries(labels, values, observations=100, image_size=256, gamma_beta=gamma_beta)
    assert audit["distinct_distributions"] == 800
    assert audit["confusable"] == [] and audit["identical"] == []
    assert audit["ceilings"]["with_tick_labels"] == 1.0
    assert audit["ceilings"]["without_tick_labels"] >= 0.995
    # at 32 px a pixel is 4% of the axes: some near-symmetric betas draw gamma's spike at 0,
    # which only the axis ranges (beta's [0, 1]) tell apart
    small = audit_entries(labels, values, observations=100, image_size=32, gamma_beta=gamma_beta)
    assert 0.95 < small["ceilings"]["without_tick_labels"] < 1.0
    assert _pairs(small["scale_only"]) == {("beta", "gamma")}
    assert small["bayes_accuracy_ceiling"] == 1.0


# --- the empirical check, on datasets as `xfer data pdf` writes them --------------------------

PER_CLASS = 64  # 32 to train, 32 scored per class: ~1 s at 64 px


@pytest.fixture(scope="module")
def datasets(tmp_path_factory) -> dict:
    """Seed-preset datasets at 64 px: rate with tick labels, scale with and without."""
    root = tmp_path_factory.mktemp("audit")
    built = {}
    for gamma_beta, tick_labels in (("rate", True), ("scale", True), ("scale", False)):
        spec = PdfDatasetSpec(n=16, preset="seed", image_size=64, gamma_beta=gamma_beta,
                              tick_labels=tick_labels)
        built[(gamma_beta, tick_labels)], _ = write_dataset(spec, root / spec.key, workers=1)
    return built


@pytest.mark.slow  # over 4 s of CPU: left out of make test-fast
@pytest.mark.parametrize("gamma_beta,tick_labels", [("rate", True), ("scale", True), ("scale", False)])
def test_empirical_check_agrees_with_the_analytic_categories(datasets, gamma_beta, tick_labels):
    audit = audit_dataset(datasets[(gamma_beta, tick_labels)], write=False, empirical_per_class=PER_CLASS)
    # the settings come from dataset.json
    assert (audit["gamma_beta"], audit["tick_labels"]) == (gamma_beta, tick_labels)
    assert audit["bayes_accuracy_ceiling"] == CEILINGS[(gamma_beta, tick_labels)]
    empirical = audit["empirical"]
    assert empirical["per_class"] == PER_CLASS and empirical["image_size"] == 64
    assert len(empirical["pairs"]) == 28 and empirical["disagreements"] == []
    confusable = _pairs(audit["confusable"])
    for pair in empirical["pairs"]:
        expected = "chance" if tuple(pair["classes"]) in confusable else "separable"
        assert (pair["expected"], pair["verdict"], pair["agrees"]) == (expected, expected, True), pair
        assert pair["ci_low"] <= pair["accuracy"] <= pair["ci_high"]
        if expected == "chance":
            assert pair["ci_low"] <= 0.5 <= pair["ci_high"]
    # the scale-only pair: told apart by its tick labels, at chance without them
    if gamma_beta == "scale":
        chi2_gamma = next(p for p in empirical["pairs"] if p["classes"] == ["chi2", "gamma"])
        assert (chi2_gamma["accuracy"] >= 0.9) is tick_labels


@pytest.mark.parametrize("gamma_beta,tick_labels", [("rate", True), ("scale", True), ("scale", False)])
def test_the_build_writes_the_audit_of_its_own_rendering(datasets, gamma_beta, tick_labels):
    # generate.py audits before dataset.json exists, so it must pass its settings explicitly
    written = json.loads((datasets[(gamma_beta, tick_labels)] / "audit.json").read_text())
    assert (written["gamma_beta"], written["tick_labels"]) == (gamma_beta, tick_labels)
    assert written["bayes_accuracy_ceiling"] == CEILINGS[(gamma_beta, tick_labels)]
    assert _pairs(written["confusable"]) == IDENTICAL[gamma_beta] | (
        set() if tick_labels else SCALE_ONLY[gamma_beta])
    if written["empirical"] is not None:
        assert written["empirical"]["image_size"] == 64 and written["empirical"]["disagreements"] == []


def test_a_disagreement_is_flagged(datasets, monkeypatch):
    # an audit that (wrongly) calls every pair separable: the identical pairs must disagree
    import xfer.data.pdf.audit as audit_module

    real = audit_module._analyse

    def wrong(*args):
        audit, expected = real(*args)
        return audit, {pair: "separable" for pair in expected}

    monkeypatch.setattr(audit_module, "_analyse", wrong)
    audit = audit_dataset(datasets[("rate", True)], write=False, empirical_per_class=PER_CLASS)
    assert _pairs(audit["empirical"]["disagreements"]) == IDENTICAL["rate"]
    text = format_audit(audit)
    assert "2 disagreement(s)" in text and "DISAGREES: expected separable" in text


def test_format_prints_both_ceilings_and_marks_the_configured_one():
    text = format_audit(_seed_audit("scale", tick_labels=False))
    assert text.startswith("Bayes accuracy ceiling: 0.7500")
    assert "with tick labels:    0.8750\n" in text
    assert "without tick labels: 0.7500  <- as this dataset is drawn" in text
    assert "exponential ~ weibull" in text and "chi2 ~ gamma" in text
    assert "Empirical check: skipped" in text


def test_empirical_check_is_skipped_on_request(datasets):
    audit = audit_dataset(datasets[("rate", True)], write=False, empirical_per_class=0)
    assert audit["empirical"] is None


def test_audit_takes_the_settings_explicitly_before_dataset_json_exists(datasets, tmp_path):
    # what a build does: metadata.json written, dataset.json not yet
    import shutil

    partial = tmp_path / "partial"
    shutil.copytree(datasets[("scale", False)], partial)
    (partial / "dataset.json").unlink()
    with pytest.raises(UsageError, match="not a complete PDF-plot dataset"):
        audit_dataset(partial)
    defaults = audit_dataset(partial, write=False, require_complete=False, empirical_per_class=0)
    assert defaults["gamma_beta"] == "scale"  # read from the metadata's entries
    assert defaults["tick_labels"] is True  # unknown: the default
    audit = audit_dataset(partial, write=True, require_complete=False, gamma_beta="scale",
                          tick_labels=False, preset="seed", seed=0, image_size=64, observations=100,
                          empirical_per_class=8)
    written = json.loads((partial / "audit.json").read_text())
    assert written == json.loads(json.dumps(audit))
    assert written["bayes_accuracy_ceiling"] == 0.75 and written["empirical"]["per_class"] == 8


def test_audit_refuses_a_dataset_of_an_older_generator(datasets, tmp_path):
    import shutil

    old = tmp_path / "old"
    shutil.copytree(datasets[("rate", True)], old)
    meta = json.loads((old / "dataset.json").read_text())
    (old / "dataset.json").write_text(json.dumps({**meta, "generator_version": 1}))
    with pytest.raises(UsageError, match="generator version 1"):
        audit_dataset(old, write=False, empirical_per_class=0)


def test_audit_rejects_a_folder_that_is_not_a_dataset(tmp_path):
    with pytest.raises(UsageError, match="not a complete PDF-plot dataset"):
        audit_dataset(tmp_path)


# --- the command line --------------------------------------------------------------------------

def test_xfer_data_audit_writes_the_empirical_check(datasets, tmp_path, capsys):
    import shutil

    folder = tmp_path / "d"
    shutil.copytree(datasets[("scale", True)], folder)
    assert main(["data", "audit", str(folder), "--per-class", "8"]) == 0
    out = capsys.readouterr().out
    assert "Bayes accuracy ceiling: 0.8750" in out and "<- as this dataset is drawn" in out
    assert "Scale-only" in out and "chi2 ~ gamma" in out and "Empirical check" in out
    written = json.loads((folder / "audit.json").read_text())
    assert written["empirical"]["per_class"] == 8
    assert main(["data", "audit", str(folder), "--no-empirical"]) == 0
    assert json.loads((folder / "audit.json").read_text())["empirical"] is None


BAD_INPUTS = {
    "unknown gamma reading": (["data", "pdf", "--n", "8", "--gamma-beta", "bogus", "--out", "{tmp}/new"],
                              "gamma-beta"),
    "per-class below 4": (["data", "audit", "{tmp}", "--per-class", "3"], "--per-class must be"),
    "per-class not a number": (["data", "audit", "{tmp}", "--per-class", "many"], "--per-class"),
    "per-class with no-empirical": (["data", "audit", "{tmp}", "--per-class", "8", "--no-empirical"],
                                    "cannot go with --no-empirical"),
}


@pytest.mark.parametrize("case", list(BAD_INPUTS))
def test_bad_input_is_one_line_exit_2(case, tmp_path, capsys):
    args, expected = BAD_INPUTS[case]
    argv = [a.format(tmp=tmp_path) for a in args]
    try:
        code = main(argv)
    except SystemExit as exc:  # argparse's own errors exit from parse_args
        code = exc.code
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 2 and len(err) == 1 and expected in err[0], err
    assert "Traceback" not in err[0]
    assert list(tmp_path.iterdir()) == []
