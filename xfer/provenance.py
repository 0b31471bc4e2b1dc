"""What produced a run: git SHA and package versions, recorded with every dataset and trial."""

from __future__ import annotations

import functools
import importlib.metadata
import subprocess
from pathlib import Path

_PACKAGES = ("xfer", "torch", "torchvision", "numpy", "scipy", "pillow", "matplotlib",
             "ray", "mlflow", "optuna", "ptflops")


@functools.lru_cache(maxsize=1)
def git_sha() -> str:
    """The commit of the source tree xfer runs from, with ``-dirty`` when it has local edits;
    ``unknown`` outside a git checkout (an installed wheel, a Ray working_dir upload)."""
    root = Path(__file__).resolve().parent.parent
    try:
        sha = subprocess.run(["git", "rev-parse", "HEAD"], cwd=root, capture_output=True,
                             text=True, timeout=5, check=True).stdout.strip()
        dirty = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no"],
                               cwd=root, capture_output=True, text=True, timeout=5).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return "unknown"
    return f"{sha}-dirty" if dirty else sha


@functools.lru_cache(maxsize=1)
def package_versions() -> dict[str, str]:
    """Installed versions of the packages that decide a result; absent ones are left out."""
    versions = {}
    for name in _PACKAGES:
        try:
            versions[name] = importlib.metadata.version(name)
        except importlib.metadata.PackageNotFoundError:
            pass
    return versions


def code_origin() -> str:
    """Where the running xfer was imported from, with its commit: on a cluster, the copy of
    the working directory Ray unpacked for the job (``.../runtime_resources/working_dir_files/
    ...``, put first on the job's PYTHONPATH by ``ray job submit --working-dir .``), locally the
    checkout the virtual environment installed in editable mode. The sweep prints it with its
    plan, so a job's log says which code ran."""
    return f"xfer from {Path(__file__).resolve().parent} (git {git_sha()})"
