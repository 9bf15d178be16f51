"""Durable file operations shared by the parts that write the data folder
(the command log, snapshots, manifests, the folder description).

A file that must survive a crash whole is written under a temporary name,
fsynced, renamed over its final name, and then its folder is fsynced, so
that after a crash the name holds either the old content or the new one,
never a part of it, and the rename itself is on disk.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

__all__ = ["fsync_directory", "write_json"]


def fsync_directory(path) -> None:
    """Make the entries of folder ``path`` (new, renamed or deleted files)
    durable."""
    fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def write_json(path, value) -> None:
    """Replace ``path`` with ``value`` as indented JSON, atomically and
    durably (see the module doc)."""
    path = Path(path)
    temporary = path.with_suffix(".tmp")
    with open(temporary, "w") as f:
        json.dump(value, f, indent=1)
        f.flush()
        os.fsync(f.fileno())
    os.replace(temporary, path)
    fsync_directory(path.parent)
