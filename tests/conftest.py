"""Shared fixtures: isolated MLflow stores, caches and Ray for the real-stack tests."""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent

# Under pytest-xdist (`make test`: two workers on CI's two cores) every torch process gets one
# intra-op thread. With one thread per core, a process's OpenMP threads busy-wait for the core
# the other worker holds: tests/test_train.py beside one busy core took 204 s with torch's
# default two threads and 93 s with one (measured 2026-12-01, 2-core AMD EPYC). Set before
# torch is imported, here and in every subprocess a test starts (they inherit os.environ);
# Ray's trial workers set their own thread count (xfer/sweep/trial.py).
if os.environ.get("PYTEST_XDIST_WORKER"):
    os.environ.setdefault("OMP_NUM_THREADS", "1")


def load_topology():
    """infra/local/topology.py as a module (it is a script, not part of the package)."""
    import importlib.util

    name = "xfer_local_topology"
    if name not in sys.modules:
        spec = importlib.util.spec_from_file_location(name, REPO / "infra" / "local" / "topology.py")
        module = importlib.util.module_from_spec(spec)
        sys.modules[name] = module  # dataclasses resolve the module's annotations through it
        spec.loader.exec_module(module)
    return sys.modules[name]


# Tests that share the session's smoke sweep (a minute of Ray, MLflow and training): real-stack
# tests by definition, so marked `slow` here rather than in each module.
SHARED_SWEEP_FIXTURES = ("smoke_sweep",)


# The files that take longest under `make test`, longest first: seconds summed over their
# tests' setup, call and teardown, measured on the 2-core machine on 2026-12-02 (interrupts
# 326, tracking faults 315, sweep 286, studies 203, topology 167, benchmarks 116, the rest
# 93 down to 59). pytest-xdist hands whole files to its two workers in collection order
# (`--no-loadscope-reorder`; its default puts files with many tests first, which left the
# topology and the interrupt chain to start last), so the long files start first and the
# short ones fill in at the end instead of one worker finishing a long file alone.
LONGEST_FILES = ("test_interrupts.py", "test_faults_tracking.py", "test_sweep.py", "test_studies.py",
                 "test_topology.py", "test_benchmarks_smoke.py", "test_forecast_sweep.py",
                 "test_storage_integrity.py", "test_milestones.py", "test_names_and_bounds.py",
                 "test_endpoints.py", "test_train.py", "test_faults_node_loss.py",
                 "test_progress.py")


def _longest_first(item) -> int:
    name = item.path.name
    return LONGEST_FILES.index(name) if name in LONGEST_FILES else len(LONGEST_FILES)


def serial_files() -> set[str]:
    """The files the Makefile's serial run collects (SERIAL_TESTS), relative to the repository."""
    import re

    found = re.search(r"^SERIAL_TESTS\s*:?=(.*)$", (REPO / "Makefile").read_text(), flags=re.M)
    return set(found[1].split()) if found else set()


@pytest.hookimpl(tryfirst=True)  # before `-m` deselects
def pytest_collection_modifyitems(config, items):
    for item in items:
        if any(name in item.fixturenames for name in SHARED_SWEEP_FIXTURES):
            item.add_marker(pytest.mark.slow)
    listed = serial_files()
    stray = [item.nodeid for item in items if item.get_closest_marker("serial")
             and item.path.relative_to(REPO).as_posix() not in listed]
    if stray:  # `make test` would never run them
        raise pytest.UsageError(f"serial tests outside the Makefile's SERIAL_TESTS: {stray[:3]}")
    items.sort(key=_longest_first)  # stable: each file's own order, and the rest's, is kept


def xdist_root(tmp_path_factory) -> Path | None:
    """Under pytest-xdist (`make test`), the temp folder above every worker's own: what the
    workers share. None in a plain run."""
    return tmp_path_factory.getbasetemp().parent if os.environ.get("PYTEST_XDIST_WORKER") else None


def _shared_ray_tmp(root: Path) -> Path:
    """The smoke sweep's RAY_TMPDIR when the workers share it: short (Ray's socket paths are
    capped at 107 bytes) and named after the run's root, so the controller finds it to remove."""
    return Path("/tmp") / f"xr-{hashlib.sha1(str(root).encode()).hexdigest()[:10]}"


def pytest_sessionfinish(session):
    """Close this process's warm interpreter; and the xdist controller, once every worker is
    done, removes the shared smoke sweep's Ray logs."""
    while _WARM:
        _WARM.pop().close()
    _ONE_NODE_RAY.stop()
    if not hasattr(session.config, "workerinput") and session.config.getoption("dist", "no") != "no":
        shutil.rmtree(_shared_ray_tmp(session.config._tmp_path_factory.getbasetemp()), ignore_errors=True)


@pytest.fixture(scope="module")
def blobs(tmp_path_factory):
    """A tiny learnable packed dataset (160 images, 4 classes, 32 px), one per test module."""
    from helpers_data import write_blob_dataset

    return write_blob_dataset(tmp_path_factory.mktemp("data") / "blobs", n=160, num_classes=4)


@pytest.fixture(scope="session")
def shared_cache(tmp_path_factory) -> Path:
    """One dataset/offline-weights cache for every sweep test: built once, like a real node's.
    Under pytest-xdist the workers share it too (the root above their own temp folders): the
    cache is built for concurrent sweeps (file locks, atomic renames), and each worker building
    its own would pretrain the offline weights once per worker (~15 s each)."""
    root = xdist_root(tmp_path_factory)
    if root is None:
        return tmp_path_factory.mktemp("xfer-cache")
    (root / "xfer-cache").mkdir(exist_ok=True)
    return root / "xfer-cache"


def sweep_env(tmp: Path, ray_address: str | None = None) -> dict:
    """Environment for a sweep subprocess: its own MLflow store, loopback-only Ray: the Ray at
    ``ray_address`` (``one_node_ray``), else one the driver starts."""
    env = dict(os.environ)
    env["MLFLOW_TRACKING_URI"] = f"sqlite:///{tmp / 'mlflow.db'}"
    env["RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER"] = "0"
    env.pop("RAY_ADDRESS", None)
    if ray_address:
        env["RAY_ADDRESS"] = ray_address
    env["PYTHONPATH"] = str(REPO)
    return env


def mlflow_server_env() -> dict:
    """The environment for an `mlflow server` a test starts: this one, without MLflow's job
    runner. MLflow 3 starts a job runner and seven huey consumers beside every server, for GenAI
    jobs that xfer never submits. They cost ~24 of a start's ~35 busy CPU-s on the 2-core machine
    (10.9 CPU-s without them, measured 2026-12-03), and a SIGKILLed server leaves their /dev/shm
    folder behind."""
    return {**os.environ, "MLFLOW_SERVER_ENABLE_JOB_EXECUTION": "false"}


# The one-node Ray that ``OneNodeRay`` starts, in a process of its own: a fresh interpreter, so
# that it imports ray with RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER=0 and every daemon binds 127.0.0.1
# (a pytest worker may have imported ray already), with no idle workers prestarted, as a
# sweep's own Ray. It prints the address, then holds the cluster until its stdin closes.
# Cluster writes the head's address to RAY_TMPDIR's ray/ray_current_cluster, "for convenience
# in unit testing": with RAY_TMPDIR our own folder, that file stays in it. Left to the default
# it goes to Ray's machine-wide temp folder, shared with every Ray on the machine, and the start
# fails where no Ray has made that folder yet (a fresh machine).
_ONE_NODE_SERVER = r'''
import sys
from ray.cluster_utils import Cluster
from xfer.sweep.tune_run import NO_PRESTART
cluster = Cluster(initialize_head=True, shutdown_at_exit=False, head_node_args={
    "temp_dir": sys.argv[1] + "/ray", "node_ip_address": "127.0.0.1", "include_dashboard": False,
    "num_cpus": int(sys.argv[2]), "_system_config": NO_PRESTART})
cluster.wait_for_nodes()
print(cluster.address, flush=True)
sys.stdin.read()
cluster.shutdown()
'''


class OneNodeRay:
    """A local Ray on 127.0.0.1 that consecutive sweep tests join with RAY_ADDRESS, as a driver
    joins a cluster, instead of each sweep starting and stopping Ray of its own. Measured on
    the 2-core machine (2026-12-03, six smoke sweeps alternating): 36-42 CPU-s and 35-41 s a
    sweep joined, 45-54 and 46-53 with its own Ray. Started by the first test that asks
    (``one_node_ray``); stopped once the next test of this process does not
    (``pytest_runtest_teardown``), since an idle Ray costs ~0.04 CPU-s a second. The tests of a
    sweep's own Ray (interrupts, its sockets and files, the killed driver), of other topologies
    and of trials that need the driver's credentials (S3) start their own."""

    def __init__(self):
        self.process: subprocess.Popen | None = None
        self.temp_dir: str | None = None
        self.address: str | None = None

    def start(self) -> str:
        if self.process is not None and self.process.poll() is None:
            return self.address
        self.temp_dir = tempfile.mkdtemp(prefix="x1", dir="/tmp")  # short: socket paths are capped
        env = {**os.environ, "RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER": "0", "PYTHONPATH": str(REPO),
               "RAY_TMPDIR": self.temp_dir}
        env.pop("RAY_ADDRESS", None)
        self.process = subprocess.Popen([sys.executable, "-c", _ONE_NODE_SERVER, self.temp_dir,
                                         str(os.cpu_count() or 2)],
                                        stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True, env=env)
        self.address = self.process.stdout.readline().strip()
        if not self.address:  # the helper died; a half-started Ray must not outlive the test
            self.stop()
            raise AssertionError("the shared one-node Ray did not start (its traceback is above)")
        return self.address

    def stop(self) -> None:
        if self.process is None:
            return
        self.process.stdin.close()
        try:
            self.process.wait(timeout=60)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()
        kill_naming(self.temp_dir)  # whatever ray's shutdown left behind
        shutil.rmtree(self.temp_dir, ignore_errors=True)
        self.process = self.address = self.temp_dir = None


_ONE_NODE_RAY = OneNodeRay()


@pytest.fixture
def one_node_ray() -> str:
    """The address of this process's shared one-node Ray (``OneNodeRay``), for RAY_ADDRESS."""
    return _ONE_NODE_RAY.start()


@pytest.hookimpl(trylast=True)
def pytest_runtest_teardown(item, nextitem):
    if nextitem is None or "one_node_ray" not in nextitem.fixturenames:
        _ONE_NODE_RAY.stop()


def sweep_store(folder: Path, experiment: str = "pdf_grid"):
    """What a sweep run in ``folder`` wrote to its SQLite store: (client, experiment id, the
    parent run, its child runs: trials and milestones). One sweep per store."""
    from mlflow.tracking import MlflowClient

    client = MlflowClient(f"sqlite:///{folder / 'mlflow.db'}")
    experiment_id = client.get_experiment_by_name(experiment).experiment_id
    runs = client.search_runs([experiment_id], max_results=1000)
    [parent] = [r for r in runs if r.data.tags.get("xfer.role") == "parent"]
    children = [r for r in runs if r.data.tags.get("mlflow.parentRunId") == parent.info.run_id]
    return client, experiment_id, parent, children


def run_sweep(script: str, args: list[str], tmp: Path, cache: Path, timeout: float = 600,
              env: dict | None = None, cold: bool = False,
              ray_address: str | None = None) -> subprocess.CompletedProcess:
    """``sweeps/SCRIPT ARGS`` as its own process, forked from this worker's warm interpreter
    (``warm_python``: ~12 CPU-s less per sweep) or, with ``cold``, a plain ``subprocess.run``;
    in ``env``, else ``sweep_env(tmp, ray_address)``."""
    env = env or sweep_env(tmp, ray_address)
    cmd = [sys.executable, str(REPO / "sweeps" / script), *args]
    if "--storage" not in args:
        cmd += ["--storage", str(tmp / "runs")]
    if "--cache-dir" not in args:
        cmd += ["--cache-dir", str(cache)]
    if not cold:
        return warm_runner().run(cmd, cwd=tmp, env=env, timeout=timeout)
    return subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, cwd=tmp, env=env)


def run_xfer(*args: str, cwd=None, env: dict | None = None, timeout: float = 300) -> subprocess.CompletedProcess:
    """``python -m xfer.cli ARGS`` as its own process, forked from this worker's warm
    interpreter: ``subprocess.run``'s result, output captured as text."""
    return warm_runner().run([sys.executable, "-m", "xfer.cli", *args], cwd=cwd, env=env, timeout=timeout)


_WARM = []


def warm_runner():
    """This process's ``WarmPython`` (tests/warm_python.py): commands forked from an
    interpreter that has imported torch, MLflow, Ray and Tune, so that each costs its own work,
    not ~9 CPU-s of imports. Started on first use; closed when the session ends."""
    if not _WARM:
        from warm_python import WarmPython

        _WARM.append(WarmPython())
    return _WARM[0]


@pytest.fixture(scope="session")
def warm_python():
    """``warm_runner()`` as a fixture, for the tables of inputs that must fail before anything
    starts."""
    return warm_runner()


def kill_group(process: subprocess.Popen) -> None:
    """SIGKILL a process started with start_new_session=True and everything in its group
    (the local Ray it started)."""
    try:
        os.killpg(process.pid, signal.SIGKILL)
    except ProcessLookupError:
        pass
    process.wait(timeout=30)


def pids_naming(text: str) -> list[int]:
    """Processes whose command line contains ``text``: a Ray instance's processes all name its
    private temp dir, so tests can stop exactly what they started."""
    pids = []
    for proc in Path("/proc").iterdir():
        if proc.name.isdigit():
            try:
                if text.encode() in (proc / "cmdline").read_bytes():
                    pids.append(int(proc.name))
            except OSError:
                pass
    return pids


def kill_naming(text: str) -> None:
    """SIGKILL every process whose command line contains ``text`` (``pids_naming``): what a
    Ray instance's shutdown, or a killed test, left behind."""
    for pid in pids_naming(text):
        try:
            os.kill(pid, signal.SIGKILL)
        except ProcessLookupError:
            pass


@pytest.fixture(scope="module")
def s3_endpoint(request) -> str:
    """A real S3-compatible server (moto) on loopback, one per test module; a test makes the
    buckets it needs."""
    from moto.server import ThreadedMotoServer

    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    request.addfinalizer(server.stop)
    host, port = server.get_host_and_port()
    return f"http://{host}:{port}"


# The shared smoke sweep's arguments (one line per feature that the shared sweep exercises).
SMOKE_ARGS = ["--preset", "smoke"]
SMOKE_ARGS += ["--system-metrics", "on"]  # system metrics (issue 16)
SMOKE_ARGS += ["--progress-interval", "2"]  # progress line interval (issue 16)

# Fake credentials in the smoke sweep's environment, as a cluster's driver would have real ones:
# test_no_secret_... searches everything the sweep wrote for them (one sweep serves both).
SECRETS = {"AWS_ACCESS_KEY_ID": "AKIAXFERFAKEKEY12345", "AWS_SECRET_ACCESS_KEY": "xfer-fake-secret-9f8e7d",
           "MLFLOW_TRACKING_PASSWORD": "xfer-fake-mlflow-pw-4c3b", "RAY_AUTH_TOKEN": "xferfaketoken0a1b2c3d4e5f"}


@pytest.fixture(scope="session")
def smoke_ray_tmp(tmp_path_factory):
    """The smoke sweep's RAY_TMPDIR, kept until the session ends so its Ray logs can be read."""
    root = xdist_root(tmp_path_factory)
    if root is not None:  # shared by the workers; the controller removes it (pytest_sessionfinish)
        _shared_ray_tmp(root).mkdir(exist_ok=True)
        yield _shared_ray_tmp(root)
        return
    ray_tmp = Path(tempfile.mkdtemp(prefix="xr", dir="/tmp"))  # short: Ray's socket paths are capped
    yield ray_tmp
    shutil.rmtree(ray_tmp, ignore_errors=True)


@pytest.fixture(scope="session")
def smoke_sweep(tmp_path_factory, shared_cache, smoke_ray_tmp):
    """`sweeps/pdf_grid.py --preset smoke` once per session, as a user runs it: (its working
    folder, with mlflow.db; the finished process; seconds). Every test that only reads a smoke
    sweep's store or output shares this one. Under pytest-xdist the first worker to need it
    runs it and the others wait for it (a file lock) and read what it recorded.

    It runs cold with HOME, the working folder and --storage apart (``smoke_layout``), and
    what each held as it exited is kept (``smoke_folders``), for the test that nothing is
    written outside them: the other tests add files there later."""
    root = xdist_root(tmp_path_factory)
    if root is None:
        return _checked(_record_smoke_sweep(tmp_path_factory.mktemp("smoke"), shared_cache, smoke_ray_tmp))
    from filelock import FileLock

    with FileLock(str(root / "smoke.lock")):
        if not (root / "smoke.json").exists():
            (root / "smoke").mkdir()
            record = _record_smoke_sweep(root / "smoke", shared_cache, smoke_ray_tmp)
            (root / "smoke.json").write_text(json.dumps(record))
    return _checked(json.loads((root / "smoke.json").read_text()))


def smoke_layout(work: Path) -> dict[str, Path]:
    """The shared smoke sweep's folders, beside its working folder ``work``: HOME and
    --storage (its Ray state, records and checkpoints)."""
    return {"work": work, "home": work.parent / "home", "storage": work.parent / "storage"}


def smoke_folders(work: Path) -> dict:
    """What the shared smoke sweep's folders held as it exited: every path under ``home``; the
    names in ``work``, ``storage`` and their ``parent``; the filesystem root's names before and
    after (``roots_before``, ``roots_after``)."""
    return json.loads((work.parent / "folders.json").read_text())


def _tree(root: Path) -> list[str]:
    return sorted(str(p.relative_to(root)) for p in root.rglob("*")) if root.exists() else []


def _names(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.iterdir()) if folder.exists() else []


def _record_smoke_sweep(parent: Path, cache: Path, ray_tmp: Path) -> dict:
    folders = smoke_layout(parent / "work")
    for folder in (folders["work"], folders["home"]):
        folder.mkdir()
    home = folders["home"]
    env = {**sweep_env(folders["work"]), **SECRETS, "MLFLOW_TRACKING_USERNAME": "xfer-driver",
           "RAY_TMPDIR": str(ray_tmp), "HOME": str(home), "XDG_CACHE_HOME": str(home / ".cache"),
           "XDG_CONFIG_HOME": str(home / ".config")}
    for key in ("MPLCONFIGDIR", "TORCH_HOME"):  # where these are unset, a library reads HOME
        env.pop(key, None)
    roots_before = sorted(os.listdir("/"))
    started = time.perf_counter()
    # cold, as a user runs it: what the libraries read from HOME as they are imported counts
    done = run_sweep("pdf_grid.py", [*SMOKE_ARGS, "--storage", str(folders["storage"])], folders["work"],
                     cache, env=env, cold=True)
    seconds = time.perf_counter() - started
    held = {"home": _tree(home), "work": _names(folders["work"]), "storage": _names(folders["storage"]),
            "parent": _names(parent), "roots_before": roots_before, "roots_after": sorted(os.listdir("/"))}
    (parent / "folders.json").write_text(json.dumps(held))
    return {"work": str(folders["work"]), "args": done.args, "returncode": done.returncode, "stdout": done.stdout,
            "stderr": done.stderr, "seconds": seconds}


def _checked(record: dict):
    done = subprocess.CompletedProcess(record["args"], record["returncode"], record["stdout"], record["stderr"])
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    return Path(record["work"]), done, record["seconds"]
