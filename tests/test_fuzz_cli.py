"""The command-line contract under generated input (issue 17): hypothesis draws values for
every option of every command, read from the parsers themselves (so a new flag is fuzzed
without editing this file), and each command line must

- end with exit code 0, 1 or 2 (argparse's SystemExit included), never an exception;
- write no traceback to stderr, and at most one line of it on exit 1 or 2;
- write nothing outside the test's temp folder.

Values: integers and floats across their range and beyond (negative, zero, huge, nan, inf,
"1e3", non-ASCII digits), the valid choices and near misses, unicode and control characters,
separators, "..", "~", 300-character names, and paths to real fixtures (a good dataset, a
corrupt one, an image folder, a regular file, a missing path) or generated under the temp folder.

The commands run in-process through ``xfer.cli.main`` and ``xfer.sweep.driver.main`` (a
subprocess per example costs ~3 s of imports; in-process an example costs milliseconds), in a
working directory three levels below the temp folder (so up to three ".." stay inside it),
with HOME and MLflow's store inside it, no AWS credentials and a closed loopback port as the S3
endpoint and HTTP proxy. The sweeps always get --dry-run, which validates everything and reads
what the run would read, then stops. The ``xfer`` commands have no dry run: what would start
the real work (generating, packing, training, pretraining, auditing) is replaced by a stub that
ends the example as "accepted" once every check before it has passed; ``frontier`` and
``replay`` run for real against the empty store. Subprocess runs of the same contract are in
tests/test_bad_input.py, where examples this test found are kept.

Bounded: a fixed number of examples per command (FUZZ_EXAMPLES scales them), derandomized so
CI sees the same examples every run; XFER_FUZZ_RANDOM=1 draws new ones. About a minute on
two cores.
"""

from __future__ import annotations

import argparse
import contextlib
import io
import os
import socket
import sys
import time
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from hypothesis.configuration import set_hypothesis_home_dir

from conftest import REPO
from helpers_data import write_blob_dataset, write_image_folder

pytestmark = [pytest.mark.timeout(600), pytest.mark.serial]  # watches HOME, / and the repository

SCALE = float(os.environ.get("FUZZ_EXAMPLES", "1"))
SETTINGS = dict(deadline=None, database=None, derandomize=not os.environ.get("XFER_FUZZ_RANDOM"),
                suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow,
                                       HealthCheck.data_too_large])


class _WouldRun(BaseException):
    """Raised by the stubs: every check before the real work passed (a BaseException, so the
    commands' own ``except Exception`` cannot swallow it)."""


def _would_run(*args, **kwargs):
    raise _WouldRun()


def _closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


# --- values --------------------------------------------------------------------------------

_ODD_TEXT = ["", " ", "-", "--", "-1", "0", "nan", "inf", "-inf", "1e3", "0x10", "١٢", "1_000",
             "10**9", "None", "true", "a\nb", "a\tb", "\u202e", "名前", "ünï", "x" * 300, "..", "/",
             "a/b", "a\\b", "~", "$HOME", "%s", "{}", "'", '"', "\r", "\x1b[31m"]
_TEXT = st.text(alphabet=st.characters(blacklist_characters="\x00", blacklist_categories=("Cs",)),
                max_size=20)
_ANY_TEXT = st.one_of(st.sampled_from(_ODD_TEXT), _TEXT)
_INTS = st.one_of(st.integers(-3, 300), st.integers(-(10 ** 15), 10 ** 15),
                  st.sampled_from([2 ** 31 - 1, 2 ** 31, 2 ** 63, 10 ** 30])).map(str)
_FLOATS = st.one_of(st.floats(allow_nan=True, allow_infinity=True).map(repr),
                    st.floats(-2, 2).map(repr), st.sampled_from(["0", "1", "0.5", "1e-300", "1e300"]))
_SEGMENTS = st.one_of(st.sampled_from(["..", ".", "~", "a", "data", " ", "-x", "ünï", "名前",
                                       "a\nb", "x" * 300, "*", "?"]),
                      st.text(alphabet=st.characters(blacklist_characters="\x00/",
                                                     blacklist_categories=("Cs",)),
                              min_size=1, max_size=12))


def _paths(fixtures: dict[str, str]):
    generated = st.lists(_SEGMENTS, min_size=1, max_size=3).map("/".join)
    return st.one_of(st.sampled_from(sorted(fixtures.values())), generated,
                     generated.map(lambda p: f"{fixtures['tmp']}/{p}"), st.just(""))


def _value(action: argparse.Action, fixtures: dict[str, str]):
    """A strategy for one option's value, from what the parser says about it."""
    kind = getattr(action.type, "__name__", None)
    name = (action.option_strings or [action.dest])[-1].lstrip("-")
    if action.choices:
        return st.one_of(st.sampled_from([str(c) for c in action.choices]), _ANY_TEXT)
    if kind in ("int", "positive_int", "non_negative_int"):
        return st.one_of(_INTS, _ANY_TEXT)
    if kind in ("float", "_float", "positive_float", "non_negative_float", "accuracy_level"):
        return st.one_of(_FLOATS, _ANY_TEXT)
    if kind == "epoch_list":
        return st.one_of(st.lists(st.integers(-2, 60).map(str), min_size=1, max_size=4).map(",".join),
                         _ANY_TEXT)
    if name == "weights":
        return st.one_of(st.sampled_from(["imagenet", "imagenet#sha256=" + "0" * 64, "s3://", "s3://b",
                                          "s3://bucket/w.pt", "runs:/", "runs:/abc/w.pt", "file://"]),
                         _paths(fixtures))
    if name == "model":  # a real one now and then, so training's own checks are reached
        return st.one_of(st.sampled_from(["small_cnn", "resnet10", "resnet18", "vgg19"]), _ANY_TEXT)
    if name == "device":
        return st.one_of(st.sampled_from(["auto", "cpu", "cuda", "cuda:7", "mps"]), _ANY_TEXT)
    if name == "tracking-uri":
        return st.one_of(st.sampled_from([f"sqlite:///{fixtures['tmp']}/m.db", "bogus://x", "http://",
                                          f"http://127.0.0.1:{_closed_port()}", "sqlite://"]), _ANY_TEXT)
    if name == "storage":
        return st.one_of(st.sampled_from(["s3://", "s3:///p", "s3://bucket/prefix"]), _paths(fixtures))
    if kind == "Path" or name in ("out", "data", "root", "src", "dir", "spool", "cache-dir",
                                  "data-root", "json-out"):
        data = ["pdf", "cifar10", "cifar100"] if name == "data" else []
        return st.one_of(st.sampled_from(data or ["."]), _paths(fixtures))
    if action.metavar and "|" in str(action.metavar):
        return st.one_of(st.sampled_from(str(action.metavar).split("|")), _ANY_TEXT)
    return _ANY_TEXT


def _argv(parser: argparse.ArgumentParser, fixtures: dict[str, str], always: tuple[str, ...] = ()):
    """Every required option and positional with a value, then any subset of the others."""
    actions = [a for a in parser._actions if not isinstance(a, argparse._HelpAction)]
    required = [a for a in actions if a.required or not a.option_strings]
    optional = [a for a in actions if a not in required]

    def one(action):
        if action.nargs == 0:  # a switch
            return st.just([action.option_strings[0]])
        value = _value(action, fixtures)
        if not action.option_strings:
            return value.map(lambda v: [v])
        return value.map(lambda v: [action.option_strings[0], v])

    @st.composite
    def build(draw):
        argv = []
        for action in required:
            if draw(st.integers(0, 19)) or action.option_strings == []:  # now and then left out
                argv += draw(one(action))
        for action in draw(st.lists(st.sampled_from(optional), unique=True, max_size=6)) if optional else []:
            argv += draw(one(action))
        return argv + list(always)
    return build()


def _commands() -> dict[str, argparse.ArgumentParser]:
    from xfer.cli import build_parser

    found = {}

    def walk(parser, prefix):
        subs = [a for a in parser._actions if isinstance(a, argparse._SubParsersAction)]
        if not subs:
            found[" ".join(prefix)] = parser
        for sub in subs:
            for name, child in sub.choices.items():
                walk(child, [*prefix, name])
    walk(build_parser(), [])
    return found


def _studies() -> dict:
    sys.path.insert(0, str(REPO / "sweeps"))
    try:
        import importlib

        return {path.stem: importlib.import_module(path.stem).STUDY
                for path in sorted((REPO / "sweeps").glob("*.py"))}
    finally:
        sys.path.remove(str(REPO / "sweeps"))


# --- the sandbox -----------------------------------------------------------------------------

def _names(root: Path, depth: int) -> set[str]:
    """Paths under ``root`` down to ``depth`` levels: new ones mean something was written."""
    found = set()
    if not root.is_dir():
        return found
    try:
        for child in root.iterdir():
            found.add(str(child))
            if depth > 1 and child.is_dir() and not child.is_symlink():
                found |= _names(child, depth - 1)
    except OSError:
        pass
    return found


@pytest.fixture(scope="module")
def sandbox(tmp_path_factory):
    """Fixtures, the working directory and the environment, shared by every example; the
    places outside the temp folder that a command could write to are listed before and
    compared after (by name: other processes may touch files there, not create these names)."""
    from xfer.sweep.options import DEFAULT_CACHE

    base = tmp_path_factory.mktemp("fuzz")
    # Hypothesis caches its unicode tables in ./.hypothesis even with database=None; on a clean
    # clone that is a new folder in the repository, so its home goes under the temp folder.
    set_hypothesis_home_dir(base / "hypothesis")
    corrupt = write_blob_dataset(base / "corrupt", n=40, num_classes=4)
    (corrupt / "packed" / "images_u8.npy").write_bytes(b"\x93NUMPY garbage")
    (base / "a_file").write_text("not a folder")
    write_image_folder(base / "images", classes=("cat", "dog"), per_class=4)
    fixtures = {"tmp": str(base), "blobs": str(write_blob_dataset(base / "blobs", n=80, num_classes=4)),
                "corrupt": str(corrupt), "missing": str(base / "missing"), "file": str(base / "a_file"),
                "images": str(base / "images")}
    work = base / "w1" / "w2" / "w3"
    (base / "home").mkdir()
    work.mkdir(parents=True)
    watched = {Path.home(): 2, DEFAULT_CACHE: 3, REPO: 1, Path("/"): 1, base.parent: 1}
    before = {root: _names(root, depth) for root, depth in watched.items()}
    closed = f"http://127.0.0.1:{_closed_port()}"
    env = {"HOME": str(base / "home"), "MLFLOW_TRACKING_URI": f"sqlite:///{base}/mlflow.db",
           "AWS_ACCESS_KEY_ID": "testing", "AWS_SECRET_ACCESS_KEY": "testing",
           "AWS_DEFAULT_REGION": "us-east-1", "AWS_ENDPOINT_URL": closed,
           "AWS_EC2_METADATA_DISABLED": "true", "AWS_SHARED_CREDENTIALS_FILE": str(base / "no-aws"),
           "AWS_CONFIG_FILE": str(base / "no-aws"), "TORCH_HOME": str(base / "torch_home"),
           "MLFLOW_DISABLE_TELEMETRY": "true", "RAY_TMPDIR": str(base / "ray"),
           **{name: closed for name in ("http_proxy", "https_proxy", "HTTP_PROXY", "HTTPS_PROXY")},
           "no_proxy": "127.0.0.1,localhost", "NO_PROXY": "127.0.0.1,localhost"}
    saved_env, saved_cwd = dict(os.environ), os.getcwd()
    os.environ.pop("RAY_ADDRESS", None)
    os.environ.update(env)
    os.chdir(work)
    try:
        yield fixtures
    finally:
        os.chdir(saved_cwd)
        os.environ.clear()
        os.environ.update(saved_env)
        set_hypothesis_home_dir(None)
    after = {root: _names(root, depth) for root, depth in watched.items()}
    written = sorted(set().union(*(after[root] - before[root] for root in watched)))
    assert not written, f"written outside the temp folder {base}: {written}"


@pytest.fixture
def stubs(monkeypatch):
    """The real work each ``xfer`` command would start once its checks pass."""
    import xfer.data.cifar
    import xfer.data.folder
    import xfer.data.pdf.audit
    import xfer.data.pdf.generate
    import xfer.pretrain
    import xfer.train

    for module, name in [(xfer.data.pdf.generate, "write_dataset"), (xfer.data.cifar, "pack_cifar"),
                         (xfer.data.folder, "pack_folder"), (xfer.data.pdf.audit, "audit_dataset"),
                         (xfer.train, "fit"), (xfer.pretrain, "pretrain"),
                         (xfer.pretrain, "source_dataset")]:
        monkeypatch.setattr(module, name, _would_run)


def _check(run, argv: list[str]) -> int:
    """Run one command line in-process; assert the contract; return its exit code."""
    err, out = io.StringIO(), io.StringIO()
    try:
        with contextlib.redirect_stderr(err), contextlib.redirect_stdout(out):
            code = run(argv)
    except SystemExit as exc:  # argparse: 2 for a usage error, 0 for --help
        code = exc.code
    except _WouldRun:
        code = 0
    text = err.getvalue()
    assert code in (0, 1, 2), (argv, code, text[-2000:])
    assert "Traceback" not in text, (argv, text[-3000:])
    if code:
        assert len(text.strip().splitlines()) == 1, (argv, text[-3000:])
    return code


_COMMANDS = _commands()
_STUDIES = _studies()
_SEEN: dict[str, dict[int, int]] = {}  # per command: exit code -> examples, for the summary


@pytest.mark.parametrize("command", sorted(_COMMANDS))
def test_every_xfer_command_keeps_the_contract(command, sandbox, stubs):
    from xfer.cli import main

    seen = _SEEN.setdefault(f"xfer {command}", {})
    # frontier and replay run for real (MLflow): fewer examples
    examples = int((15 if command in ("frontier", "replay") else 60) * SCALE)

    @settings(max_examples=examples, **SETTINGS)
    @given(_argv(_COMMANDS[command], sandbox))
    def fuzz(argv):
        code = _check(main, [*command.split(), *argv])
        seen[code] = seen.get(code, 0) + 1
    started = time.perf_counter()
    fuzz()
    print(f"xfer {command}: {sum(seen.values())} examples, exit codes {seen}, "
          f"{time.perf_counter() - started:.1f} s")


@pytest.mark.parametrize("script", sorted(_STUDIES))
@pytest.mark.slow  # over 4 s of CPU
def test_every_sweep_option_keeps_the_contract_with_dry_run(script, sandbox):
    from xfer.sweep.driver import main
    from xfer.sweep.options import build_parser

    study = _STUDIES[script]
    parser = build_parser(f"sweeps/{script}.py", "d", list(study.presets), study.default_preset,
                          study.name, aliases=study.aliases)
    seen = _SEEN.setdefault(script, {})

    @settings(max_examples=int(25 * SCALE), **SETTINGS)
    @given(_argv(parser, sandbox, always=("--dry-run",)))
    def fuzz(argv):
        code = _check(lambda a: main(study, a), argv)
        seen[code] = seen.get(code, 0) + 1
    started = time.perf_counter()
    fuzz()
    print(f"{script}: {sum(seen.values())} examples, exit codes {seen}, "
          f"{time.perf_counter() - started:.1f} s")
