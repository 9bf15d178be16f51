"""Durable file operations shared by the parts that write the data folder
(the command log, snapshots, manifests, the folder description).

A file that must survive a crash whole is written under a temporary name,
fsynced, renamed over its final name, and then its folder is fsynced, so
that after a crash the name holds either the old content or the new one,
never a part of it, and the rename itself is on disk.

A large file (a new command log segment, a snapshot) is written out to
the device piece by piece as it is written (``write_out``), so that the
final fsync has little left to do: one flush of tens or hundreds of MB
holds the disk for as long, and every command log fsync of the moment
(the group commits that answers wait for) queues behind it.
"""

from __future__ import annotations

import errno
import json
import os
from pathlib import Path

from flowstate.native.logwriter import write_back

__all__ = ["fsync_directory", "write_json", "write_out", "WRITE_OUT_BYTES"]

WRITE_OUT_BYTES = 256 << 10      # write a large file out in pieces this big


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


def write_out(fd: int, offset: int, length: int) -> bool:
    """Write ``length`` bytes of ``fd`` at ``offset`` out to the device and
    wait for them (not durable yet: an fsync must follow). False where the
    file system cannot (the caller may stop asking; its fsync then writes
    everything); other errors raise OSError."""
    try:
        write_back(fd, offset, length)
    except OSError as e:
        if e.errno in (errno.EINVAL, errno.ENOSYS, errno.EOPNOTSUPP, errno.ESPIPE):
            return False
        raise
    return True
