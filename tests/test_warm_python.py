"""The warm interpreter the sweep tests fork their drivers from (tests/warm_python.py) behaves
as a freshly started process where the tests depend on it: exit status, its own session for
Ctrl-C to the group, output unbuffered when asked, threads joined at exit."""

from __future__ import annotations

import os
import signal
import sys
import time

import pytest

from conftest import warm_runner

pytestmark = pytest.mark.slow  # the server imports torch, MLflow and Ray once: ~9 CPU-s

SCRIPT = '''
import os, sys, threading, time
print("pid", os.getpid(), "sid", os.getsid(0), flush=True)
if sys.argv[1] == "wait":
    print("waiting")  # no flush: reaches the file at once only when unbuffered
    time.sleep(60)
if sys.argv[1] == "thread":  # a non-daemon thread outlives the main one, as at a normal exit
    threading.Thread(target=lambda: (time.sleep(0.5), print("thread done", flush=True))).start()
    sys.exit(3)
print("to stderr", file=sys.stderr)
raise SystemExit(int(sys.argv[2]))
'''


@pytest.fixture
def script(tmp_path):
    path = tmp_path / "child.py"
    path.write_text(SCRIPT)
    return path


def test_run_returns_the_exit_code_and_both_streams(script, tmp_path):
    done = warm_runner().run([sys.executable, str(script), "exit", "7"], cwd=tmp_path, timeout=60)
    assert done.returncode == 7 and "to stderr" in done.stderr and "pid" in done.stdout


def test_a_started_command_has_its_own_session_and_dies_with_its_group(script, tmp_path):
    log = tmp_path / "log"
    process = warm_runner().start([sys.executable, str(script), "wait"], cwd=tmp_path,
                                  env={**os.environ, "PYTHONUNBUFFERED": "1"}, stdout=log, stderr=log,
                                  new_session=True)
    deadline = time.monotonic() + 30
    while "waiting" not in log.read_text() and time.monotonic() < deadline:
        time.sleep(0.05)
    assert "waiting" in log.read_text(), "unbuffered output did not reach the file"
    assert f"pid {process.pid} sid {process.pid}" in log.read_text()
    assert process.poll() is None
    os.killpg(process.pid, signal.SIGINT)  # Ctrl-C to the group: uncaught, as from a terminal
    assert process.wait(timeout=30) == -signal.SIGINT  # what a cold `python child.py` ends with
    assert "KeyboardInterrupt" in log.read_text()


def test_non_daemon_threads_finish_before_the_exit(script, tmp_path):
    done = warm_runner().run([sys.executable, str(script), "thread"], cwd=tmp_path, timeout=60)
    assert done.returncode == 3 and "thread done" in done.stdout


def test_poll_sees_the_exit_without_a_wait(script, tmp_path):
    process = warm_runner().start([sys.executable, str(script), "exit", "5"], cwd=tmp_path,
                                  env=dict(os.environ), stdout=tmp_path / "out")
    deadline = time.monotonic() + 30
    while process.poll() is None and time.monotonic() < deadline:
        time.sleep(0.05)
    assert process.returncode == 5


def test_captured_stderr_that_nobody_read_goes_with_the_server(script, tmp_path):
    from warm_python import WarmPython

    warm = WarmPython(preload=())  # nothing preloaded: only the capture is under test
    try:
        process = warm.start([sys.executable, str(script), "exit", "0"], cwd=tmp_path,
                             env=dict(os.environ), stdout=tmp_path / "out")
        assert process.wait(timeout=60) == 0  # and never communicate()
        [captured] = warm._captured.iterdir()
        assert captured.read_text() == "to stderr\n"
    finally:
        warm.close()
    assert not warm._captured.exists()
