#!/usr/bin/env python3
"""xfer's production topology on one machine: PostgreSQL + S3 + MLflow server + a multi-node
Ray cluster, each Ray node in its own network namespace, so that trials really run on
different hosts as far as Ray can tell.

    sudo .venv/bin/python infra/local/topology.py up        # prints addresses + the submit command
    sudo .venv/bin/python infra/local/topology.py status
    sudo .venv/bin/python infra/local/topology.py down

What runs where (K: the first free 10.213.K.0/24, normally 0):

    host namespace, nothing bound to 0.0.0.0:
      PostgreSQL     127.0.0.1:5432, already running; a fresh database xfer_topology_<id>
      moto_server    10.213.K.1:<port>   S3 endpoint, bucket ``xfer-topology``
      mlflow server  10.213.K.1:<port>   backend: that database; artifacts proxied into
                                         s3://xfer-topology/mlflow (--serve-artifacts)
      bridge xfbr<id> 10.213.K.1/24, one veth per namespace
    namespace xfer-<id>-n0  10.213.K.2   Ray head: GCS :6380, dashboard + job API :8265, 1 CPU
    namespace xfer-<id>-n1  10.213.K.3   Ray worker node, 1 CPU (more with --nodes)

Why namespaces: Ray opens its ports on the machine's network interfaces even when told
--node-ip-address 127.0.0.1 (GCS, raylet and agents listen on 0.0.0.0/[::]), and it tells nodes
apart by IP. A namespace per node gives each node its own IP and port space, as separate hosts
have, and confines those wildcard listeners to the namespace's loopback and veth. The namespaces
have no default route: they reach the bridge and nothing else.

Why ``--serve-artifacts`` (as in infra/mlflow/compose.yaml): the driver uploads artifacts to the
tracking server over HTTP and the server writes them to S3, so a job needs MLflow's address only,
never S3 credentials for MLflow. The Ray nodes still need S3 access for ``--storage s3://...``
(checkpoints are written by the trials, on every node): they read a 0600 credentials file named
by AWS_SHARED_CREDENTIALS_FILE, standing in for an instance role. Keys in environment variables
would end up in Ray's logs (see ``Topology.s3_client_env``); the job's runtime env carries
locations only (MLFLOW_TRACKING_URI, AWS_ENDPOINT_URL).

Teardown is by recorded PID and by namespace membership (``ip netns pids``), never by process
name: ``ray stop`` kills every Ray process on the machine, other people's included.

The test tests/test_topology.py imports this module: one implementation for both.
"""

from __future__ import annotations

import argparse
import contextlib
import fcntl
import ipaddress
import json
import os
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from dataclasses import asdict, dataclass, field
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
BIN = Path(sys.executable).parent  # the venv's bin: ray, mlflow, moto_server, python
# the system temp dir ($TMPDIR, else /tmp), kept short: Ray's unix socket paths must stay < 108 bytes
DEFAULT_STATE_DIR = str(Path(tempfile.gettempdir()) / "xfer-topology")
STATE_FILE = "state.json"
LOCK_FILE = str(Path(tempfile.gettempdir()) / "xfer-topology.lock")  # serialises subnet choice between `up`s
SUBNET_PREFIX = "10.213"
BUCKET = "xfer-topology"
GCS_PORT = 6380  # inside the head's namespace; 6379 is Redis's on dev machines
DASHBOARD_PORT = 8265
PG_DSN = "host=127.0.0.1 port=5432 user=postgres connect_timeout=10"  # trust auth on loopback
OBJECT_STORE_BYTES = 256 * 1024**2  # per node; the smoke dataset is < 1 MB; the default is 30% of RAM
START_TIMEOUT_S = 180  # each service; MLflow's schema migration on PostgreSQL takes ~10-30 s


@dataclass
class Topology:
    """Everything `down` needs, written to STATE_FILE after each resource is created, so a
    failed `up` can still be torn down."""
    run_id: str
    state_dir: str
    subnet: str = ""  # "10.213.K"
    bridge: str = ""
    namespaces: list[str] = field(default_factory=list)  # head first
    database: str = ""
    moto_port: int = 0
    mlflow_port: int = 0
    pids: dict[str, int] = field(default_factory=dict)  # process-group leaders: moto, mlflow
    cmd_marks: dict[str, str] = field(default_factory=dict)  # a string each one's cmdline holds

    # --- addresses ----------------------------------------------------------------------------
    @property
    def host_ip(self) -> str:
        return f"{self.subnet}.1"

    @property
    def node_ips(self) -> list[str]:
        return [f"{self.subnet}.{i + 2}" for i in range(len(self.namespaces))]

    @property
    def head_ip(self) -> str:
        return self.node_ips[0]

    @property
    def s3_endpoint(self) -> str:
        return f"http://{self.host_ip}:{self.moto_port}"

    @property
    def tracking_uri(self) -> str:
        return f"http://{self.host_ip}:{self.mlflow_port}"

    @property
    def gcs_address(self) -> str:
        return f"{self.head_ip}:{GCS_PORT}"

    @property
    def dashboard_url(self) -> str:
        return f"http://{self.head_ip}:{DASHBOARD_PORT}"

    @property
    def backend_store_uri(self) -> str:
        # +psycopg2: SQLAlchemy 2.1 maps a bare postgresql:// to psycopg 3, which is not installed
        return f"postgresql+psycopg2://postgres@127.0.0.1:5432/{self.database}"  # trust auth

    @property
    def token_path(self) -> str:
        return os.path.join(self.state_dir, "ray_token")

    def ray_temp_dir(self, index: int) -> str:
        return os.path.join(self.state_dir, f"n{index}")

    @property
    def credentials_file(self) -> str:
        return os.path.join(self.state_dir, "aws_credentials")

    # --- environments -------------------------------------------------------------------------
    def aws_credentials(self) -> dict[str, str]:
        """Fake keys (moto accepts any), unique per run so that a leak is detectable."""
        return {"AWS_ACCESS_KEY_ID": "xfer-topology", "AWS_SECRET_ACCESS_KEY": f"fake-secret-{self.run_id}"}

    def ray_cli_env(self) -> dict[str, str]:
        """Environment for `ray` commands: token auth, the token read from a 0600 file
        (RAY_AUTH_TOKEN_PATH), so it is in no process's environment or command line and
        ~/.ray/auth_token, which other clusters on this machine use, is left alone."""
        env = dict(_clean_env(), RAY_AUTH_MODE="token", RAY_AUTH_TOKEN_PATH=self.token_path,
                   RAY_USAGE_STATS_ENABLED="0")
        # the job's `python` must be this environment's, as on a cluster built from constraints.txt
        env["PATH"] = f"{BIN}{os.pathsep}{env.get('PATH', '')}"
        return env

    def s3_client_env(self) -> dict[str, str]:
        """How S3 clients here find their keys: a 0600 credentials file, the stand-in for an
        instance role. Never AWS_ACCESS_KEY_ID/AWS_SECRET_ACCESS_KEY in a Ray node's environment:
        Ray Tune copies those two from the driver into every trial actor's runtime env
        (ray/tune/execution/class_cache.py), and each node's runtime_env_agent.log prints runtime
        envs verbatim; the same holds for anything passed with --runtime-env-json."""
        return {"AWS_SHARED_CREDENTIALS_FILE": self.credentials_file, "AWS_DEFAULT_REGION": "us-east-1"}

    def node_env(self) -> dict[str, str]:
        """Environment of each `ray start`, inherited by every Ray process of the node: the job's
        driver and its trials."""
        return {**self.ray_cli_env(), **self.s3_client_env()}

    def job_env_vars(self) -> dict[str, str]:
        """The job's runtime env (--runtime-env-json): locations only, no secrets. Ray hands it to
        the driver and to every trial on every node. No MLFLOW_S3_ENDPOINT_URL: artifacts go
        through the tracking server (--serve-artifacts), so the job never talks to S3 for MLflow."""
        return {"MLFLOW_TRACKING_URI": self.tracking_uri, "AWS_ENDPOINT_URL": self.s3_endpoint}

    def submit_command(self, sweep_args: list[str], submission_id: str | None = None) -> list[str]:
        runtime_env = json.dumps({"env_vars": self.job_env_vars()})
        cmd = [str(BIN / "ray"), "job", "submit", "--address", self.dashboard_url,
               "--working-dir", ".", "--runtime-env-json", runtime_env]
        if submission_id:
            cmd += ["--submission-id", submission_id]
        return [*cmd, "--", "python", *sweep_args]

    # --- state --------------------------------------------------------------------------------
    def save(self) -> None:
        path = Path(self.state_dir) / STATE_FILE
        tmp = path.with_suffix(".tmp")
        tmp.write_text(json.dumps(asdict(self), indent=2))
        tmp.replace(path)

    @classmethod
    def load(cls, state_dir: str) -> Topology | None:
        path = Path(state_dir) / STATE_FILE
        return cls(**json.loads(path.read_text())) if path.is_file() else None


# --- prerequisites ------------------------------------------------------------------------------

def unavailable_reason() -> str | None:
    """Why this machine cannot run the topology (None if it can): root and `ip netns` are needed."""
    if os.geteuid() != 0:
        return "needs root (ip netns, veth and bridge interfaces)"
    if shutil.which("ip") is None:
        return "needs iproute2's `ip` command"
    probe = f"xfer-probe-{secrets.token_hex(3)}"
    made = subprocess.run(["ip", "netns", "add", probe], capture_output=True, text=True)
    if made.returncode != 0:
        return f"`ip netns add` failed: {made.stderr.strip()}"
    subprocess.run(["ip", "netns", "del", probe], capture_output=True)
    return None


def _check_tools() -> None:
    for tool in ("ray", "mlflow", "moto_server"):
        if not (BIN / tool).exists():
            raise FileNotFoundError(f"{BIN / tool} not found: run this with the venv's python "
                                    f"(.venv/bin/python infra/local/topology.py)")


# --- up -----------------------------------------------------------------------------------------

def up(state_dir: str = DEFAULT_STATE_DIR, nodes: int = 2, log=print) -> Topology:
    """Start everything; on any failure tear down what was started and re-raise."""
    if nodes < 2:
        raise ValueError(f"nodes must be >= 2 (a head and at least one worker), got {nodes}")
    _check_tools()
    Path(state_dir).mkdir(parents=True, exist_ok=True)
    if Topology.load(state_dir) is not None:
        raise FileExistsError(f"{state_dir}/{STATE_FILE} exists: a topology is up (or was not torn "
                              f"down); run `topology.py down --state-dir {state_dir}` first")
    os.chmod(state_dir, 0o700)
    topo = Topology(run_id=secrets.token_hex(3), state_dir=state_dir)
    topo.save()
    try:
        _network(topo, nodes, log)
        _database(topo, log)
        _moto(topo, log)
        _mlflow(topo, log)
        _ray(topo, log)
    except BaseException:
        log("start failed; tearing down what was started")
        for problem in down(state_dir, log=log):
            log(f"teardown: {problem}")
        raise
    return topo


def _ip(*args: str) -> None:
    done = subprocess.run(["ip", *args], capture_output=True, text=True)
    if done.returncode != 0:
        raise RuntimeError(f"ip {' '.join(args)}: {done.stderr.strip()}")


def _free_subnet() -> str:
    """The first 10.213.K.0/24 that no address or route on this machine overlaps."""
    used = []
    for line in subprocess.run(["ip", "-4", "route", "show", "table", "all"], capture_output=True,
                               text=True, check=True).stdout.splitlines():
        target = line.split()[0] if line.split() else ""
        if target and target[0].isdigit():
            with contextlib.suppress(ValueError):
                used.append(ipaddress.ip_network(target, strict=False))
    for k in range(256):
        net = ipaddress.ip_network(f"{SUBNET_PREFIX}.{k}.0/24")
        if not any(net.overlaps(u) for u in used if u.prefixlen > 0):
            return f"{SUBNET_PREFIX}.{k}"
    raise RuntimeError(f"no free {SUBNET_PREFIX}.K.0/24 subnet on this machine")


def _network(topo: Topology, nodes: int, log) -> None:
    with open(LOCK_FILE, "a") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)  # two `up`s at once must not pick the same subnet
        topo.subnet = _free_subnet()
        topo.bridge = f"xfbr{topo.run_id}"
        topo.save()
        _ip("link", "add", topo.bridge, "type", "bridge")
        _ip("addr", "add", f"{topo.host_ip}/24", "dev", topo.bridge)
        _ip("link", "set", topo.bridge, "up")
    for i in range(nodes):
        ns, outer, inner = f"xfer-{topo.run_id}-n{i}", f"xfv{topo.run_id}{i}", f"xfp{topo.run_id}{i}"
        _ip("netns", "add", ns)
        topo.namespaces.append(ns)
        topo.save()
        _ip("netns", "exec", ns, "ip", "link", "set", "lo", "up")
        _ip("link", "add", outer, "type", "veth", "peer", "name", inner)
        _ip("link", "set", inner, "netns", ns)  # deleting the namespace deletes the pair
        _ip("link", "set", outer, "master", topo.bridge, "up")
        _ip("netns", "exec", ns, "ip", "addr", "add", f"{topo.node_ips[i]}/24", "dev", inner)
        _ip("netns", "exec", ns, "ip", "link", "set", inner, "up")
    log(f"network: bridge {topo.bridge} {topo.host_ip}/24; "
        + ", ".join(f"{ns} {ip}" for ns, ip in zip(topo.namespaces, topo.node_ips)))


def _database(topo: Topology, log) -> None:
    import psycopg2

    name = f"xfer_topology_{topo.run_id}"
    try:
        conn = pg_connect()
    except psycopg2.OperationalError as exc:
        raise RuntimeError(f"PostgreSQL is not reachable at 127.0.0.1:5432 as user postgres "
                           f"(.ci/run starts it): {str(exc).strip()}") from exc
    conn.autocommit = True  # CREATE DATABASE cannot run inside a transaction
    try:
        with conn.cursor() as cur:
            cur.execute(f'CREATE DATABASE "{name}"')
    finally:
        conn.close()
    topo.database = name
    topo.save()
    log(f"database: {name} on 127.0.0.1:5432")


def _free_port(host: str) -> int:
    with socket.socket() as sock:
        sock.bind((host, 0))
        return sock.getsockname()[1]


def _spawn(topo: Topology, name: str, cmd: list[str], env: dict, mark: str) -> None:
    """A long-running host process in its own session (so its group can be killed whole and it
    outlives `up`), logging to <state_dir>/<name>.log; its PID is recorded before anything else."""
    with open(os.path.join(topo.state_dir, f"{name}.log"), "ab") as log_file:  # the child keeps a copy
        proc = subprocess.Popen(cmd, env=env, stdin=subprocess.DEVNULL, stdout=log_file,
                                stderr=subprocess.STDOUT, start_new_session=True, cwd=topo.state_dir)
    topo.pids[name] = proc.pid
    topo.cmd_marks[name] = mark
    topo.save()


def _wait_http(url: str, name: str, topo: Topology, ok=(200,)) -> None:
    deadline = time.monotonic() + START_TIMEOUT_S
    while time.monotonic() < deadline:
        if not _alive(topo.pids[name]):
            raise RuntimeError(f"{name} exited during start-up; its log: "
                               f"{_tail(os.path.join(topo.state_dir, name + '.log'))}")
        try:
            with urllib.request.urlopen(url, timeout=5) as response:
                if response.status in ok:
                    return
        except (urllib.error.URLError, OSError):
            pass
        time.sleep(0.5)
    raise TimeoutError(f"{name} did not answer {url} within {START_TIMEOUT_S} s")


def _clean_env() -> dict[str, str]:
    """This process's environment without what would point a child at another cluster, server
    or account (RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER=0, set by local-Ray tests, forbids worker nodes)."""
    drop = ("RAY_ADDRESS", "RAY_AUTH_TOKEN", "RAY_AUTH_TOKEN_PATH", "RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER",
            "MLFLOW_TRACKING_URI", "MLFLOW_S3_ENDPOINT_URL", "AWS_ENDPOINT_URL", "AWS_ENDPOINT_URL_S3",
            "AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_SESSION_TOKEN", "AWS_SECURITY_TOKEN",
            "AWS_PROFILE", "AWS_SHARED_CREDENTIALS_FILE", "AWS_CONFIG_FILE")
    return {k: v for k, v in os.environ.items() if k not in drop}


def _moto(topo: Topology, log) -> None:
    import boto3

    credentials = topo.aws_credentials()
    with open(os.open(topo.credentials_file, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600), "w") as out:
        out.write(f"[default]\naws_access_key_id = {credentials['AWS_ACCESS_KEY_ID']}\n"
                  f"aws_secret_access_key = {credentials['AWS_SECRET_ACCESS_KEY']}\n")
    topo.moto_port = _free_port(topo.host_ip)
    _spawn(topo, "moto", [str(BIN / "moto_server"), "-H", topo.host_ip, "-p", str(topo.moto_port)],
           _clean_env(), mark=f"{topo.host_ip} -p {topo.moto_port}")
    _wait_http(f"{topo.s3_endpoint}/", "moto", topo)
    boto3.client("s3", endpoint_url=topo.s3_endpoint, region_name="us-east-1",
                 aws_access_key_id=credentials["AWS_ACCESS_KEY_ID"],
                 aws_secret_access_key=credentials["AWS_SECRET_ACCESS_KEY"]).create_bucket(Bucket=BUCKET)
    log(f"S3 (moto): {topo.s3_endpoint}, bucket {BUCKET}")


def _mlflow(topo: Topology, log) -> None:
    topo.mlflow_port = _free_port(topo.host_ip)
    # the server is the only MLflow client of S3: its endpoint and keys are its own
    env = {**_clean_env(), **topo.s3_client_env(), "MLFLOW_S3_ENDPOINT_URL": topo.s3_endpoint,
           # no job runner: MLflow 3 starts one and seven huey consumers beside the server for
           # GenAI jobs xfer never submits, ~24 CPU-s of a ~35 CPU-s start on 2 cores
           "MLFLOW_SERVER_ENABLE_JOB_EXECUTION": "false"}
    hostport = f"{topo.host_ip}:{topo.mlflow_port}"
    _spawn(topo, "mlflow", [
        str(BIN / "mlflow"), "server",
        "--backend-store-uri", topo.backend_store_uri,
        "--serve-artifacts", "--artifacts-destination", f"s3://{BUCKET}/mlflow",
        "--host", topo.host_ip, "--port", str(topo.mlflow_port),
        "--allowed-hosts", f"{hostport},{topo.host_ip}",
        "--workers", "1"], env, mark=topo.backend_store_uri)
    _wait_http(f"{topo.tracking_uri}/health", "mlflow", topo)
    log(f"MLflow: {topo.tracking_uri} (backend {topo.backend_store_uri}, artifacts "
        f"s3://{BUCKET}/mlflow via the server)")


def _ray(topo: Topology, log) -> None:
    with open(os.open(topo.token_path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600), "w") as out:
        out.write(secrets.token_hex(32))  # what `ray get-auth-token --generate` makes
    env = topo.node_env()
    for i, (ns, ip) in enumerate(zip(topo.namespaces, topo.node_ips)):
        role = (["--head", "--port", str(GCS_PORT), "--dashboard-host", ip,
                 "--dashboard-port", str(DASHBOARD_PORT), "--disable-usage-stats"]
                if i == 0 else ["--address", topo.gcs_address])
        cmd = ["ip", "netns", "exec", ns, str(BIN / "ray"), "start", *role, "--node-ip-address", ip,
               # one CPU per node: with one CPU per trial, concurrent trials land on different nodes
               "--num-cpus", "1", "--num-gpus", "0",
               "--object-store-memory", str(OBJECT_STORE_BYTES), "--temp-dir", topo.ray_temp_dir(i)]
        done = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=START_TIMEOUT_S)
        if done.returncode != 0:
            raise RuntimeError(f"ray start in {ns} failed: {done.stdout[-1500:]}{done.stderr[-1500:]}")
    deadline = time.monotonic() + START_TIMEOUT_S
    while (alive := ray_nodes(topo)) < len(topo.namespaces):
        if time.monotonic() > deadline:
            raise TimeoutError(f"only {alive} of {len(topo.namespaces)} Ray nodes joined")
        time.sleep(1)
    log(f"Ray: head {topo.gcs_address} (job API {topo.dashboard_url}), "
        f"{len(topo.namespaces)} nodes, 1 CPU each")


def ray_nodes(topo: Topology) -> int:
    """Alive Ray nodes, from the cluster's own view (`ray list nodes` in the head's namespace)."""
    done = subprocess.run(
        ["ip", "netns", "exec", topo.namespaces[0], str(BIN / "ray"), "list", "nodes",
         "--address", topo.dashboard_url, "--format", "json", "--filter", "state=ALIVE"],
        env=topo.ray_cli_env(), capture_output=True, text=True, timeout=60)
    if done.returncode != 0:
        return 0
    try:
        return len(json.loads(done.stdout))
    except ValueError:
        return 0


# --- processes and sockets ----------------------------------------------------------------------

def _alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except (OSError, IndexError):
        return False
    return state != "Z"


def _cmdline(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
    except OSError:
        return ""


def group_pids(leader: int) -> list[int]:
    """Live processes in the process group ``leader`` started (its session, in fact)."""
    pids = []
    for proc in Path("/proc").iterdir():
        if proc.name.isdigit():
            with contextlib.suppress(OSError, ProcessLookupError):
                if os.getpgid(int(proc.name)) == leader and _alive(int(proc.name)):
                    pids.append(int(proc.name))
    return pids


def namespace_pids(ns: str) -> list[int]:
    done = subprocess.run(["ip", "netns", "pids", ns], capture_output=True, text=True)
    return [int(p) for p in done.stdout.split() if p.isdigit() and _alive(int(p))]


def host_pids(topo: Topology) -> list[int]:
    """Every live process of the host-side services (moto, MLflow and their children)."""
    return sorted({p for leader in topo.pids.values() for p in group_pids(leader)})


def listening_sockets(pid: int) -> list[tuple[str, int]]:
    """(address, port) of the TCP sockets ``pid`` listens on, read from /proc."""
    inodes = set()
    with contextlib.suppress(OSError):
        for fd in Path(f"/proc/{pid}/fd").iterdir():
            with contextlib.suppress(OSError):
                target = os.readlink(fd)
                if target.startswith("socket:["):
                    inodes.add(target[8:-1])
    found = []
    for table, width in (("tcp", 4), ("tcp6", 16)):
        with contextlib.suppress(OSError):
            for line in Path(f"/proc/{pid}/net/{table}").read_text().splitlines()[1:]:
                cols = line.split()
                if cols[3] != "0A" or cols[9] not in inodes:  # 0A: LISTEN
                    continue
                hex_addr, hex_port = cols[1].split(":")
                raw = bytes.fromhex(hex_addr)
                # /proc prints each 32-bit word in host (little-endian) order
                raw = b"".join(raw[i:i + 4][::-1] for i in range(0, width, 4))
                found.append((str(ipaddress.ip_address(raw)), int(hex_port, 16)))
    return found


def wildcard_listeners(pids: list[int]) -> list[str]:
    return [f"pid {pid} ({_cmdline(pid)[:80]}) listens on {addr}:{port}"
            for pid in pids for addr, port in listening_sockets(pid)
            if ipaddress.ip_address(addr).is_unspecified]


# --- down ---------------------------------------------------------------------------------------

def _kill(pids: list[int], grace_s: float = 5.0) -> None:
    for sig, wait_s in ((signal.SIGTERM, grace_s), (signal.SIGKILL, 10.0)):
        for pid in pids:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, sig)
        deadline = time.monotonic() + wait_s
        while any(_alive(p) for p in pids) and time.monotonic() < deadline:
            time.sleep(0.2)
        pids = [p for p in pids if _alive(p)]
        if not pids:
            return


def down(state_dir: str = DEFAULT_STATE_DIR, log=print, keep_state: bool = False) -> list[str]:
    """Tear down what the state file records, each step attempted even when one fails; returns
    what could not be removed (empty: nothing of this topology is left)."""
    topo = Topology.load(state_dir)
    if topo is None:
        return []
    problems: list[str] = []

    def attempt(what: str, fn) -> None:
        try:
            fn()
        except Exception as exc:  # noqa: BLE001 - teardown goes on; the caller gets the list
            problems.append(f"{what}: {type(exc).__name__}: {exc}")

    # Ray: every process in each namespace (raylet, GCS, dashboard, workers, the job's driver);
    # only processes we started can be in a namespace we created. Worker nodes first.
    for ns in reversed(topo.namespaces):
        attempt(f"stop processes in {ns}", lambda ns=ns: _kill(namespace_pids(ns)))
    for name, leader in topo.pids.items():
        # the recorded PID is ours only while its command line still names this topology
        if _alive(leader) and topo.cmd_marks.get(name, "\0") not in _cmdline(leader):
            problems.append(f"{name}: PID {leader} is now another program; not killed")
            continue
        attempt(f"stop {name}", lambda leader=leader: _kill(group_pids(leader)))
    if topo.database:
        attempt(f"drop database {topo.database}", lambda: _drop_database(topo.database))
    for ns in topo.namespaces:  # removes each namespace's veth pair too
        if ns in netns_list():
            attempt(f"delete namespace {ns}", lambda ns=ns: _ip("netns", "del", ns))
    if topo.bridge and _link_exists(topo.bridge):
        attempt(f"delete bridge {topo.bridge}", lambda: _ip("link", "del", topo.bridge))
    # the kernel removes a deleted namespace's interfaces asynchronously: give it a moment
    deadline = time.monotonic() + 15
    while (left := leftovers(topo)) and time.monotonic() < deadline:
        time.sleep(0.5)
    problems += [f"still there: {item}" for item in left]
    if not problems and not keep_state:
        shutil.rmtree(state_dir, ignore_errors=True)
    log("topology down" if not problems else "topology down, with problems:\n  " + "\n  ".join(problems))
    return problems


def pg_connect(database: str = "postgres"):
    import psycopg2

    return psycopg2.connect(f"{PG_DSN} dbname={database}")


def _drop_database(name: str) -> None:
    conn = pg_connect()
    conn.autocommit = True
    try:
        with conn.cursor() as cur:
            cur.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')  # PostgreSQL >= 13
    finally:
        conn.close()


def netns_list() -> list[str]:
    done = subprocess.run(["ip", "netns", "list"], capture_output=True, text=True)
    return [line.split()[0] for line in done.stdout.splitlines() if line.strip()]


def _link_exists(name: str) -> bool:
    return subprocess.run(["ip", "link", "show", name], capture_output=True).returncode == 0


def _database_exists(name: str) -> bool:
    conn = pg_connect()
    try:
        with conn.cursor() as cur:
            cur.execute("SELECT 1 FROM pg_database WHERE datname = %s", (name,))
            found = cur.fetchone() is not None
    finally:
        conn.close()
    return found


def leftovers(topo: Topology) -> list[str]:
    """What of this topology still exists: processes, namespaces, interfaces, the database."""
    left = [f"namespace {ns}" for ns in topo.namespaces if ns in netns_list()]
    left += [f"{name} process group {leader}: PIDs {group_pids(leader)}"
             for name, leader in topo.pids.items()
             if group_pids(leader) and topo.cmd_marks.get(name, "\0") in _cmdline(leader)]
    links = subprocess.run(["ip", "-o", "link", "show"], capture_output=True, text=True).stdout
    left += [f"interface {word.split('@')[0]}" for word in links.split()
             if word.rstrip(":").split("@")[0].startswith((f"xfbr{topo.run_id}", f"xfv{topo.run_id}"))]
    if topo.database:
        with contextlib.suppress(Exception):
            if _database_exists(topo.database):
                left.append(f"database {topo.database}")
    return left


# --- status and the CLI -------------------------------------------------------------------------

def _tail(path: str, chars: int = 2000) -> str:
    with contextlib.suppress(OSError):
        return Path(path).read_text(errors="replace")[-chars:]
    return "(no log)"


def describe(topo: Topology) -> str:
    """Addresses and the exact commands to use the topology by hand."""
    sweep = ["sweeps/pdf_grid.py", "--preset", "smoke", "--storage", f"s3://{BUCKET}/runs"]
    submit = " ".join(_quote(a) for a in topo.submit_command(sweep))
    return "\n".join([
        f"state:        {topo.state_dir}/{STATE_FILE}",
        f"PostgreSQL:   127.0.0.1:5432 database {topo.database}",
        f"S3 (moto):    {topo.s3_endpoint}  bucket {BUCKET}  (logs: {topo.state_dir}/moto.log)",
        f"MLflow:       {topo.tracking_uri}  (logs: {topo.state_dir}/mlflow.log)",
        f"Ray head:     {topo.gcs_address} in namespace {topo.namespaces[0]}",
        f"Ray job API:  {topo.dashboard_url}",
        *[f"Ray node:     {ip} in namespace {ns}" for ns, ip in zip(topo.namespaces[1:], topo.node_ips[1:])],
        "",
        "Submit the smoke sweep (from the repository root):",
        f"  export RAY_AUTH_MODE=token RAY_AUTH_TOKEN_PATH={topo.token_path}",
        f"  {submit}",
        "Look at it:",
        f"  open {topo.tracking_uri} in a browser on this machine",
        (f"  AWS_SHARED_CREDENTIALS_FILE={topo.credentials_file} {BIN / 'python'} -c \"import boto3; "
         f"print([o['Key'] for o in boto3.client('s3', endpoint_url='{topo.s3_endpoint}', "
         f"region_name='us-east-1').list_objects_v2(Bucket='{BUCKET}').get('Contents', [])])\""),
        "A shell on a node:",
        f"  ip netns exec {topo.namespaces[1]} bash",
        f"Tear down: {BIN / 'python'} {Path(__file__).relative_to(REPO)} down --state-dir {topo.state_dir}",
    ])


def _quote(arg: str) -> str:
    import shlex

    return shlex.quote(arg)


def status(topo: Topology) -> list[str]:
    lines = []
    for name, leader in topo.pids.items():
        pids = group_pids(leader)
        lines.append(f"{name}: {'up' if pids else 'DOWN'} (PIDs {pids})")
    for url, name in ((f"{topo.tracking_uri}/health", "MLflow health"), (f"{topo.s3_endpoint}/", "S3")):
        try:
            with urllib.request.urlopen(url, timeout=5) as response:
                lines.append(f"{name}: HTTP {response.status}")
        except (urllib.error.URLError, OSError) as exc:
            lines.append(f"{name}: unreachable ({exc})")
    lines.append(f"Ray nodes alive: {ray_nodes(topo)} of {len(topo.namespaces)}")
    for ns in topo.namespaces:
        lines.append(f"{ns}: {len(namespace_pids(ns))} processes")
    wild = wildcard_listeners(host_pids(topo))
    lines.append("host sockets on 0.0.0.0/[::]: " + ("none" if not wild else "; ".join(wild)))
    return lines


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="infra/local/topology.py",
        description="xfer's production topology (PostgreSQL, S3, MLflow server, multi-node Ray in "
                    "network namespaces) on this machine. Needs root.")
    parser.add_argument("command", choices=["up", "down", "status"],
                        help="up: start and print the addresses; down: stop it by the recorded "
                             "PIDs; status: what is running")
    parser.add_argument("--state-dir", default=DEFAULT_STATE_DIR,
                        help=f"where the state file, logs and Ray's temp dirs live "
                             f"(default: {DEFAULT_STATE_DIR}; keep it short)")
    parser.add_argument("--nodes", type=int, default=2,
                        help="Ray nodes, head included, one namespace each (default: 2)")
    args = parser.parse_args(argv)
    if args.command == "up":
        reason = unavailable_reason()
        if reason:
            print(f"topology.py: error: {reason}", file=sys.stderr)
            return 2
        try:
            topo = up(args.state_dir, nodes=args.nodes)
        except (ValueError, FileExistsError, FileNotFoundError) as exc:
            print(f"topology.py: error: {exc}", file=sys.stderr)
            return 2
        print()
        print(describe(topo))
        return 0
    topo = Topology.load(args.state_dir)
    if topo is None:
        print(f"topology.py: no topology recorded in {args.state_dir}", file=sys.stderr)
        return 2 if args.command == "status" else 0
    if args.command == "status":
        print(describe(topo))
        print()
        print("\n".join(status(topo)))
        return 0
    return 1 if down(args.state_dir) else 0


if __name__ == "__main__":
    sys.exit(main())
