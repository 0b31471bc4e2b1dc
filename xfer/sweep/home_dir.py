"""Nothing a sweep writes lands in the user's home folder.

A sweep writes under --storage, --cache-dir, the working directory (mlflow.db, xfer_reports)
and the temp dir, and nowhere else (tests/test_names_and_bounds.py checks it with
HOME pointed at an empty folder). Two libraries would otherwise write to HOME behind its back:

- matplotlib (the PDF plots, the report's figures) caches its font list in
  ``~/.cache/matplotlib`` and ``~/.config/matplotlib``: pointed at ``<cache-dir>/matplotlib``,
  one per machine like the datasets. Costs one font scan (~1 s) the first time.
- a local Ray (2.5x) turns token authentication on and saves a new token to
  ``~/.ray/auth_token`` unless it finds one: given one in the environment instead
  (``RAY_AUTH_TOKEN``, read by Ray's token loader), random per sweep, which only this
  driver's private Ray instance uses. A token the user set up (the variable, the
  ``RAY_AUTH_TOKEN_PATH`` file, an existing ``~/.ray/auth_token``) is left as it is.

Both are set in this process's environment, which Ray's processes (and so the trials) inherit.
"""

from __future__ import annotations

import os
import secrets
from pathlib import Path


def keep_out_of_home(cache: Path, local_ray: bool) -> None:
    os.environ.setdefault("MPLCONFIGDIR", str(Path(cache) / "matplotlib"))
    if local_ray and not _ray_token_configured():
        os.environ["RAY_AUTH_TOKEN"] = secrets.token_hex(32)


def _ray_token_configured() -> bool:
    return bool(os.environ.get("RAY_AUTH_TOKEN") or os.environ.get("RAY_AUTH_TOKEN_PATH")
                or (Path.home() / ".ray" / "auth_token").is_file())
