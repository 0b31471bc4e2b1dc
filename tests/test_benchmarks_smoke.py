"""The benchmark scripts run (with --smoke), so they cannot rot unnoticed."""

import re
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent


@pytest.mark.slow
def test_step_speed_smoke():
    done = subprocess.run([sys.executable, str(ROOT / "benchmarks" / "step_speed.py"), "--smoke",
                           "--device", "cpu"], capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    rows = re.findall(r"^(resnet18|small_cnn) .* (\d+\.\d{3})$", done.stdout, flags=re.M)
    assert [model for model, _ in rows] == ["resnet18", "small_cnn"], done.stdout
    assert all(float(ratio) > 0 for _, ratio in rows)
