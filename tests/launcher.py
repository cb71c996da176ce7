"""Runs the binaries for the tests as ``python -m MODULE ARGS`` does, without importing TensorFlow
each time.

Importing TensorFlow is about 6 s of every binary run on two cores, and the suite runs the binaries
about a hundred times.  This process imports it once, then reads one request per line on stdin
(JSON: a module or a console script, args, env, cwd, the files for the child's stdin, stdout and
stderr, a memory limit) and for each forks a child that runs the module or the script as
``__main__`` (``runpy``, as ``python -m`` and the script's own interpreter do) with those files as
file descriptors 0, 1 and 2, then exits as the interpreter would (exit handlers run).  It
answers each request with one line, ``{"status": ...}``: the exit status, or minus the signal that
ended the child (-9 when it outlived its timeout).

What differs from a fresh ``python -m``: TensorFlow is imported before the binary starts, so what
its import writes and the environment it reads then (TF_CPP_MIN_LOG_LEVEL) are this process's.  The
tests of exactly that (``test_bin_train_progress``), of signals and of concurrent runs start real
processes.  Nothing but TensorFlow is imported here before a fork: every rnn_lm module, and every
flag, is the child's own.  The parent never runs a TensorFlow op, so it has one thread when it forks.
"""

import atexit
import json
import os
import resource
import runpy
import sys
import time
import traceback


def main():
    import tensorflow  # noqa: F401  (the import every run would pay)

    for line in sys.stdin:
        request = json.loads(line)
        sys.stdout.flush()
        sys.stderr.flush()
        pid = os.fork()
        if pid == 0:
            _child(request)  # does not return
        print(json.dumps({"status": _wait(pid, request["timeout"])}), flush=True)


def _wait(pid, timeout):
    deadline = time.monotonic() + timeout
    while True:
        done, status = os.waitpid(pid, os.WNOHANG)
        if done:
            return os.waitstatus_to_exitcode(status)
        if time.monotonic() > deadline:
            os.kill(pid, 9)
            return os.waitstatus_to_exitcode(os.waitpid(pid, 0)[1])
        time.sleep(0.01)


def _child(request):
    status = 1
    try:
        os.chdir(request["cwd"])
        os.environ.clear()
        os.environ.update(request["env"])
        for fd, (path, mode) in enumerate(((request["stdin"], os.O_RDONLY), (request["stdout"], os.O_WRONLY),
                                           (request["stderr"], os.O_WRONLY))):
            opened = os.open(path, mode)
            os.dup2(opened, fd)
            os.close(opened)
        sys.stdin = open(0, encoding="utf-8", closefd=False)  # not this process's buffered request pipe
        if request["memory_limit"]:
            resource.setrlimit(resource.RLIMIT_AS, (request["memory_limit"],) * 2)
        sys.argv = [request["target"], *request["args"]]  # runpy sets argv[0] to the module's file
        try:
            if request["kind"] == "script":
                runpy.run_path(request["target"], run_name="__main__")
            else:
                runpy.run_module(request["target"], run_name="__main__", alter_sys=True)
            status = 0
        except SystemExit as e:
            status = _exit_status(e.code)
        except BaseException:
            traceback.print_exc()
        atexit._run_exitfuncs()
    except BaseException:
        traceback.print_exc()
    finally:
        for stream in (sys.stdout, sys.stderr):
            try:
                stream.flush()
            except Exception:
                pass
        os._exit(status)


def _exit_status(code):
    """What the interpreter exits with for ``sys.exit(code)``."""
    if code is None:
        return 0
    if isinstance(code, int):
        return code & 0xFF
    print(code, file=sys.stderr)
    return 1


if __name__ == "__main__":
    main()
