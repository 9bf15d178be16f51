"""The command log: a partition's (or the coordinator's) append-only record
of its committed transactions, and reading it back for recovery.

Each partition logs every committed invocation that changed something, in
execution order; the coordinator logs each multi-partition transaction's
decision (with every partition's writes) before telling the partitions to
commit. Recovery replays a partition's log, then the coordinator's
decisions the partition's log lacks (see server/recovery.py).

Files: ``<data>/log/<owner>/<segment number, 20 digits>.fslog``, owner
``p0``, ``p1``, ... or ``coordinator``; segments numbered from 1.

Segment format, command log format version 2 (integers little-endian):

    header, 32 bytes
      0   8  magic b"FSCMDLOG"
      8   4  format version, u32 = 2 (1: see below; both are read)
      12  4  owner, i32 (partition id; -1 for the coordinator)
      16  8  segment number, u64
      24  4  reserved, 0
      28  4  CRC32C of bytes 0..27
    records, from offset 32, back to back
      0   4  N, u32: payload length (0: no more records -- segments are
             preallocated with zeros)
      4   4  CRC32C of the payload, u32
      8   N  payload: one msgpack array (flowstate.protocol encoding)

A record never spans segments; a new segment starts when the next record
does not fit (a record larger than a segment gets a segment of its own).

Payloads:
    [1 CALL, txn_id, timestamp_us, procedure, [params], idempotency_key
             or nil, result_digest, change_digest]    a committed single-
             partition call that wrote; result_digest: a result in
             0..2**31-1 that is an int is itself, any other result 2**31 |
             CRC32C(its msgpack encoding); change_digest: the partition's
             Store.change_digest after the call (u64, the running digest of
             every committed row change, native/storage.pyx); both are
             checked on replay (the determinism guard)
    [2 MP, mp_seq, txn_id, timestamp_us, [[table, op, args], ...],
             change_digest]
             a committed multi-partition transaction: this partition's
             writes (fragments), in order, and the change digest after them
    [3 OUTCOME, idempotency_key, status, result, message]
             the outcome of a keyed call that did not write (an abort, a
             read): remembered for exactly-once, nothing to redo
    [4 DECISION, mp_seq, txn_id, timestamp_us, {partition: [[table, op,
             args], ...]}, idempotency_key or nil, status, result]
             (coordinator) a multi-partition transaction, committed
             (status 0) or aborted with a key (status = its error code,
             result = the message). When the coordinator deletes its
             old segments (server/coordinator.py, _prune_own_log) it logs
             their still-remembered keyed decisions again with empty
             writes: a DECISION's mp_seq need not grow along the log
    [5 CUT, mp_seq]
             a snapshot was taken here (server/snapshot_folder.py): recovery
             from that snapshot replays the records after this one

Version 1 is version 2 without the change digests (CALL records have 7
elements, MP records 5). A log may hold segments of both versions: a
server resuming a version 1 log starts a new segment for its records.

Durability modes:
    sync   an answer leaves only after every record appended before it is
           fsynced: once per loop turn, the records of every call handled in
           that turn are written and fsynced together (group commit), in
           the loop thread
    async  answers leave at once; every ``fsync_interval_ms`` the records
           gathered are written (by the loop thread: one pwrite into the
           page cache) and fdatasynced by a native thread that never takes
           the GIL (flowstate.native.logwriter), so the loop goes on
    off    no log

Invariants:
1. Records reach the disk in append order; an fsync covers a prefix.
2. In sync mode no answer leaves before the records appended before it
   are on disk.
3. A new file or segment is fsynced, and so is its directory.
"""

from __future__ import annotations

import concurrent.futures
import logging
import os
import struct
import threading
import time
from pathlib import Path

import crc32c

from flowstate.errors import InternalError
from flowstate.native.logwriter import RecordBuffer, Syncer, write_zeros
from flowstate.protocol import pack
from flowstate.server.files import WRITE_OUT_BYTES, fsync_directory
from flowstate.server.histogram import LatencyHistogram

log = logging.getLogger("flowstate")

__all__ = ["CommandLog", "LogReader", "LogCorruptError", "MODES", "CALL", "MP", "OUTCOME",
           "DECISION", "CUT", "HEADER_BYTES", "frame_record", "result_digest", "segment_paths",
           "FORMAT_VERSION"]

MODES = ("sync", "async", "off")
FORMAT_VERSION = 2
READABLE_VERSIONS = (1, 2)
MAGIC = b"FSCMDLOG"
HEADER_BYTES = 32
RECORD_HEADER = struct.Struct("<II")
_HEADER = struct.Struct("<8sIiQI")

CALL, MP, OUTCOME, DECISION, CUT = 1, 2, 3, 4, 5


class LogCorruptError(InternalError):
    """A command log is damaged before its tail: the server will not start
    on it (a silent skip would lose acknowledged transactions)."""


def result_digest(result) -> int:
    """A 32-bit digest of a result, logged and compared on replay: a small
    integer is its own digest (most procedures return a status code), any
    other result the CRC32C of its wire encoding."""
    if type(result) is int and 0 <= result < 1 << 31:
        return result
    return crc32c.crc32c(pack(result)) | 1 << 31


def frame_record(payload: bytes) -> bytes:
    return RECORD_HEADER.pack(len(payload), crc32c.crc32c(payload)) + payload


def segment_paths(directory: Path) -> list[Path]:
    """The segments of a log folder, oldest first."""
    if not directory.is_dir():
        return []
    return sorted(p for p in directory.iterdir()
                  if p.suffix == ".fslog" and p.stem.isdigit())


def _segment_name(number: int) -> str:
    return f"{number:020d}.fslog"


def _header(owner: int, number: int) -> bytes:
    head = _HEADER.pack(MAGIC, FORMAT_VERSION, owner, number, 0)
    return head + struct.pack("<I", crc32c.crc32c(head))


class LogReader:
    """Reads a log folder's records in order, for recovery.

    ``records()`` yields (segment number, offset, payload bytes). A bad
    record in the last segment followed only by zeros is a torn tail:
    reading ends there with a warning, and ``tail`` says where appending
    resumes. Any other damage raises LogCorruptError.
    """

    def __init__(self, directory: Path, owner: int):
        self.directory = Path(directory)
        self.owner = owner
        self.tail: tuple[int, int] | None = None       # (segment, offset) to append at
        self.torn: tuple[Path, int, int] | None = None  # (path, offset, garbage end)

    def records(self, start: tuple[int, int] | None = None):
        paths = segment_paths(self.directory)
        for index, path in enumerate(paths):
            number = int(path.stem)
            if start is not None and number < start[0]:
                continue
            last = index == len(paths) - 1
            with open(path, "rb") as f:
                data = f.read()
            self._check_header(path, data, number)
            offset = HEADER_BYTES
            if start is not None and number == start[0]:
                offset = max(offset, start[1])
            end = len(data)
            while offset < end:
                if offset + 8 > end:                 # the file ends inside a record header
                    if not _zeros(data, offset, end):
                        self._damaged(path, offset, last, data, "a record header is cut short")
                    break
                size, crc = RECORD_HEADER.unpack_from(data, offset)
                if size == 0 and crc == 0:
                    if not _zeros(data, offset, end):
                        self._damaged(path, offset, last, data, "data after the end marker")
                    break
                body_end = offset + 8 + size
                if body_end > end or crc32c.crc32c(data[offset + 8:body_end]) != crc:
                    self._damaged(path, offset, last, data, "a record fails its checksum")
                    break
                yield number, offset, data[offset + 8:body_end]
                offset = body_end
            if last:
                self.tail = (number, offset if self.torn is None else self.torn[1])

    def _check_header(self, path: Path, data: bytes, number: int) -> None:
        if len(data) < HEADER_BYTES:
            raise LogCorruptError(f"{path}: shorter than a segment header ({len(data)} bytes)")
        magic, version, owner, seg, _ = _HEADER.unpack_from(data, 0)
        (crc,) = struct.unpack_from("<I", data, 28)
        if magic != MAGIC or crc != crc32c.crc32c(data[:28]):
            raise LogCorruptError(f"{path}: not a Flowstate command log segment (bad header)")
        if version not in READABLE_VERSIONS:
            raise LogCorruptError(f"{path}: command log format version {version}; this server "
                                  f"reads versions {', '.join(map(str, READABLE_VERSIONS))}")
        if owner != self.owner or seg != number:
            raise LogCorruptError(f"{path}: the header says owner {owner} segment {seg}, "
                                  f"expected owner {self.owner} segment {number}")

    def _damaged(self, path: Path, offset: int, last: bool, data: bytes, why: str) -> None:
        # A write cut short leaves a prefix of the last record followed by
        # the preallocated zeros; anything else is damage in the middle.
        end = len(data)
        size = RECORD_HEADER.unpack_from(data, offset)[0] if offset + 8 <= end else 0
        extent = offset + 8 + size if offset + 8 + size <= end else offset + 8
        if offset + 8 + size > end and not _holds_a_value(data[offset + 8:]):
            extent = end        # a file cut inside the record: all it has is part of it
        if last and _zeros(data, extent, end):
            garbage_end = max(len(data[:extent].rstrip(b"\0")), offset + 8)
            log.warning("%s: torn record at offset %d (%s); recovery ends there and its %d "
                        "bytes are discarded", path, offset, why, garbage_end - offset)
            self.torn = (path, offset, garbage_end)
            return
        raise LogCorruptError(
            f"{path}: {why} at offset {offset}, and data follows it: the log is damaged in "
            f"the middle, not at its tail. Refusing to start, since skipping it would lose "
            f"or reorder acknowledged transactions. Restore the data folder from a backup, "
            f"or move this log away to start from the last snapshot alone.")


def _zeros(data: bytes, start: int, end: int) -> bool:
    return data.count(0, start, end) == max(0, end - start)


def _holds_a_value(data: bytes) -> bool:
    """Whether ``data`` starts with a whole msgpack value (or is not msgpack).
    A payload is one msgpack array, so what a record cut by the end of its
    file leaves is an incomplete one; a whole value there means the length
    field is wrong and what follows is other records (damage)."""
    import msgpack
    unpacker = msgpack.Unpacker(strict_map_key=False, max_buffer_size=2**31 - 1)
    unpacker.feed(data)
    try:
        unpacker.unpack()
    except msgpack.OutOfData:
        return False
    except Exception:
        pass
    return True


class CommandLog:
    """Appends records for one owner and makes them durable (see module doc).

    Everything here runs on the event loop thread except the fdatasync of
    async mode, which a native thread does without the GIL
    (flowstate.native.logwriter.Syncer). Records are framed straight into
    a native RecordBuffer (``pending``); a group being written and synced
    is ``flight``, which stays whole until it is on disk, so that a failed
    attempt is repeated at the same offset.
    """

    def __init__(self, directory: Path, owner: int, mode: str = "sync",
                 fsync_interval_ms: float = 10.0, segment_bytes: int = 64 << 20):
        if mode not in MODES:
            raise ValueError(f"durability must be one of {', '.join(MODES)}, got {mode!r}")
        self.directory = Path(directory)
        self.owner = owner
        self.mode = mode
        self.fsync_interval = fsync_interval_ms / 1000.0
        self.segment_bytes = segment_bytes
        self.loop = None
        self.fd = -1
        self.segment = 0
        self.offset = 0
        self.capacity = 0
        self.pending = RecordBuffer()         # appended, not yet being written
        self.flight = RecordBuffer()          # being written and synced (kept on failure)
        self.held: list = []                  # (connection, bytes) waiting for the disk
        self.flight_held: list = []           # those waiting for ``flight``
        self.writing = False
        self.scheduled = False
        self.failed: BaseException | None = None
        self.syncer: Syncer | None = None     # async mode's fdatasync thread
        self.syncer_thread: threading.Thread | None = None
        self.preparing = None              # (segment number, future of its temporary path)
        self.builder = None                # the thread that builds the next segment
        self.build_ahead = True
        self.handed = 0                    # records moved out of ``pending`` (or written directly)
        self.fsyncs = 0
        self.fsync_seconds = 0.0
        self.fsync_latency = LatencyHistogram()   # the loop's own (sync) fdatasyncs
        self.bytes_written = 0

    # -- opening -------------------------------------------------------------------

    def open(self, loop, tail: tuple[int, int] | None, torn=None) -> None:
        """Resume appending at ``tail`` (from LogReader) or start a new log."""
        self.loop = loop
        self.directory.mkdir(parents=True, exist_ok=True)
        if tail is None:
            self._new_segment(1)
        else:
            number, offset = tail
            path = self.directory / _segment_name(number)
            self.fd = os.open(path, os.O_RDWR)          # read: its format version
            self.segment = number
            self.offset = offset
            self.capacity = max(os.fstat(self.fd).st_size, offset)
            if torn is not None:
                _, start, end = torn
                os.pwrite(self.fd, bytes(end - start), start)   # zero the torn record
                os.fsync(self.fd)
            (version,) = struct.unpack("<I", os.pread(self.fd, 4, 8))
            if version != FORMAT_VERSION:      # an older format's segment: leave it whole
                self._new_segment(number + 1)
        if self.mode == "async" and loop is not None:
            self.syncer = Syncer()
            self.syncer_thread = threading.Thread(target=self.syncer.run, daemon=True,
                                                  name=f"command-log-fsync-{self.owner}")
            self.syncer_thread.start()
            loop.add_reader(self.syncer.done_fd, self._synced)
        if loop is not None:
            # async: the writes; sync: only a safety net, since a held
            # answer schedules the write of the records before it
            loop.call_later(self.fsync_interval, self._tick)

    def _build_segment(self, number: int, size: int) -> Path:
        """A complete segment under a temporary name: header, then zeros
        written (not just allocated) to ``size``, fsynced. Written zeros
        make every later fdatasync a data flush only: on allocated-but-
        unwritten extents each one would also commit the file system's
        journal (measured: a third slower, and more at p99).

        The zeros are written out piece by piece as they are written
        (``write_zeros``, in C without the GIL), not by one fsync at the
        end: flushing a 64 MiB segment at once kept the disk busy for
        about 30 ms, and every command log fsync of those moments (this
        log's and the other processes') queued behind it -- 26-28 ms at
        worst against 1-4 ms in 256 KiB pieces, measured with a probe
        fsyncing 3 KB writes meanwhile (bench/RESULTS.md)."""
        temporary = (self.directory / _segment_name(number)).with_suffix(".new")
        fd = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
        try:
            os.posix_fallocate(fd, 0, size)
            write_zeros(fd, 0, size, WRITE_OUT_BYTES)
            os.pwrite(fd, _header(self.owner, number), 0)
            os.fsync(fd)
        except BaseException:
            try:
                os.unlink(temporary)
            except OSError:
                pass
            raise
        finally:
            os.close(fd)
        return temporary

    def _prepare_next(self) -> None:
        """Past half the segment: build the next one in the background, so
        that rotating is a rename."""
        if self.build_ahead and self.preparing is None and self.offset > self.capacity // 2:
            number = self.segment + 1
            if self.builder is None:
                self.builder = concurrent.futures.ThreadPoolExecutor(
                    1, thread_name_prefix="command-log-segments")
            self.preparing = (number, self.builder.submit(self._build_segment, number,
                                                          self.segment_bytes))

    def _new_segment(self, number: int, at_least: int = 0) -> None:
        path = self.directory / _segment_name(number)
        size = max(self.segment_bytes, HEADER_BYTES + at_least + 8)
        temporary = None
        if self.preparing is not None:
            prepared, future = self.preparing
            self.preparing = None
            # Not started yet: build it here rather than wait for it.
            if prepared == number and size == self.segment_bytes and not future.cancel():
                try:
                    temporary = future.result()
                except Exception:
                    temporary = None        # build it here instead
        # Built under a temporary name and renamed whole: a reader (this
        # owner's recovery, or a partition reading the coordinator's log)
        # never sees a segment without its header.
        if temporary is None:
            temporary = self._build_segment(number, size)
        try:
            os.rename(temporary, path)
            fsync_directory(self.directory)
            fd = os.open(path, os.O_WRONLY)
        except BaseException:
            for leftover in (temporary, path):
                try:
                    os.unlink(leftover)
                except OSError:
                    pass
            raise
        if self.fd >= 0:
            os.close(self.fd)     # only now: a failed rotation keeps the old segment open
        self.fd = fd
        self.segment = number
        self.offset = HEADER_BYTES
        self.capacity = size

    def close(self) -> None:
        if self.syncer is not None:
            try:
                self.loop.remove_reader(self.syncer.done_fd)
            except Exception:
                pass                       # the loop is closed already
            self.syncer.stop()
            self.syncer_thread.join()
            self.syncer = None
        if self.builder is not None:
            self.builder.shutdown(wait=True)
        if self.fd >= 0:
            os.close(self.fd)
            self.fd = -1

    # -- appending (event loop thread) -----------------------------------------

    def append(self, payload: bytes) -> None:
        """Append a record whose payload is packed already."""
        self.pending.append_payload(payload)
        if not self.scheduled and self.mode == "sync":
            self.scheduled = True
            self.loop.call_soon(self._start)

    def append_call(self, txn_id: int, timestamp_us: int, procedure: str, params,
                    idempotency_key, result, change_digest: int) -> None:
        """Append the CALL record of a call that returned ``result`` and
        left the store's change digest at ``change_digest``.

        The hot path (PartitionNode.handle) calls ``pending.append_call``
        itself and comes here only when that declines (a value the native
        encoder leaves to msgpack-python); in sync mode it needs no
        scheduling: its answer is held, which schedules the write."""
        if not self.pending.append_call(txn_id, timestamp_us, procedure, params,
                                        idempotency_key, result, change_digest):
            try:
                digest = result_digest(result)
            except Exception:
                digest = None              # its answer is an error anyway
            self.pending.append_payload(pack([CALL, txn_id, timestamp_us, procedure, params,
                                              idempotency_key, digest, change_digest]))
        if not self.scheduled and self.mode == "sync":
            self.scheduled = True
            self.loop.call_soon(self._start)

    @property
    def appended(self) -> int:
        """Records appended so far."""
        return self.handed + len(self.pending)

    @property
    def unwritten(self) -> bool:
        """Whether records appended so far are not all on disk yet. Not
        while the log cannot be written: writes are refused then, and the
        refusals and the reads must not wait for the disk to come back."""
        return self.failed is None and (self.writing or len(self.pending) > 0
                                        or len(self.flight) > 0)

    @property
    def must_hold(self) -> bool:
        """Whether an answer produced now has to wait for the disk."""
        return self.mode == "sync" and self.unwritten

    @property
    def busy(self) -> bool:
        """Whether anything appended or held is still to be written or sent."""
        return (self.writing or len(self.pending) > 0 or len(self.flight) > 0
                or bool(self.held))

    def hold(self, conn, data: bytes) -> None:
        self.held.append((conn, data))
        if not self.scheduled:
            self.scheduled = True
            self.loop.call_soon(self._start)

    def _tick(self) -> None:
        if len(self.pending) and not self.writing:
            self._start()
        self.loop.call_later(self.fsync_interval, self._tick)

    def _start(self) -> None:
        self.scheduled = False
        if self.writing:
            return
        if not len(self.flight):            # else: a failed group, to be written again
            if not len(self.pending):
                self._release(self.held)
                self.held = []
                return
            self.pending, self.flight = self.flight, self.pending
            self.handed += len(self.flight)
        held, self.held = self.held, []
        self.flight_held = held
        self.writing = True
        try:
            self._write_flight()
            if self.syncer is None:
                # sync: inline. The loop would only wait for the answers
                # anyway; calls that arrive meanwhile wait in the socket
                # buffers and make the next group larger. (Syncing on the
                # Syncer while the loop goes on was measured too: smaller
                # groups, more device flushes, and 5-10% fewer calls/s on a
                # disk whose flushes are the limit.)
                started = time.perf_counter()
                os.fdatasync(self.fd)
                took = time.perf_counter() - started
                self.fsync_seconds += took
                self.fsync_latency.add_seconds(took)
                self.fsyncs += 1
        except Exception as e:
            self._failed(e)
            return
        if self.syncer is None:
            self._durable()
        else:
            self.syncer.request(self.fd)     # _synced runs when it is done

    def _synced(self) -> None:
        """The syncer thread's answer (async mode)."""
        try:
            os.read(self.syncer.done_fd, 64)
        except BlockingIOError:
            return
        if self.syncer.error:
            self._failed(OSError(self.syncer.error, os.strerror(self.syncer.error)))
        else:
            self._durable()

    def _durable(self) -> None:
        """``flight`` is on disk: release what waited for it."""
        self.flight.clear()
        held, self.flight_held = self.flight_held, []
        self.writing = False
        if self.failed is not None:
            log.warning("the command log is writable again")
            self.failed = None
        self._prepare_next()
        self._release(held)
        # sync: what gathered meanwhile is waited for, so write it now;
        # async: the next tick writes it (unless an answer waits for it)
        if self.held or (len(self.pending) and self.mode == "sync"):
            self._start()

    def _failed(self, error: BaseException) -> None:
        if self.failed is None:
            log.error("the command log cannot be written (%s): holding %d answer(s) and "
                      "retrying every second; transactions that write are refused", error,
                      len(self.flight_held) + len(self.held))
        self.failed = error
        self.held[:0] = self.flight_held
        self.flight_held = []
        self.writing = True                  # nothing else starts until the retry
        self.loop.call_later(1.0, self._retry)

    def _retry(self) -> None:
        self.writing = False
        self._start()

    @staticmethod
    def _release(held) -> None:
        if not held:
            return
        by_connection: dict = {}
        for conn, data in held:
            by_connection.setdefault(conn, []).append(data)
        for conn, parts in by_connection.items():
            if not conn.closed:
                conn.transport.write(b"".join(parts))

    def _write_flight(self) -> None:
        """Write ``flight`` at the end of the log, rotating segments as it
        fills them. On a failure, what is not known to be on disk stays in
        ``flight`` and ``offset`` is where it goes again: the records
        before a rotation were fsynced, so they leave ``flight``."""
        flight = self.flight
        first = 0
        start = self.offset
        try:
            while first < len(flight):
                last = flight.fitting(first, max(0, self.capacity - self.offset - 8))
                if last == first:            # the next record needs the next segment
                    os.fdatasync(self.fd)
                    self.fsyncs += 1
                    flight.discard(first)
                    first = 0
                    start = self.offset      # if the rotation fails: try it again
                    self._new_segment(self.segment + 1, at_least=flight.span(0, 1))
                    start = self.offset
                    continue
                written = flight.pwrite(self.fd, first, last, self.offset)
                self.offset += written
                self.bytes_written += written
                first = last
        except BaseException:
            self.offset = start
            raise

    def _pwrite(self, data: bytes) -> None:
        view = memoryview(data)
        while view:
            written = os.pwrite(self.fd, view, self.offset)
            self.offset += written
            self.bytes_written += written
            view = view[written:]

    # -- synchronous use (the coordinator's worker thread) --------------------

    def write_now(self, payload: bytes) -> None:
        """Append one record and, unless async, fsync before returning."""
        record = frame_record(payload)
        self._make_room(len(record))
        start = self.offset
        try:
            self._pwrite(record)
            if self.mode == "sync":
                os.fdatasync(self.fd)
        except BaseException:
            # Not logged: the caller is told so. Zero what may have reached
            # the file, so that a crash now cannot resurrect it at recovery.
            try:
                os.pwrite(self.fd, bytes(len(record)), start)
                os.fdatasync(self.fd)
            except OSError:
                pass
            self.offset = start      # the next record goes in its place
            raise
        self.handed += 1
        if self.mode == "sync":
            self.fsyncs += 1
        self._prepare_next()

    def _make_room(self, size: int) -> None:
        """Rotate if a record of ``size`` bytes does not fit in this
        segment (with the 8 zero bytes that end it), once what is in this
        one is on disk."""
        if self.offset + size + 8 > self.capacity:
            os.fdatasync(self.fd)
            self._new_segment(self.segment + 1, at_least=size)

    def write_many(self, payloads: list[bytes]) -> None:
        """Append records and fsync once. Unlike write_now, a failure may
        leave some of them on disk: only for records that are harmless
        twice (the coordinator's carried idempotency outcomes)."""
        for payload in payloads:
            record = frame_record(payload)
            self._make_room(len(record))
            self._pwrite(record)
            self.handed += 1
        os.fdatasync(self.fd)
        self.fsyncs += 1
        self._prepare_next()

    def sync_now(self) -> None:
        if self.fd >= 0:
            os.fdatasync(self.fd)

    @property
    def durable(self) -> int:
        """How many of the records appended so far are on disk (fsynced in
        sync and async modes)."""
        return self.handed - len(self.flight)

    def refusal(self) -> str | None:
        """Why writes are refused now (the log cannot be written), or None."""
        if self.failed is None:
            return None
        return (f"the command log cannot be written ({self.failed}); transactions that "
                f"write are refused until it can, reads still work")

    def statistics(self) -> dict:
        fsyncs, seconds = self.fsyncs, self.fsync_seconds
        latency = LatencyHistogram()
        latency.merge(self.fsync_latency.counts)
        if self.syncer is not None:
            fsyncs += self.syncer.count
            seconds += self.syncer.seconds
            latency.merge(self.syncer.histogram())
        return {"mode": self.mode, "records": self.appended, "fsyncs": fsyncs,
                "fsync_ms_mean": round(seconds * 1000 / max(fsyncs, 1), 3),
                # the group fsyncs answers wait for (sync) or that bound the
                # window (async); not counted: rotations and direct writes
                "fsync_latency": latency.to_wire(),
                "fsync_p99_under_us": latency.quantile(0.99),
                "bytes_written": self.bytes_written, "segment": self.segment,
                "offset": self.offset, "failing": None if self.failed is None else str(self.failed)}



