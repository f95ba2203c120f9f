"""launch.py many times for one import of its libraries: the CLI tests that expect a refusal run here.

Reads one JSON request a line on stdin, {"argv": [...], "cwd": ..., "timeout": ...}; forks; the child runs launch.py
as __main__ with that argv, its stdout and stderr going to files, and leaves as the interpreter would (SystemExit's
code, 1 and a traceback for an uncaught exception, the exit handlers run); the server answers one JSON line,
{"returncode", "stdout", "stderr"}. launch.py itself, its config files and the experiments load anew in every child;
only the libraries (jax, flax, optax, orbax, tensorflow_datasets, nets) come imported, which is 3-5 s of every
subprocess run on a 2-core machine. No JAX backend is started here, so each child starts its own.
"""

from __future__ import annotations

import atexit
import json
import os
import runpy
import shutil
import signal
import sys
import tempfile
import time
import traceback

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
PATH = sys.path[1:]  # as `python launch.py` has it, after launch.py's own directory (this one's is sys.path[0])
sys.path.insert(0, REPO)

import flax.linen  # noqa: E402, F401  (what launch.py and the experiments import, imported once)
import jax  # noqa: E402, F401
import ml_collections  # noqa: E402, F401
import optax  # noqa: E402, F401
import orbax.checkpoint  # noqa: E402, F401
import tensorflow_datasets  # noqa: E402, F401
from absl import app, flags  # noqa: E402, F401
from ml_collections import config_flags  # noqa: E402, F401

from nets import data, experiment, parallel, report, results, runner, validation  # noqa: E402, F401


def _child(argv: list[str], cwd: str, out: str, err: str) -> None:
    """launch.py as __main__, in this forked process; never returns."""
    code = 1
    try:
        for fd, path in ((1, out), (2, err)):
            os.dup2(os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC), fd)
        os.chdir(cwd)
        sys.path[:] = [os.path.dirname(os.path.abspath(argv[0])), *PATH]
        sys.argv = list(argv)
        try:
            runpy.run_path(argv[0], run_name='__main__')
            code = 0
        except SystemExit as exit_:
            if isinstance(exit_.code, int) or exit_.code is None:
                code = exit_.code or 0
            else:
                print(exit_.code, file=sys.stderr)
        except BaseException:
            traceback.print_exc()
        atexit._run_exitfuncs()
    finally:
        sys.stdout.flush()
        sys.stderr.flush()
        os._exit(code)


def _wait(pid: int, timeout: float) -> int:
    """The child's exit status as subprocess gives it (-N for a signal); kills it after `timeout` seconds."""
    deadline = time.monotonic() + timeout
    while True:
        done, status = os.waitpid(pid, os.WNOHANG)
        if done:
            return os.waitstatus_to_exitcode(status)
        if time.monotonic() > deadline:
            os.kill(pid, signal.SIGKILL)
            return os.waitstatus_to_exitcode(os.waitpid(pid, 0)[1])
        time.sleep(0.01)


def main() -> None:
    # Not a TemporaryDirectory: its clean-up is an exit handler, which each child would run (they run the handlers
    # the libraries registered, as a process of its own would) and so remove the files it writes.
    scratch = tempfile.mkdtemp()
    out, err = os.path.join(scratch, 'stdout'), os.path.join(scratch, 'stderr')
    try:
        for line in sys.stdin:
            request = json.loads(line)
            sys.stdout.flush()
            sys.stderr.flush()
            pid = os.fork()
            if pid == 0:
                _child(request['argv'], request['cwd'], out, err)
            returncode = _wait(pid, request.get('timeout', 600))
            texts = [open(path).read() if os.path.exists(path) else '' for path in (out, err)]
            print(json.dumps({'returncode': returncode, 'stdout': texts[0], 'stderr': texts[1]}), flush=True)
    finally:
        shutil.rmtree(scratch, ignore_errors=True)


if __name__ == '__main__':
    main()
