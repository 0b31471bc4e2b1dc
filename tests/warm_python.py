"""Run a command-line entry point as its own process, forked from a warm interpreter.

Most bad-input cases fail in well under a second of xfer's own work, after 2-5 s of importing
torch, torchvision and MLflow (measured on the 2-core CI machine, twice that beside the other
xdist worker), and the table has ~85 of them. ``WarmPython`` imports those libraries once, in a
server process, and forks a child from it per command. The child is a process of its own: it
gets the command's argv, environment, working directory, /dev/null on stdin and files on
stdout and stderr, runs the script or module as ``__main__`` (exactly what ``python SCRIPT``
and ``python -m MODULE`` run, xfer imported afresh), and its exit status is the command's: an
uncaught exception prints its traceback and exits 1, as the interpreter does.

What it does not redo is the libraries' import, so anything they read from the environment at
import time comes from the server's (the tests' own) environment; the tests that need a truly
cold process keep using ``subprocess.run``, and ``tests/test_bad_input.py`` checks that both
give the same answer.
"""

from __future__ import annotations

import json
import os
import select
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
PRELOAD = ("numpy", "torch", "torchvision", "mlflow")

_SERVER = r'''
import atexit, json, os, runpy, sys, traceback

def child(request):
    code = 1
    try:
        os.chdir(request["cwd"])
        os.environ.clear()
        os.environ.update(request["env"])
        for fd, path, flags in ((0, os.devnull, os.O_RDONLY),
                                (1, request["stdout"], os.O_WRONLY | os.O_CREAT | os.O_TRUNC),
                                (2, request["stderr"], os.O_WRONLY | os.O_CREAT | os.O_TRUNC)):
            opened = os.open(path, flags, 0o600)
            os.dup2(opened, fd)
            os.close(opened)
        sys.stdin = open(0, closefd=False)
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
    except BaseException:
        traceback.print_exc()
        code = 1
    finally:
        try:
            atexit._run_exitfuncs()
            sys.stdout.flush()
            sys.stderr.flush()
        finally:
            os._exit(code)

for name in sys.argv[1:]:
    __import__(name)
sys.stdout.flush()
for line in sys.stdin:
    pid = os.fork()
    if pid == 0:
        child(json.loads(line))
    print(json.dumps({"pid": pid}), flush=True)
    _, status = os.waitpid(pid, 0)
    print(json.dumps({"code": os.waitstatus_to_exitcode(status)}), flush=True)
'''


class WarmPython:
    """A server that has imported ``preload``; ``run`` takes ``subprocess.run``'s arguments."""

    def __init__(self, preload: tuple[str, ...] = PRELOAD):
        env = {**os.environ, "PYTHONPATH": str(REPO)}
        self.server = subprocess.Popen([sys.executable, "-c", _SERVER, *preload], stdin=subprocess.PIPE,
                                       stdout=subprocess.PIPE, env=env, bufsize=0)
        self._pending = b""

    def close(self) -> None:
        self.server.stdin.close()
        try:
            self.server.wait(timeout=30)
        except subprocess.TimeoutExpired:
            self.server.kill()
            self.server.wait()

    def run(self, argv: list[str], *, cwd, env: dict, timeout: float) -> subprocess.CompletedProcess:
        """``argv``: ``[sys.executable, "-m", MODULE, ...]`` or ``[sys.executable, SCRIPT, ...]``
        run warm; anything else (``-c``, another program) by ``subprocess.run``."""
        warm = len(argv) > 1 and argv[0] == sys.executable and (argv[1] == "-m" or argv[1].endswith(".py"))
        if not warm:
            return subprocess.run(argv, cwd=cwd, env=env, timeout=timeout, capture_output=True,
                                  text=True, stdin=subprocess.DEVNULL)
        with tempfile.TemporaryDirectory(prefix="warm-") as folder:
            out, err = Path(folder) / "stdout", Path(folder) / "stderr"
            request = {"argv": argv[1:], "cwd": str(cwd), "env": dict(env), "stdout": str(out),
                       "stderr": str(err)}
            self.server.stdin.write((json.dumps(request) + "\n").encode())
            deadline = time.monotonic() + timeout
            pid = self._answer(deadline)["pid"]
            try:
                code = self._answer(deadline)["code"]
            except subprocess.TimeoutExpired:
                os.kill(pid, signal.SIGKILL)
                self._answer(time.monotonic() + 30)
                raise
            return subprocess.CompletedProcess(argv, code, out.read_text(errors="replace"),
                                               err.read_text(errors="replace"))

    def _answer(self, deadline: float) -> dict:
        fd = self.server.stdout.fileno()
        while b"\n" not in self._pending:
            left = deadline - time.monotonic()
            if left <= 0 or not select.select([fd], [], [], left)[0]:
                raise subprocess.TimeoutExpired(self.server.args, left)
            chunk = os.read(fd, 4096)
            if not chunk:
                raise RuntimeError(f"the warm python server exited ({self.server.poll()})")
            self._pending += chunk
        line, _, self._pending = self._pending.partition(b"\n")
        return json.loads(line)
