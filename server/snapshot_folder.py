"""The snapshots of a data folder: where they are, which are complete, and
what can be deleted once a new one is.

    <data>/snapshots/<cut: 20-digit global sequence number>/
        p0.fssnap, p1.fssnap, ...   one per partition (server/snapshot.py),
                                    written by a fork of the partition
        MANIFEST.json               written last, by the coordinator, once
                                    every partition's file is complete

A snapshot is a consistent cut: the coordinator takes it as a
multi-partition transaction, so every partition forks at the same point
of the global order, and each appends a CUT record (the cut's sequence
number) to its command log there. Recovery loads a partition's file and
replays its log from the CUT record on.

A snapshot counts only with its MANIFEST and a file that verifies;
otherwise recovery warns and falls back to the one before. So that the
fall-back has the log it needs, command log segments are deleted only
when they end before the cut of the oldest snapshot kept (KEEP).
"""

from __future__ import annotations

import json
import logging
import shutil
from pathlib import Path

from flowstate.server.commandlog import segment_paths
from flowstate.server.files import write_json

log = logging.getLogger("flowstate")

__all__ = ["KEEP", "snapshot_root", "snapshot_directory", "partition_file", "complete_snapshots",
           "write_manifest", "prune", "describe"]

#: Complete snapshots kept (the newest, and fall-backs).
KEEP = 2
MANIFEST = "MANIFEST.json"


def snapshot_root(data_dir) -> Path:
    return Path(data_dir) / "snapshots"


def snapshot_directory(data_dir, cut: int) -> Path:
    return snapshot_root(data_dir) / f"{cut:020d}"


def partition_file(directory: Path, partition: int) -> Path:
    return Path(directory) / f"p{partition}.fssnap"


def complete_snapshots(data_dir) -> list[tuple[int, Path, dict]]:
    """(cut, directory, manifest) of every snapshot with a manifest, newest first."""
    root = snapshot_root(data_dir)
    if not root.is_dir():
        return []
    found = []
    for directory in root.iterdir():
        manifest = directory / MANIFEST
        if directory.name.isdigit() and manifest.is_file():
            try:
                found.append((int(directory.name), directory, json.loads(manifest.read_text())))
            except (OSError, ValueError) as e:
                log.warning("%s: unreadable manifest (%s); ignoring this snapshot", manifest, e)
    return sorted(found, key=lambda entry: entry[0], reverse=True)


def write_manifest(directory: Path, manifest: dict) -> None:
    write_json(Path(directory) / MANIFEST, manifest)


def prune(data_dir, log_directories: dict[int, Path]) -> dict:
    """Delete snapshots beyond the KEEP newest complete ones (and unfinished
    ones older than the newest), and log segments that end before the cut
    of the oldest snapshot kept. ``log_directories``: partition -> its log
    folder. Returns what was deleted."""
    snapshots = complete_snapshots(data_dir)
    deleted = {"snapshots": [], "segments": 0}
    if not snapshots:
        return deleted
    kept = snapshots[:KEEP]
    oldest_kept = kept[-1]
    for cut, directory, _ in snapshots[KEEP:]:
        shutil.rmtree(directory, ignore_errors=True)
        deleted["snapshots"].append(cut)
    for directory in snapshot_root(data_dir).iterdir():
        if directory.name.isdigit() and int(directory.name) < snapshots[0][0] \
                and not (directory / MANIFEST).exists():
            shutil.rmtree(directory, ignore_errors=True)       # an unfinished one
    segments = oldest_kept[2].get("log_segments", {})
    for partition, directory in log_directories.items():
        first_needed = segments.get(str(partition))
        if first_needed is None:
            continue
        for path in segment_paths(directory):
            if int(path.stem) < first_needed:
                path.unlink()
                deleted["segments"] += 1
    return deleted


def describe(data_dir) -> list[dict]:
    """Every snapshot folder, newest first, with its state (for
    @SnapshotStatus and `flowstate snapshot list`)."""
    root = snapshot_root(data_dir)
    if not root.is_dir():
        return []
    entries = []
    for directory in sorted(root.iterdir(), reverse=True):
        if not directory.name.isdigit():
            continue
        manifest_path = directory / MANIFEST
        entry = {"cut": int(directory.name), "path": str(directory),
                 "complete": manifest_path.is_file()}
        try:                            # pruning may delete it meanwhile
            files = sorted(directory.glob("p*.fssnap"))
            entry["bytes"] = sum(f.stat().st_size for f in files)
            entry["files"] = len(files)
            if entry["complete"]:
                try:
                    manifest = json.loads(manifest_path.read_text())
                    entry.update(created_at=manifest.get("created_at"),
                                 rows=manifest.get("rows"), seconds=manifest.get("seconds"),
                                 reason=manifest.get("reason"))
                except ValueError:
                    entry["complete"] = False
            else:
                entry["created_at"] = directory.stat().st_mtime
        except FileNotFoundError:
            continue
        entries.append(entry)
    return entries

