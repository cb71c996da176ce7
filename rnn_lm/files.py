"""Writing a file so that a reader never sees half of it; reading a small JSON record back."""

import json
import os


def write_atomically(path, data):
    """Writes ``data`` (text: UTF-8, ``\\n`` line ends; or bytes) to ``path`` through a temporary file
    and a rename: a reader sees the old file or the new one, never half of one."""
    tmp = f"{path}.tmp{os.getpid()}"
    try:
        with (open(tmp, "wb") if isinstance(data, bytes) else open(tmp, "w", encoding="utf-8", newline="\n")) as f:
            f.write(data)
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.remove(tmp)


def write_json(path, value):
    """``value`` as indented JSON, written atomically."""
    write_atomically(path, json.dumps(value, indent=2, sort_keys=True) + "\n")


def read_json(path):
    """The JSON value in ``path``, or None when it is missing or unreadable."""
    try:
        with open(path, encoding="utf-8") as f:
            return json.load(f)
    except (OSError, ValueError):
        return None
