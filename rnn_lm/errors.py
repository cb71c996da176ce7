"""The exception types the binaries turn into a one-line error, and the exit statuses they mean.

Exit statuses of every binary (documented in the README):

    0    done (rnn-lm-train: trained, with finite validation and test perplexities)
    1    bad input or a failure, named in one line (EXIT_ERROR)
    3    rnn-lm-train: the run diverged (EXIT_DIVERGED); the last good checkpoint is kept
    130  stopped by SIGINT (Ctrl-C) after writing a checkpoint: 128 + 2, the shell's convention
    143  stopped by SIGTERM after writing a checkpoint: 128 + 15
"""

import re

EXIT_ERROR = 1
EXIT_DIVERGED = 3


def exit_status_for_signal(signum):
    """The shell's status for a process stopped by signal ``signum``: 128 + its number."""
    return 128 + int(signum)


# A config field named in a message (``field_ref``): the library's text names the field
# (``train.max_grad_norm``), a binary's names its flag (``--max_grad_norm``).
_FIELD_REF = re.compile("\x00([a-z_]+)\\.([a-z_0-9]+)\x00")


def field_ref(section, name):
    """How a message names the config field ``section.name``: see ``RnnLmError.naming_flags``."""
    return f"\x00{section}.{name}\x00"


class RnnLmError(ValueError):
    """Bad input or configuration; the message names the problem in one line.

    Config fields in the message (``field_ref``) read as ``section.field``; a
    binary shows them as its flags with ``naming_flags``.
    """
    exit_status = EXIT_ERROR

    def __str__(self):
        return _FIELD_REF.sub(r"\1.\2", super().__str__())

    def naming_flags(self, flag_of):
        """The message with each config field named by ``flag_of(section, field)`` as ``--flag``."""
        return _FIELD_REF.sub(lambda m: "--" + flag_of(m[1], m[2]), super().__str__())


class Diverged(RnnLmError):
    """Training produced non-finite losses or perplexities; the last good checkpoint is kept."""
    exit_status = EXIT_DIVERGED


def reason(error):
    """The first line of what an OSError or a TensorFlow error says (its strerror or message), without
    TensorFlow's op decorations (``{{function_node …}}``, `` [Op:…]``)."""
    text = getattr(error, "strerror", None) or getattr(error, "message", None) or str(error)
    text = re.sub(r"\{\{function_node [^}]*\}\}\s*|\s*\[Op:[^\]]*\].*$", "", text.strip().splitlines()[0]
                  if text.strip() else "")
    return text.strip() or type(error).__name__
