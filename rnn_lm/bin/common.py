"""What every binary shares: the one-line error for bad input, and running another binary timed."""

import os
import signal
import subprocess
import sys
import time

from absl import app
from absl import flags

from rnn_lm.errors import EXIT_ERROR, RnnLmError, exit_status_for_signal, reason


def run_main(main):
    """``app.run(main)``, turning an RnnLmError into ``<binary>: error: ...`` and its exit status
    (1 for bad input, 3 for a diverged run: ``rnn_lm.errors``)."""

    def guarded(argv):
        if len(argv) > 1:
            raise app.UsageError(f"unexpected arguments: {' '.join(argv[1:])}")
        try:
            return main(argv)
        except RnnLmError as e:
            fail(e, e.exit_status)
        except OSError as e:  # a file the code did not expect to fail (a full or read-only disk)
            fail(f"{e.filename}: {reason(e)}" if e.filename else reason(e))
        except KeyboardInterrupt:
            print(f"{_name()}: interrupted", file=sys.stderr)
            sys.exit(exit_status_for_signal(signal.SIGINT))

    _help_from(sys.modules[main.__module__])
    app.run(guarded)


def _help_from(module):
    """absl's --help prints the docstring of ``__main__`` and the flags defined in the file of
    ``sys.argv[0]``.  A console script's ``__main__`` is a stub that imports the binary's module, so
    both are taken from that module (run as ``python -m``, the module is ``__main__`` already)."""
    if module.__name__ == "__main__":
        return
    sys.modules["__main__"].__doc__ = module.__doc__
    for flag in flags.FLAGS.get_key_flags_for_module(module.__name__):
        flags.FLAGS.register_key_flag_for_module(sys.argv[0], flag)


def run_timed(cmd, env=None):
    """Runs ``cmd`` with its stderr merged into its stdout, reading the output as it comes.

    Returns (exit status, [(seconds after the start, line)], seconds in all).
    """
    start = time.monotonic()
    lines = []
    with subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=env) as proc:
        for line in proc.stdout:
            lines.append((time.monotonic() - start, line))
    return proc.returncode, lines, time.monotonic() - start


def fail(message, status=EXIT_ERROR):
    """Prints ``<binary>: error: message`` and exits with ``status`` (1: bad input)."""
    print(f"{_name()}: error: {message}", file=sys.stderr)
    sys.exit(status)


def _name():
    return os.path.basename(sys.argv[0]).replace(".py", "") or "rnn-lm"
