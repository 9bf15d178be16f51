"""Snapshots: one partition's store in one file, written and loaded fast.

``write_snapshot(store, path, meta)`` writes every table and view of the
store to ``path + ".tmp"``, fsyncs it, renames it to ``path`` and fsyncs
the directory, so ``path`` is either absent, the previous snapshot or the
complete new one. It needs only the Store: no threads, only os.write and
os.fsync, so it is safe in a fork()ed child (the partition forks and the
child writes while the parent goes on; copy-on-write keeps the child's
view of the store frozen at the fork):

    pid = os.fork()
    if pid == 0:
        try:
            write_snapshot(partition.store, path, {"partition": 0, "txn_id": ...})
            os._exit(0)
        except BaseException:
            os._exit(1)

``load_snapshot(path, store)`` checks the whole file (every checksum and
the structure) before touching the store, then checks that the file's
tables match the store's (names, columns and their types, view
definitions), then bulk-loads each table and view (``Table.import_rows``):
rows keep their row ids and each table its free list, so the loaded store
scans, orders index ties and places future inserts exactly as the original
did (which deterministic command-log replay relies on); every index is
rebuilt from the rows. ``read_snapshot_meta(path)`` reads only the header
and the meta; ``verify_snapshot(path)`` checks a whole file without
loading it.

Errors: any damage -- a truncation at any offset, a flipped bit anywhere,
a file that is not a snapshot, a ``.tmp`` file -- raises
``SnapshotCorruptError``, before the store is touched; a file of another
format version raises ``SnapshotVersionError``; tables that do not match
the store raise ``SnapshotSchemaError``. A loaded store is never silently
wrong. The one failure that can come after loading began is a unique
index of the store that the snapshot's rows break (the index was added to
the schema since): SnapshotSchemaError, and the store then holds part of
the snapshot; build a new one.

File format: snapshot format version 1
--------------------------------------

All integers are little-endian. CRC32C is the Castagnoli CRC
(``crc32c.crc32c``).

    file header, 16 bytes
      0   8  magic 89 46 53 4E 41 50 0D 0A  (b"\\x89FSNAP\\r\\n": the high
             byte and the CR LF catch 7-bit and newline-mangling copies)
      8   4  format version, u32 = 1
      12  4  CRC32C of bytes 0..11

    records, back to back from offset 16
      0   1  kind: "M" (0x4D) meta, "T" (0x54) table, "R" (0x52) rows,
             "E" (0x45) end
      1   4  N, u32: payload length
      5   N  payload
      5+N 4  CRC32C of bytes 0..5+N-1 of the record (kind, length, payload)

    order: M; then for each entry of meta["tables"], in order, one T and
    one or more R (its export stream, cut into blocks of about 1 MiB); then
    E, the last bytes of the file.

    M  payload: one msgpack map (str keys): the caller's meta, plus
         format_version  1
         created_at      float, Unix time of the write
         byte_order      "little" (row images are the engine's layout)
         tables          one map per table and view, in store order:
           name          str
           view          bool
           rows          int, live rows
           columns       [[name, type code, size, nullable, size_in_bytes], ...]
                         the visible columns (type codes: flowstate.types)
           layout        [row_size, [[name, type code, offset, width,
                         capacity, max_chars, nullable], ...]]: every
                         column of the row image, hidden view columns too
           view_of       null, or [source, [group columns], [[FUNCTION,
                         column or null], ...]]
           indexes       [[name, [columns], unique, ordered], ...]
                         (information: indexes are rebuilt from the rows)
    T  payload, 12 bytes: u32 table number (index into meta["tables"]),
         u64 live rows
    R  payload: a block of the table's export stream, cut between items
         (Table.export_rows; native/storage.pyx, "Export and import"):
           u32 row_size, u32 layout check (FNV-1a of the column layout),
           u32 high_water (slots in use), u32 nfree     (16 bytes, first)
           nfree x u32: the free list (free row ids, in reuse order)
           then each live slot in row-id order: the row image (row_size
           bytes: NULL bitmap, then each column at its offset, with
           out-of-line VARCHAR/VARBINARY pointer fields zeroed), then per
           out-of-line column a u32 length (0xFFFFFFFF: NULL) and the bytes
    E  payload, 28 bytes: u64 records before E (M, T and R), u64 total
         rows, u64 offset of E (file size - 41), u32 CRC32C of every byte
         before E (the whole-file checksum)

A reader accepts a file only if every record's CRC, the whole-file CRC,
the record count, the row counts and the order of records all check, and
nothing follows E.
"""

from __future__ import annotations

import mmap
import os
import struct
import sys
import time

import crc32c
import msgpack

from flowstate.errors import InternalError, SchemaError, UniqueViolationError
from flowstate.types import ColumnType

__all__ = ["write_snapshot", "read_snapshot_meta", "verify_snapshot", "load_snapshot",
           "SnapshotCorruptError", "SnapshotVersionError", "SnapshotSchemaError",
           "FORMAT_VERSION", "MAGIC", "TMP_SUFFIX"]

FORMAT_VERSION = 1
MAGIC = b"\x89FSNAP\r\n"
TMP_SUFFIX = ".tmp"
BLOCK_SIZE = 1 << 20

KIND_META = 0x4D       # "M"
KIND_TABLE = 0x54      # "T"
KIND_ROWS = 0x52       # "R"
KIND_END = 0x45        # "E"

_FILE_HEADER = struct.Struct("<8sI")            # + u32 CRC
_RECORD_HEAD = struct.Struct("<BI")
_U32 = struct.Struct("<I")
_TABLE = struct.Struct("<IQ")
_END = struct.Struct("<QQQI")
_HEADER_SIZE = 16
_RECORD_OVERHEAD = _RECORD_HEAD.size + 4        # 9 bytes around each payload
_END_RECORD_SIZE = _RECORD_OVERHEAD + _END.size  # 41

RESERVED_KEYS = ("format_version", "created_at", "byte_order", "tables")


class SnapshotCorruptError(InternalError):
    """The file is damaged, truncated, unfinished (.tmp) or not a snapshot."""


class SnapshotVersionError(InternalError):
    """The file is a snapshot of a format version this server cannot read."""


class SnapshotSchemaError(SchemaError):
    """The snapshot's tables do not match the store's (the schema changed)."""


# -- writing --------------------------------------------------------------------

def write_snapshot(store, path, meta: dict, *, block_size: int = BLOCK_SIZE) -> dict:
    """Write ``store`` to ``path`` atomically; return what was written.

    ``meta`` (any msgpack-able map: partition id, transaction id, log
    position, ...) is stored in the file and returned by
    ``read_snapshot_meta`` and ``load_snapshot``, with ``format_version``,
    ``created_at``, ``byte_order`` and ``tables`` added (the caller may not
    use those keys). Returns ``{"path", "bytes", "rows", "tables": {name:
    rows}, "seconds", "fsync_seconds"}``.
    """
    started = time.perf_counter()
    path = os.fspath(path)
    if path.endswith(TMP_SUFFIX):
        raise ValueError(f"{path}: a snapshot's name may not end in {TMP_SUFFIX} "
                         f"(that marks an unfinished one)")
    if store.in_transaction:
        raise RuntimeError("cannot write a snapshot inside an open transaction: "
                           "a snapshot is a committed state")
    if not isinstance(meta, dict):
        raise TypeError(f"meta must be a dict, got {type(meta).__name__}")
    taken = [k for k in RESERVED_KEYS if k in meta]
    if taken:
        raise ValueError(f"meta may not use the snapshot's own keys: {', '.join(taken)}")
    tables = list(store.tables.items())
    header = dict(meta)
    header["format_version"] = FORMAT_VERSION
    header["created_at"] = time.time()
    header["byte_order"] = sys.byteorder
    header["tables"] = [_table_meta(name, table) for name, table in tables]
    packed_meta = msgpack.packb(header, use_bin_type=True)

    tmp = path + TMP_SUFFIX
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_CLOEXEC, 0o644)
    try:
        out = _Writer(fd)
        head = _FILE_HEADER.pack(MAGIC, FORMAT_VERSION)
        out.write([head, _U32.pack(crc32c.crc32c(head))])
        out.record(KIND_META, packed_meta)
        counts = {}
        for number, (name, table) in enumerate(tables):
            rows = len(table)
            out.record(KIND_TABLE, _TABLE.pack(number, rows))
            export = table.export_rows(block_size)
            for block in export:
                out.record(KIND_ROWS, block)
            if export.rows != rows:
                raise RuntimeError(f"{name}: exported {export.rows} rows of {rows}; "
                                   f"the table changed during the snapshot")
            counts[name] = rows
        total_rows = sum(counts.values())
        end_at = out.offset
        payload = _END.pack(out.records, total_rows, end_at, out.file_crc)
        out.record(KIND_END, payload)
        sync_started = time.perf_counter()
        os.fsync(fd)
        fsync_seconds = time.perf_counter() - sync_started
    except BaseException:
        os.close(fd)
        try:
            os.unlink(tmp)
        except OSError:
            pass
        raise
    os.close(fd)
    os.replace(tmp, path)
    sync_started = time.perf_counter()
    _fsync_directory(os.path.dirname(os.path.abspath(path)))
    fsync_seconds += time.perf_counter() - sync_started
    return {"path": path, "bytes": out.offset, "rows": total_rows, "tables": counts,
            "seconds": time.perf_counter() - started, "fsync_seconds": fsync_seconds}


class _Writer:
    """Records to a file descriptor, keeping the offset, the record count
    and the CRC32C of everything written (the whole-file checksum)."""

    __slots__ = ("fd", "offset", "records", "file_crc")

    def __init__(self, fd: int):
        self.fd = fd
        self.offset = 0
        self.records = 0
        self.file_crc = 0

    def record(self, kind: int, payload) -> None:
        n = len(payload)
        if n > 0xFFFFFFFF:
            raise ValueError(f"a snapshot record of {n} bytes is over the format's 4 GiB limit")
        head = _RECORD_HEAD.pack(kind, n)
        crc = crc32c.crc32c(payload, crc32c.crc32c(head))
        self.write([head, payload, _U32.pack(crc)])
        if kind != KIND_END:
            self.records += 1

    def write(self, buffers: list) -> None:
        crc = self.file_crc
        total = 0
        for b in buffers:
            crc = crc32c.crc32c(b, crc)
            total += len(b)
        self.file_crc = crc
        self.offset += total
        _write_all(self.fd, buffers, total)


def _write_all(fd: int, buffers: list, total: int) -> None:
    written = os.writev(fd, buffers)
    while written < total:                  # a short write: write the rest
        rest = []
        skip = written
        for b in buffers:
            if skip >= len(b):
                skip -= len(b)
                continue
            rest.append(memoryview(b)[skip:])
            skip = 0
        buffers = rest
        total -= written
        written = os.writev(fd, buffers)


def _fsync_directory(directory: str) -> None:
    fd = os.open(directory, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _column_meta(column) -> list:
    return [column.name, int(column.type), column.size, bool(column.nullable),
            bool(column.size_in_bytes)]


def _table_meta(name: str, table) -> dict:
    row_size, layout = table.row_layout
    view_of = table.view_definition
    return {
        "name": name,
        "view": bool(table.is_view),
        "rows": len(table),
        "columns": [_column_meta(c) for c in table.columns],
        "layout": [row_size, [list(c) for c in layout]],
        "view_of": None if view_of is None else _plain(view_of),
        "indexes": [[ix_name, list(ix.columns), bool(ix.unique), bool(ix.ordered)]
                    for ix_name, ix in table.indexes.items()],
    }


def _plain(value):
    """Tuples as lists, recursively: what msgpack gives back."""
    if isinstance(value, (tuple, list)):
        return [_plain(v) for v in value]
    return value
