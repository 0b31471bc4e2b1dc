"""The architecture's one rule that a test can hold: the training core never imports the
orchestrator. `xfer train` and `fit` must run where only torch is installed (a GPU box, a
notebook), and imports flow one way: sweep -> train -> data, models, metrics, cost."""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

import pytest

XFER = Path(__file__).resolve().parent.parent / "xfer"
CORE = ["xfer.train", "xfer.pretrain", "xfer.models", "xfer.weights", "xfer.metrics", "xfer.cost",
        "xfer.batches", "xfer.data.tensors", "xfer.data.pdf.generate", "xfer.data.pdf.audit",
        "xfer.frontier", "xfer.embeddings", "xfer.report.sections", "xfer.stats",
        "xfer.uncertainty", "xfer.report.conclusions", "xfer.report.figures", "xfer.lite_weights",
        "xfer.gpu_probe", "xfer.names", "xfer.cost_axis", "xfer.configurations", "xfer.pareto",
        "xfer.reach", "xfer.pretraining_gain", "xfer.weight_sources", "xfer.imagenet_weights"]


def test_importing_the_core_loads_neither_ray_nor_mlflow_nor_optuna():
    code = ("import sys\n" + "".join(f"import {m}\n" for m in CORE)
            + "print(sorted(m for m in ('ray', 'mlflow', 'optuna') if m in sys.modules))")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "[]"


def _imports(path: Path) -> set[str]:
    names = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            names |= {a.name for a in node.names}
        elif isinstance(node, ast.ImportFrom) and node.module:
            names.add(node.module)
    return names


@pytest.mark.parametrize("module", sorted(p.relative_to(XFER).as_posix() for p in XFER.rglob("*.py")))
def test_only_the_sweep_and_tracking_layers_import_ray_or_mlflow(module):
    imported = _imports(XFER / module)
    orchestration = {n for n in imported if n.split(".")[0] in ("ray", "mlflow", "optuna")}
    if module.startswith(("sweep/", "tracking/")):
        return
    assert not orchestration, f"xfer/{module} imports {sorted(orchestration)}"


@pytest.mark.parametrize("module", ["train.py", "models.py", "weights.py", "metrics.py", "cost.py",
                                    "batches.py", "data/tensors.py", "frontier.py", "stats.py",
                                    "uncertainty.py", "lite_weights.py", "names.py", "cost_axis.py",
                                    "configurations.py", "pareto.py", "reach.py", "pretraining_gain.py",
                                    "weight_sources.py", "imagenet_weights.py"])
def test_the_core_never_imports_upward(module):
    upward = {n for n in _imports(XFER / module)
              if n.startswith(("xfer.sweep", "xfer.cli", "xfer.report", "xfer.tracking.sweep_report"))}
    assert not upward, f"xfer/{module} imports {sorted(upward)}"


def test_the_trial_path_imports_with_only_torch_and_torchvision():
    """The GPU machine has torch and torchvision but not scipy, ptflops, matplotlib, ray,
    mlflow, optuna, pandas or sklearn: `import xfer.train` and `xfer train --help` must work
    there (ptflops is carried as a small wheel and imported only when MACs are counted)."""
    code = (
        "import sys\n"
        # None in sys.modules: `import x` fails and find_spec(x) says absent, as when not installed
        "for name in ('scipy', 'ptflops', 'matplotlib', 'ray', 'mlflow', 'optuna', 'pandas', "
        "'sklearn'):\n"
        "    sys.modules[name] = None\n"
        "import xfer.train, xfer.cli\n"
        "try:\n"
        "    xfer.cli.main(['train', '--help'])\n"
        "except SystemExit as exit:\n"
        "    print('exit', exit.code)\n")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    assert "usage: xfer train" in done.stdout and done.stdout.strip().endswith("exit 0")
