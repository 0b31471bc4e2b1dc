"""Run a command-line entry point as its own process, forked from a warm interpreter.

Importing torch, torchvision, MLflow, Ray and Tune costs ~9 CPU-s on the 2-core CI machine,
before a command does any work of its own: most bad-input cases then fail in well under a
second, and a smoke sweep's driver does ~12 CPU-s more. ``WarmPython`` imports those libraries
once, in a server process, and forks a child from it per command. The child is a process of
its own: it gets the command's argv, environment, working directory, /dev/null on stdin and
files on stdout and stderr (unbuffered where the environment sets PYTHONUNBUFFERED), a session
of its own if asked, and runs the script or module as ``__main__`` (exactly what ``python
SCRIPT`` and ``python -m MODULE`` run, xfer imported afresh). Its exit status is the
command's: an uncaught exception prints its traceback and exits 1 (an uncaught Ctrl-C: killed
by SIGINT), as the interpreter does, and non-daemon threads are joined before the atexit
functions run, as at a normal exit.

Measured on the idle 2-core machine (2026-12-03), the smoke sweep: 51 busy CPU-s and 38-40 s
cold, 36-40 CPU-s and 24-26 s forked from here.

What it does not redo is the libraries' import, so anything they read from the environment at
import time comes from the server's (the tests' own) environment. That is why matplotlib is
not preloaded: it fixes its config folder when imported, and a sweep points it into its own
cache. The tests that need a truly cold process keep using ``subprocess``: the shared smoke
sweep, the tests of where a sweep writes and of its Ray's sockets, and
``tests/test_bad_input.py``'s check that both give the same answer.
"""

from __future__ import annotations

import json
import os
import select
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
# Ray reads this once, at import: the server imports it set to 0 (loopback), as every test's
# sweep_env sets it, so a driver that joins a cluster by RAY_ADDRESS dials 127.0.0.1.
LOOPBACK = "RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER"
# Not matplotlib (its config folder, above).
PRELOAD = ("numpy", "torch", "torchvision", "mlflow", "mlflow.store.tracking.sqlalchemy_store", "ray",
           "ray.tune", "optuna", "scipy.stats", "ptflops")

_SERVER = r'''
import atexit, io, json, os, runpy, signal, sys, threading, traceback

def text_stream(fd, unbuffered, line_buffering):
    """What the interpreter makes of fd 1 or 2 at start-up, given PYTHONUNBUFFERED."""
    raw = io.FileIO(fd, "w", closefd=False)
    binary = raw if unbuffered else io.BufferedWriter(raw)
    errors = "backslashreplace" if fd == 2 else "strict"
    return io.TextIOWrapper(binary, encoding="utf-8", errors=errors, line_buffering=line_buffering,
                            write_through=unbuffered)

def child(request, ready):
    code, interrupted = 1, False
    try:
        if request.get("new_session"):
            os.setsid()
        os.chdir(request["cwd"])
        os.environ.clear()
        os.environ.update(request["env"])
        for fd, path, flags in ((0, os.devnull, os.O_RDONLY),
                                (1, request["stdout"], os.O_WRONLY | os.O_CREAT | os.O_TRUNC),
                                (2, request["stderr"], os.O_WRONLY | os.O_CREAT | os.O_TRUNC)):
            if fd == 2 and path == request["stdout"]:  # stderr=STDOUT: one file, one offset
                os.dup2(1, 2)
                continue
            opened = os.open(path, flags, 0o600)
            os.dup2(opened, fd)
            os.close(opened)
        sys.stdin = open(0, closefd=False)
        unbuffered = bool(request["env"].get("PYTHONUNBUFFERED"))
        sys.stdout = sys.__stdout__ = text_stream(1, unbuffered, False)
        sys.stderr = sys.__stderr__ = text_stream(2, unbuffered, True)
        os.close(ready)  # set up: its session and files exist when the caller gets the pid
        argv = request["argv"]
        if argv[0] == "-m":
            sys.argv = argv[1:]
            sys.path[0] = os.getcwd()
            runpy.run_module(argv[1], run_name="__main__", alter_sys=True)
        else:
            sys.argv = list(argv)
            sys.path[0] = os.path.dirname(os.path.abspath(argv[0]))
            runpy.run_path(argv[0], run_name="__main__")
        code = 0
    except SystemExit as exc:
        if exc.code is None or isinstance(exc.code, int):
            code = exc.code or 0
        else:
            print(exc.code, file=sys.stderr)
            code = 1
    except BaseException as exc:
        traceback.print_exc()
        interrupted = isinstance(exc, KeyboardInterrupt)
    finally:
        try:
            threading._shutdown()  # what the interpreter does at exit, before atexit
            atexit._run_exitfuncs()
            sys.stdout.flush()
            sys.stderr.flush()
            if interrupted:  # as the interpreter ends on an uncaught Ctrl-C: killed by it
                signal.signal(signal.SIGINT, signal.SIG_DFL)
                os.kill(os.getpid(), signal.SIGINT)
        finally:
            os._exit(code)

for name in sys.argv[1:]:
    __import__(name)
sys.stdout.flush()
for line in sys.stdin:
    wait_for, ready = os.pipe()
    pid = os.fork()
    if pid == 0:
        os.close(wait_for)
        child(json.loads(line), ready)
    os.close(ready)
    os.read(wait_for, 1)  # EOF once the child has closed its end (or died setting up)
    os.close(wait_for)
    print(json.dumps({"pid": pid}), flush=True)
    _, status = os.waitpid(pid, 0)
    print(json.dumps({"code": os.waitstatus_to_exitcode(status)}), flush=True)
'''


class WarmPython:
    """A server that has imported ``preload``. ``run`` takes ``subprocess.run``'s arguments and
    ``start`` ``subprocess.Popen``'s; one command at a time."""

    def __init__(self, preload: tuple[str, ...] = PRELOAD):
        env = {**os.environ, "PYTHONPATH": str(REPO), LOOPBACK: "0"}
        self.server = subprocess.Popen([sys.executable, "-c", _SERVER, *preload], stdin=subprocess.PIPE,
                                       stdout=subprocess.PIPE, env=env, bufsize=0)
        self._pending = b""
        self._running: WarmProcess | None = None
        # what ``start`` captures of stderr, one file per command: removed by ``close`` even
        # where a test never reads it
        self._captured = Path(tempfile.mkdtemp(prefix="warm-"))

    def close(self) -> None:
        self.server.stdin.close()
        try:
            self.server.wait(timeout=30)
        except subprocess.TimeoutExpired:
            self.server.kill()
            self.server.wait()
        shutil.rmtree(self._captured, ignore_errors=True)

    @staticmethod
    def forks(argv: list[str], env: dict) -> bool:
        """``[sys.executable, "-m", MODULE, ...]`` and ``[sys.executable, SCRIPT, ...]`` run warm;
        anything else (``-c``, another program), or a command whose Ray must not be on loopback,
        is started as usual."""
        return (len(argv) > 1 and argv[0] == sys.executable and (argv[1] == "-m" or argv[1].endswith(".py"))
                and env.get(LOOPBACK, "0") == "0")

    def run(self, argv: list[str], *, cwd=None, env: dict | None = None,
            timeout: float) -> subprocess.CompletedProcess:
        """``subprocess.run(argv, capture_output=True, text=True, ...)``, forked where it can be."""
        cwd, env = cwd or os.getcwd(), dict(os.environ) if env is None else env
        if not self.forks(argv, env):
            return subprocess.run(argv, cwd=cwd, env=env, timeout=timeout, capture_output=True,
                                  text=True, stdin=subprocess.DEVNULL)
        with tempfile.TemporaryDirectory(prefix="warm-") as folder:
            out, err = Path(folder) / "stdout", Path(folder) / "stderr"
            process = self.start(argv, cwd=cwd, env=env, stdout=out, stderr=err)
            try:
                process.wait(timeout)
            except subprocess.TimeoutExpired:
                process.kill()
                raise
            return subprocess.CompletedProcess(argv, process.returncode, out.read_text(errors="replace"),
                                               err.read_text(errors="replace"))

    def start(self, argv: list[str], *, cwd, env: dict, stdout: Path, stderr: Path | None = None,
              new_session: bool = False) -> WarmProcess:
        """Fork ``argv`` (a script or ``-m`` module, as ``forks`` says) with its output going to
        files: ``stdout``, and ``stderr`` (the same path: both in one) or a file of its own that
        ``communicate`` returns.
        ``new_session``: Popen's ``start_new_session``, so that ``os.killpg(pid)`` reaches the
        command and everything it starts, as a terminal's Ctrl-C does."""
        assert self.forks(argv, env), argv
        if self._running is not None and self._running.poll() is None:
            self._running.kill()  # left running by a test that failed: it must not block the next
        captured = None
        if stderr is None:
            fd, name = tempfile.mkstemp(prefix="stderr-", dir=self._captured)
            os.close(fd)
            captured = Path(name)
        request = {"argv": argv[1:], "cwd": str(cwd), "env": dict(env), "stdout": str(stdout),
                   "stderr": str(stderr or captured), "new_session": new_session}
        self.server.stdin.write((json.dumps(request) + "\n").encode())
        pid = self._answer(time.monotonic() + 60)["pid"]
        self._running = WarmProcess(self, argv, pid, Path(stdout), captured, new_session)
        return self._running

    def _answer(self, deadline: float) -> dict:
        fd = self.server.stdout.fileno()
        while b"\n" not in self._pending:
            left = deadline - time.monotonic()
            if not select.select([fd], [], [], max(left, 0))[0]:  # 0: poll(), does not block
                raise subprocess.TimeoutExpired(self.server.args, left)
            chunk = os.read(fd, 4096)
            if not chunk:
                raise RuntimeError(f"the warm python server exited ({self.server.poll()})")
            self._pending += chunk
        line, _, self._pending = self._pending.partition(b"\n")
        return json.loads(line)


class WarmProcess:
    """What ``WarmPython.start`` forked: the parts of ``subprocess.Popen`` the tests use. The
    server, its parent, reaps it and sends the exit status."""

    def __init__(self, server: WarmPython, args: list[str], pid: int, stdout: Path, stderr: Path | None,
                 session: bool):
        self.server, self.args, self.pid, self._session = server, args, pid, session
        self._stdout, self._stderr = stdout, stderr
        self.returncode: int | None = None

    def poll(self) -> int | None:
        return self.wait(timeout=0, raising=False)

    def wait(self, timeout: float | None = None, raising: bool = True) -> int | None:
        if self.returncode is None:
            deadline = time.monotonic() + (1e9 if timeout is None else timeout)
            try:
                self.returncode = self.server._answer(deadline)["code"]
            except subprocess.TimeoutExpired:
                if raising:
                    raise subprocess.TimeoutExpired(self.args, timeout) from None
        return self.returncode

    def communicate(self, timeout: float | None = None) -> tuple[str, str | None]:
        """Like Popen's for a command whose stdout went to a file: (that file's text, the
        captured stderr or None)."""
        self.wait(timeout)
        out = self._stdout.read_text(errors="replace")
        err = None
        if self._stderr is not None:
            err = self._stderr.read_text(errors="replace")
            self._stderr.unlink(missing_ok=True)
        return out, err

    def send_signal(self, signum: int) -> None:
        if self.returncode is None:
            try:
                os.kill(self.pid, signum)
            except ProcessLookupError:  # exited; the server has reaped it
                pass

    def kill(self) -> None:
        """SIGKILL, to its whole session if it has one (what it started goes too)."""
        if self._session and self.returncode is None:
            try:
                os.killpg(self.pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
        self.send_signal(signal.SIGKILL)
        self.wait(timeout=30)
