"""The local Ray a sweep starts listens on 127.0.0.1 only, even when ray was imported before
xfer could set RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER (Ray reads it once, at import).

Each case runs in a fresh interpreter without that variable in its environment (the sweep
tests' ``sweep_env`` sets it, which would hide the bug), starts Ray the way a local sweep does
(``tune_run._start_ray``), lists the listening sockets of every process under it (GCS, raylet,
workers, agents) with psutil, and asks a worker which node address it runs on. A control case
starts Ray without xfer's fix, to show that the check sees a listener off loopback when there
is one (on this machine Ray otherwise binds the network interface).

The same probe counts the idle Python workers Ray started before any task: a local sweep's Ray
prestarts none (every trial runs in the sweep's runtime env, so prestarted workers would only
wait), while a plain local Ray does, which shows the count can see them."""

from __future__ import annotations

import ipaddress
import json
import os
import subprocess
import sys

import pytest

from conftest import REPO

PROBE = r"""
import json, sys, time
import ray  # first, before xfer: the order that used to leave Ray on every interface
import psutil

if sys.argv[1] == "xfer":
    from xfer.sweep.tune_run import _start_ray
    _start_ray(True, {})
else:  # the control: a plain local Ray
    ray.init(address="local", include_dashboard=False, log_to_driver=False)
try:
    time.sleep(3)  # prestarted workers, if any, are started as the driver connects
    idle = 0
    for process in psutil.Process().children(recursive=True):
        try:
            command = process.cmdline() + ["", ""]
        except psutil.Error:
            continue
        # a worker shows its script until it is set up, then its title (the raylet names
        # default_worker.py too, as an argument further on)
        idle += command[0].startswith("ray::IDLE") or command[1].endswith("default_worker.py")

    @ray.remote
    def where():
        return ray.util.get_node_ip_address()

    worker_ip = ray.get(where.remote())
    listening = []
    for process in [psutil.Process(), *psutil.Process().children(recursive=True)]:
        try:
            connections = process.net_connections(kind="inet")
        except psutil.Error:
            continue
        listening += [[process.name(), c.laddr.ip, c.laddr.port] for c in connections
                      if c.status == psutil.CONN_LISTEN]
    print(json.dumps({"listening": listening, "worker_ip": worker_ip, "idle": idle}))
finally:
    ray.shutdown()
"""



def _loopback(address: str) -> bool:
    """127.0.0.0/8 or ::1, also written IPv4-mapped (::ffff:127.0.0.1, as dual-stack sockets
    report it); a wildcard (0.0.0.0, ::) or an interface address is not."""
    ip = ipaddress.ip_address(address)
    return (getattr(ip, "ipv4_mapped", None) or ip).is_loopback


def _probe(mode: str, tmp_path) -> dict:
    env = {k: v for k, v in os.environ.items()
           if k not in ("RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER", "RAY_ADDRESS")}
    env["PYTHONPATH"] = str(REPO)
    done = subprocess.run([sys.executable, "-c", PROBE, mode], capture_output=True, text=True,
                          timeout=180, env=env, cwd=tmp_path)
    assert done.returncode == 0, done.stderr[-3000:]
    return json.loads(done.stdout.strip().splitlines()[-1])


@pytest.fixture(scope="module")
def xfer_ray(tmp_path_factory) -> dict:
    """What the probe saw of a Ray started as a local sweep starts it."""
    return _probe("xfer", tmp_path_factory.mktemp("xfer"))


@pytest.fixture(scope="module")
def plain_ray(tmp_path_factory) -> dict:
    """What the probe saw of a plain local Ray: the control."""
    return _probe("plain", tmp_path_factory.mktemp("plain"))


@pytest.mark.slow
def test_a_local_sweeps_ray_listens_on_loopback_only_even_if_ray_was_imported_first(xfer_ray):
    seen = xfer_ray
    names = {name for name, _, _ in seen["listening"]}
    assert any("gcs_server" in n for n in names) and any("raylet" in n for n in names), seen
    off_loopback = [entry for entry in seen["listening"] if not _loopback(entry[1])]
    assert off_loopback == [], off_loopback
    assert seen["worker_ip"] == "127.0.0.1"


@pytest.mark.slow
def test_the_check_sees_a_listener_off_loopback_when_ray_starts_without_the_fix(plain_ray):
    seen = plain_ray
    off_loopback = [entry for entry in seen["listening"] if not _loopback(entry[1])]
    assert off_loopback, seen  # e.g. gcs_server on 0.0.0.0 or the interface's address
    assert seen["worker_ip"] != "127.0.0.1"


@pytest.mark.slow
def test_a_local_sweeps_ray_prestarts_no_idle_workers(xfer_ray):
    assert xfer_ray["idle"] == 0, xfer_ray


@pytest.mark.slow
def test_the_count_sees_the_idle_workers_a_plain_ray_prestarts(plain_ray):
    assert plain_ray["idle"] > 0, plain_ray
