"""The README and the pages it links to say only what exists: every path they name is in the
repository, every command and flag they name is one the code accepts, and the README stays a
newcomer's page (under about 120 lines, exactly two set-up commands)."""

from __future__ import annotations

import functools
import re
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent
PAGES = [REPO / "README.md", *sorted((REPO / "docs").glob("*.md"))]
SCRIPTS = sorted(p.name for p in (REPO / "sweeps").glob("*.py"))

# What a page may name that is not a path in this repository: placeholders, URIs, files a run
# writes (mlflow.db, xfer_reports/...), and paths on a cluster node or in a container.
_NOT_REPO_PATHS = re.compile(r"[<>*{}$]|\.\.\.|…|://|^sqlite:|^runs:|^~|^/|^s3:|^\.venv/|^xfer_reports|"
                             r"^xfer_runs|^xfer_spool|mlflow_spool|^mlruns|^packed/|^images/|"
                             r"\.lock$|^ray_results|^cifar-10\d?-batches-py")
_PATH_LIKE = re.compile(r"^[\w.\-]+(/[\w.\-]*)+$|^[\w.\-]+\.(py|md|ya?ml|txt|toml|sh|png|json|ini|sql|csv)$")
_FILES_A_RUN_WRITES = {"mlflow.db", "report.md", "report.html", "frontier.png", "dataset.json",
                       "metadata.json", "audit.json", "journal.jsonl", "test_predictions.json",
                       "embeddings.json", "confusion_matrix.json", "roc_curve.json",
                       "study_card.json", "replication_card.csv", "frontier.csv",
                       "configurations.csv", "pretraining_gain.csv", "trial_state.pt",
                       "runtime_env_agent.log", "cifar-10-python.tar.gz", "cifar-100-python.tar.gz",
                       "size.png", "learning_curves.png", "confusion_matrices.png",
                       "confusion_matrix.png", "roc_curves.png", "basic_auth.ini", "forecast.png",
                       "forecast.csv", "transferability.png", "transferability.csv"}


def _code_spans(text: str) -> list[str]:
    return re.findall(r"`([^`\n]+)`", text)


def _named_paths(page: Path) -> list[tuple[str, Path]]:
    """(as written, resolved) for every repository path the page names: code spans that look
    like paths (relative to the repository root) and markdown link targets (relative to the
    page)."""
    text = page.read_text()
    named = []
    for span in _code_spans(text):
        for token in span.split():
            token = token.rstrip(".,;:)'\"").lstrip("('\"")
            if _PATH_LIKE.match(token) and not _NOT_REPO_PATHS.search(token) \
                    and Path(token).name not in _FILES_A_RUN_WRITES and not token.startswith("-"):
                named.append((token, REPO / token))
    for target in re.findall(r"\]\(([^)#\s]+)(?:#[^)]*)?\)", text):
        if "://" not in target:
            named.append((target, (page.parent / target).resolve()))
    return named


@pytest.mark.parametrize("page", PAGES, ids=lambda p: str(p.relative_to(REPO)))
def test_every_path_a_page_names_exists(page):
    missing = [written for written, path in _named_paths(page)
               if not path.exists() or not path.resolve().is_relative_to(REPO)]
    assert not missing, f"{page.name} names paths that are not in the repository: {missing}"


def test_the_readme_is_a_newcomers_page():
    text = (REPO / "README.md").read_text()
    assert len(text.splitlines()) <= 120
    setup = re.search(r"## Set up and run\s+```bash\n(.*?)```", text, re.S).group(1)
    commands = [line.split("#")[0].strip() for line in setup.splitlines() if line.strip()]
    assert commands == ["make quick", "make test"]
    makefile = (REPO / "Makefile").read_text()
    assert re.search(r"^quick:", makefile, re.M) and re.search(r"^test:", makefile, re.M)
    assert "make test" in (REPO / ".ci" / "run").read_text()  # CI runs the README's test command
    for page in ("quick_run", "cluster", "studies", "method", "reliability", "security", "layout"):
        assert f"(docs/{page}.md)" in text, page


@functools.lru_cache(maxsize=None)
def _help(*command: str) -> str:
    done = subprocess.run([*command, "--help"], capture_output=True, text=True, timeout=120, cwd=REPO)
    assert done.returncode == 0, (command, done.stderr[-1000:])
    return done.stdout


def _xfer_subcommands() -> dict[str, str]:
    """'data pdf', 'train', ... -> its --help."""
    xfer = [sys.executable, "-m", "xfer.cli"]
    top = re.search(r"\{([a-z,]+)\}", _help(*xfer)).group(1).split(",")
    helps = {}
    for name in top:
        text = _help(*xfer, name)
        nested = re.search(r"^\s+\{([a-z0-9,]+)\}", text, re.M)
        if nested:
            for sub in nested.group(1).split(","):
                helps[f"{name} {sub}"] = _help(*xfer, name, sub)
        else:
            helps[name] = text
    return helps


@pytest.mark.slow
def test_every_command_and_flag_the_pages_name_exists():
    sweep_help = "\n".join(_help(sys.executable, str(REPO / "sweeps" / s)) for s in SCRIPTS)
    xfer_helps = _xfer_subcommands()
    all_help = sweep_help + "\n".join(xfer_helps.values()) + _help(sys.executable, "-m", "xfer.cli")
    problems = []
    for page in PAGES:
        text = page.read_text()
        for script in re.findall(r"sweeps/(\w+\.py)", text):
            if script not in SCRIPTS:
                problems.append(f"{page.name}: sweeps/{script}")
        for span in _code_spans(text):
            command = re.match(r"xfer ((?:data )?[a-z0-9]+)", span)
            known = set(xfer_helps) | {name.split()[0] for name in xfer_helps}
            if command and command.group(1) not in known and span.split()[0] == "xfer":
                problems.append(f"{page.name}: `{span}`")
            for flag in re.findall(r"(?<![\w-])(--[a-z][a-z0-9-]+)", span):
                if flag not in all_help and not _foreign_flag(span, flag):
                    problems.append(f"{page.name}: {flag} in `{span}`")
    assert not problems, problems


def _foreign_flag(span: str, flag: str) -> bool:
    """Flags of other tools' commands a page quotes (ray, mlflow, pip, pytest, docker, ...)."""
    first = span.split()[0] if span.split() else ""
    if first in ("--runtime-env-json", "--working-dir", "--address"):  # ray job submit's, quoted alone
        return True
    return first in {"ray", "mlflow", ".venv/bin/mlflow", "pip", "pytest", "docker", "kubectl", "helm",
                     "aws", "make", "apt-get", "python", "torchrun", "export"} and "sweeps/" not in span
