"""Recovery: rebuild a partition's (or the coordinator's) state from the
data folder before it serves.

A partition loads its file of the newest complete snapshot
(server/snapshot_folder.py; a damaged one is skipped with a warning for
the one before), then replays its own command log from that snapshot's
CUT record on (all of it without a snapshot), in order:
    CALL     run the procedure again with the logged transaction id and
             timestamp (so now() and random repeat) and compare the result
             with the logged digest (the determinism guard)
    MP       redo this partition's writes of a multi-partition transaction
    OUTCOME  remember a keyed call's outcome (exactly-once)
then the coordinator's DECISION records it lacks (multi-partition
transactions the coordinator committed after this partition's log ends:
the crash came between the coordinator's fsync and this partition's), in
their global order, appending each to its own log so that the order
survives the next recovery too.

The coordinator reads its own log for the outcomes of keyed
multi-partition calls and the last global sequence number.

Progress is logged every few seconds on long recoveries.
"""

from __future__ import annotations

import logging
import os
import time
from pathlib import Path

from flowstate.errors import FlowstateError
from flowstate.protocol import pack, unpack
from flowstate.server.commandlog import (CALL, CUT, DECISION, HEADER_BYTES, MP, OUTCOME,
                                         LogCorruptError, LogReader, segment_paths)
from flowstate.server.snapshot import load_snapshot, verify_snapshot
from flowstate.server.snapshot_folder import complete_snapshots, partition_file

log = logging.getLogger("flowstate")

__all__ = ["log_directory", "recover_partition", "recover_coordinator", "COORDINATOR_OWNER"]

COORDINATOR_OWNER = -1


def log_directory(data_dir, owner: int) -> Path:
    name = "coordinator" if owner == COORDINATOR_OWNER else f"p{owner}"
    return Path(data_dir) / "log" / name


class _Progress:
    def __init__(self, what: str):
        self.what = what
        self.started = self.last = time.monotonic()
        self.count = 0

    def tick(self) -> None:
        self.count += 1
        if self.count & 0x3FF == 0:
            now = time.monotonic()
            if now - self.last >= 2.0:
                self.last = now
                log.info("%s: %d transactions replayed (%.0f/s)", self.what, self.count,
                         self.count / (now - self.started))

    @property
    def seconds(self) -> float:
        return time.monotonic() - self.started


def load_newest_snapshot(partition, data_dir) -> dict | None:
    """Load this partition's file of the newest complete snapshot that
    verifies (warning about and skipping damaged ones); return its meta."""
    pid = partition.partition_id
    for cut, directory, _ in complete_snapshots(data_dir):
        path = partition_file(directory, pid)
        try:
            verify_snapshot(path)
        except (FlowstateError, OSError) as e:
            log.warning("snapshot %d is unusable for partition %d (%s); trying an older one",
                        cut, pid, e)
            continue
        started = time.monotonic()
        meta = load_snapshot(path, partition.store)
        seconds = time.monotonic() - started
        size = os.path.getsize(path)
        log.info("partition %d loaded snapshot %d: %s rows, %.1f MB in %.2f s (%.0f MB/s)", pid,
                 cut, f"{sum(t['rows'] for t in meta['tables']):,}", size / 1e6, seconds,
                 size / 1e6 / max(seconds, 1e-9))
        partition.last_txn_id = max(partition.last_txn_id, meta["last_txn_id"])
        partition._last_timestamp_us = max(partition._last_timestamp_us,
                                           meta["last_timestamp_us"])
        # (snapshots from before change digests: the running digest starts at 0)
        partition.store.change_digest = meta.get("change_digest", 0)
        for key, outcome in meta["outcomes"]:
            partition.remember(key, tuple(outcome))
        return meta
    return None


def recover_partition(partition, data_dir) -> dict:
    """Load the newest snapshot, replay the log after its cut (all of it
    without a snapshot), then the coordinator's decisions the log lacks.
    Return where the log resumes and what was done."""
    pid = partition.partition_id
    reader = LogReader(log_directory(data_dir, pid), pid)
    progress = _Progress(f"partition {pid} recovery")
    last_mp = 0
    start = None
    snapshot = load_newest_snapshot(partition, data_dir)
    if snapshot is not None:
        last_mp = snapshot["cut"]
        if snapshot["log_segment"] is not None:
            start = (snapshot["log_segment"], HEADER_BYTES)
    else:
        segments = segment_paths(reader.directory)
        if segments and int(segments[0].stem) != 1:
            raise LogCorruptError(
                f"partition {pid}: no usable snapshot, and the command log starts at segment "
                f"{int(segments[0].stem)}: the segments before it were deleted once a "
                f"snapshot held their changes, so the log alone would give a partial state. "
                f"Restore the snapshots (or the data folder) from a backup.")
    skipping = snapshot is not None and start is not None
    for _, _, payload in reader.records(start):
        record = unpack(payload)
        kind = record[0]
        if skipping:                    # records before the cut are in the snapshot
            if kind == CUT and record[1] == snapshot["cut"]:
                skipping = False
            continue
        if kind == CALL:
            partition.replay_call(record)
        elif kind == MP:
            partition.replay_writes(record[2], record[3], record[4],
                                    record[5] if len(record) > 5 else None)
            last_mp = record[1]
        elif kind == OUTCOME:
            partition.remember(record[1], (record[2], record[3], record[4]))
        elif kind == CUT:
            # A snapshot's cut is a multi-partition transaction too (one that
            # wrote nothing, so no MP record and no DECISION): count it, or the
            # coordinator, restarting after a fall-back to an older snapshot or
            # a failed one, would give the next snapshot the same cut number,
            # and recovery from it would stop skipping at the older CUT record
            # and replay what that snapshot already holds.
            last_mp = max(last_mp, record[1])
            continue
        progress.tick()
    if skipping:
        raise LogCorruptError(
            f"partition {pid}: snapshot {snapshot['cut']} says its cut is in log segment "
            f"{snapshot['log_segment']} or later, but the log has no such CUT record: the log "
            f"does not belong to this snapshot")
    partition.last_mp_seq = last_mp
    own = progress.count
    missing = []
    coordinator = LogReader(log_directory(data_dir, COORDINATOR_OWNER), COORDINATOR_OWNER)
    for _, _, payload in coordinator.records():
        record = unpack(payload)
        if record[0] != DECISION or record[6] != 0 or record[1] <= last_mp:
            continue
        _, mp_seq, txn_id, timestamp_us, writes_by_partition, _, _, _ = record
        writes = writes_by_partition.get(pid)
        if not writes:
            continue                   # it changed nothing here
        partition.replay_writes(txn_id, timestamp_us, writes)
        missing.append(pack([MP, mp_seq, txn_id, timestamp_us, writes,
                             partition.store.change_digest]))
        last_mp = mp_seq
        progress.tick()
    partition.last_mp_seq = last_mp
    if progress.count:
        log.info("partition %d recovered: %d logged transactions and %d multi-partition ones "
                 "from the coordinator's log replayed in %.2f s (%.0f/s)", pid, own, len(missing),
                 progress.seconds, progress.count / max(progress.seconds, 1e-9))
    return {"tail": reader.tail, "torn": reader.torn, "append": missing,
            "replayed": progress.count, "seconds": progress.seconds,
            "snapshot": None if snapshot is None else snapshot["cut"]}


def recover_coordinator(data_dir) -> dict:
    reader = LogReader(log_directory(data_dir, COORDINATOR_OWNER), COORDINATOR_OWNER)
    outcomes = {}
    last_mp = 0
    committed: list[int] = []
    for _, _, payload in reader.records():
        record = unpack(payload)
        if record[0] != DECISION:
            continue
        _, mp_seq, _, _, _, key, status, result = record
        last_mp = max(last_mp, mp_seq)
        if status == 0:
            committed.append(mp_seq)
        if key is not None:
            outcomes[key] = (status, result, None) if status == 0 else (status, None, result)
    return {"tail": reader.tail, "torn": reader.torn, "outcomes": outcomes,
            "last_mp_seq": last_mp, "committed": committed[-10_000:]}
