"""What every binary shares: the one-line error for bad input."""

import sys

from absl import app

from rnn_lm.errors import RnnLmError


def run_main(main):
    """``app.run(main)``, turning an RnnLmError into ``<binary>: error: ...`` and exit status 1."""

    def guarded(argv):
        if len(argv) > 1:
            raise app.UsageError(f"unexpected arguments: {' '.join(argv[1:])}")
        try:
            return main(argv)
        except RnnLmError as e:
            print(f"{_name()}: error: {e}", file=sys.stderr)
            sys.exit(1)
        except KeyboardInterrupt:
            print(f"{_name()}: interrupted", file=sys.stderr)
            sys.exit(130)

    app.run(guarded)


def _name():
    import os
    return os.path.basename(sys.argv[0]).replace(".py", "") or "rnn-lm"
