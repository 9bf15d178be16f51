"""Snapshots: one partition's store in one file, written and loaded fast.

``write_snapshot(store, path, meta)`` writes every table and view of the
store to ``path + ".tmp"``, fsyncs it, renames it to ``path`` and fsyncs
the directory, so ``path`` is either absent, the previous snapshot or the
complete new one. It writes the file out to the device as it goes
(server/files.py, ``write_out``), so that its final fsync does not hold
the disk for long. It needs only the Store: no threads, only system
calls (write, sync_file_range, fsync), so it is safe in a fork()ed child
(the partition forks and the child writes while the parent goes on;
copy-on-write keeps the child's view of the store frozen at the fork):

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
from flowstate.server.files import WRITE_OUT_BYTES, fsync_directory, write_out
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
    use those keys). Returns ``{"path", "bytes": file size, "rows": rows of
    every table and view, "tables": {name: rows}, "seconds": the whole
    write, "fsync_seconds": the part spent in fsync}``.

    Refuses (RuntimeError) while a transaction is open: fork between
    transactions. Only reads the store, so the parent may go on writing
    to its copy-on-write copy while a forked child writes the file.
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
    fsync_directory(os.path.dirname(os.path.abspath(path)))
    fsync_seconds += time.perf_counter() - sync_started
    return {"path": path, "bytes": out.offset, "rows": total_rows, "tables": counts,
            "seconds": time.perf_counter() - started, "fsync_seconds": fsync_seconds}


class _Writer:
    """Records to a file descriptor, keeping the offset, the record count
    and the CRC32C of everything written (the whole-file checksum)."""

    __slots__ = ("fd", "offset", "records", "file_crc", "written_out", "writing_out")

    def __init__(self, fd: int):
        self.fd = fd
        self.offset = 0
        self.records = 0
        self.file_crc = 0
        self.written_out = 0          # bytes before this are on the device (not fsynced)
        self.writing_out = True

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
        # Out to the device as it goes (server/files.py): the fsync at the
        # end would otherwise flush the whole file at once, and the
        # partitions' command log fsyncs would wait behind it.
        if self.writing_out and self.offset - self.written_out >= WRITE_OUT_BYTES:
            self.writing_out = write_out(self.fd, self.written_out,
                                         self.offset - self.written_out)
            self.written_out = self.offset


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


# -- reading --------------------------------------------------------------------

def read_snapshot_meta(path) -> dict:
    """The meta of the snapshot at ``path`` (the caller's keys plus
    ``format_version``, ``created_at``, ``byte_order`` and ``tables``),
    from its header and meta record only: the rest of the file is not
    checked (``verify_snapshot`` and ``load_snapshot`` check it)."""
    path = _snapshot_path(path)
    with open(path, "rb") as f:
        size = os.fstat(f.fileno()).st_size
        head = f.read(_HEADER_SIZE + _RECORD_HEAD.size)
        _check_file_header(path, head, size)
        if len(head) < _HEADER_SIZE + _RECORD_HEAD.size:
            _corrupt(path, f"truncated: {size} bytes, no meta record")
        kind, n = _RECORD_HEAD.unpack_from(head, _HEADER_SIZE)
        if kind != KIND_META:
            _corrupt(path, f"the first record is {_kind_name(kind)}, not the meta")
        if _HEADER_SIZE + _RECORD_OVERHEAD + n > size:
            _corrupt(path, f"truncated: the meta record runs past the end of the file "
                           f"({size} bytes)")
        rest = f.read(n + 4)
    record = head[_HEADER_SIZE:] + rest
    if len(rest) != n + 4 or _U32.unpack_from(record, len(record) - 4)[0] != \
            crc32c.crc32c(record[:len(record) - 4]):
        _corrupt(path, f"the meta record at byte {_HEADER_SIZE} fails its checksum")
    return _decode_meta(path, record[_RECORD_HEAD.size:len(record) - 4])


def verify_snapshot(path) -> dict:
    """Check every byte of the snapshot at ``path`` without loading it;
    return its meta. Raises SnapshotCorruptError or SnapshotVersionError."""
    path = _snapshot_path(path)
    with _Mapped(path) as data:
        meta, _ = _scan(path, data)
    return meta


def load_snapshot(path, store) -> dict:
    """Load the snapshot at ``path`` into ``store`` and return its meta.

    ``store`` must be empty and built from the same catalog as the one
    written (``flowstate.server.partition.build_store``). The whole file
    is checked first, then its tables against the store's; damage raises
    SnapshotCorruptError and a mismatch SnapshotSchemaError before the
    store changes (see the module docstring for the one exception).
    """
    path = _snapshot_path(path)
    if store.in_transaction:
        raise RuntimeError("cannot load a snapshot inside an open transaction")
    full = [name for name, table in store.tables.items() if len(table)]
    if full:
        raise ValueError(f"load_snapshot needs an empty store; {', '.join(full)} "
                         f"{'has' if len(full) == 1 else 'have'} rows")
    with _Mapped(path) as data:
        meta, sections = _scan(path, data)
        _check_schema(path, meta["tables"], store)
        for number, rows, blocks in sections:
            name = meta["tables"][number]["name"]
            table = store.tables[name]
            try:
                loaded = table.import_rows((data[a:b] for a, b in blocks), rebuild_views=False)
            except UniqueViolationError as e:
                raise SnapshotSchemaError(
                    f"{path}: the rows of {name} break a unique index of the store that "
                    f"the snapshot's schema did not have: {e}") from e
            except ValueError as e:
                raise SnapshotCorruptError(f"{path}: {name}: {e}") from e
            if loaded != rows:
                raise SnapshotCorruptError(f"{path}: {name}: {loaded} rows loaded, the file "
                                           f"says {rows}")
    return meta


class _Mapped:
    """The file mapped read-only, as a memoryview; released on exit."""

    def __init__(self, path: str):
        self.path = path
        self.map = None
        self.view = None

    def __enter__(self) -> memoryview:
        with open(self.path, "rb") as f:
            size = os.fstat(f.fileno()).st_size
            if size < _HEADER_SIZE:
                _check_file_header(self.path, f.read(), size)
            self.map = mmap.mmap(f.fileno(), 0, access=mmap.ACCESS_READ)
        # (no MADV_SEQUENTIAL: the check pass and the load read the pages twice)
        self.view = memoryview(self.map)
        return self.view

    def __exit__(self, *exc) -> None:
        try:
            self.view.release()
            self.map.close()
        except BufferError:
            pass        # a slice is still referenced somewhere: the GC closes the map


def _snapshot_path(path) -> str:
    path = os.fspath(path)
    if path.endswith(TMP_SUFFIX):
        raise SnapshotCorruptError(f"{path} is an unfinished snapshot (its name ends in "
                                   f"{TMP_SUFFIX}: the writer had not renamed it into place)")
    return path


def _corrupt(path: str, what: str):
    raise SnapshotCorruptError(f"{path}: not a valid snapshot: {what}")


def _kind_name(kind: int) -> str:
    return {KIND_META: "M (meta)", KIND_TABLE: "T (table)", KIND_ROWS: "R (rows)",
            KIND_END: "E (end)"}.get(kind, f"unknown kind 0x{kind:02x}")


def _check_file_header(path: str, head, size: int) -> None:
    if size < _HEADER_SIZE or len(head) < _HEADER_SIZE:
        if bytes(head[:len(MAGIC)]) != MAGIC[:len(head)]:
            _corrupt(path, "it does not start with the snapshot magic number")
        _corrupt(path, f"truncated: {size} bytes, shorter than the {_HEADER_SIZE}-byte header")
    magic, version = _FILE_HEADER.unpack_from(head, 0)
    if magic != MAGIC:
        _corrupt(path, "it does not start with the snapshot magic number")
    if _U32.unpack_from(head, 12)[0] != crc32c.crc32c(head[:12]):
        _corrupt(path, "the file header fails its checksum")
    if version != FORMAT_VERSION:
        raise SnapshotVersionError(f"{path} is in snapshot format version {version}; this "
                                   f"server reads version {FORMAT_VERSION}")


def _decode_meta(path: str, payload) -> dict:
    try:
        meta = msgpack.unpackb(payload, raw=False, strict_map_key=False)
    except Exception as e:
        _corrupt(path, f"the meta record does not decode ({type(e).__name__}: {e})")
    if not isinstance(meta, dict) or meta.get("format_version") != FORMAT_VERSION:
        _corrupt(path, "the meta record is not a version-1 snapshot meta map")
    tables = meta.get("tables")
    if not isinstance(tables, list) or not all(
            isinstance(t, dict) and isinstance(t.get("name"), str) and isinstance(t.get("rows"), int)
            for t in tables):
        _corrupt(path, "the meta record has no valid table list")
    if meta.get("byte_order") != sys.byteorder:
        raise SnapshotVersionError(f"{path} was written on a {meta.get('byte_order')}-endian "
                                   f"machine; this one is {sys.byteorder}-endian")
    return meta


def _scan(path: str, data: memoryview):
    """Check the whole file; return (meta, [(table number, rows, [(start,
    end) of each R payload]), ...])."""
    size = len(data)
    _check_file_header(path, data[:_HEADER_SIZE], size)
    pos = _HEADER_SIZE
    meta = None
    sections = []
    records = 0
    while True:
        if size - pos < _RECORD_OVERHEAD:
            _corrupt(path, f"truncated: {size} bytes, no end record"
                     + (f" (a record header is cut at byte {pos})" if pos < size else ""))
        kind, n = _RECORD_HEAD.unpack_from(data, pos)
        end = pos + _RECORD_OVERHEAD + n
        if end > size:
            _corrupt(path, f"truncated: the {_kind_name(kind)} record at byte {pos} "
                           f"runs past the end of the file ({size} bytes)")
        if _U32.unpack_from(data, end - 4)[0] != crc32c.crc32c(data[pos:end - 4]):
            _corrupt(path, f"the {_kind_name(kind)} record at byte {pos} fails its checksum")
        start = pos + _RECORD_HEAD.size
        if kind == KIND_END:
            break
        if meta is None:
            if kind != KIND_META:
                _corrupt(path, f"the first record is {_kind_name(kind)}, not the meta")
            meta = _decode_meta(path, data[start:end - 4])
        elif kind == KIND_TABLE:
            if n != _TABLE.size:
                _corrupt(path, f"the table record at byte {pos} has {n} bytes")
            number, rows = _TABLE.unpack_from(data, start)
            if number != len(sections) or number >= len(meta["tables"]):
                _corrupt(path, f"table record {number} at byte {pos} is out of order")
            if rows != meta["tables"][number]["rows"]:
                _corrupt(path, f"table record {number} says {rows} rows, the meta "
                               f"{meta['tables'][number]['rows']}")
            sections.append((number, rows, []))
        elif kind == KIND_ROWS:
            if not sections:
                _corrupt(path, f"a rows record at byte {pos} comes before any table record")
            sections[-1][2].append((start, end - 4))
        else:
            _corrupt(path, f"unexpected {_kind_name(kind)} record at byte {pos}")
        records += 1
        pos = end
    if end != size:
        _corrupt(path, f"{size - end} bytes follow the end record")
    if n != _END.size:
        _corrupt(path, f"the end record has {n} bytes")
    count, total_rows, end_at, file_crc = _END.unpack_from(data, start)
    if end_at != pos or count != records:
        _corrupt(path, f"the end record says {count} records before byte {end_at}; "
                       f"found {records} before byte {pos}")
    if meta is None:
        _corrupt(path, "no meta record")
    if len(sections) != len(meta["tables"]) or any(not blocks for _, _, blocks in sections):
        _corrupt(path, f"{len(sections)} table sections for {len(meta['tables'])} tables, "
                       f"or a table without its rows")
    if total_rows != sum(rows for _, rows, _ in sections):
        _corrupt(path, f"the end record says {total_rows} rows; the tables hold "
                       f"{sum(rows for _, rows, _ in sections)}")
    if crc32c.crc32c(data[:pos]) != file_crc:
        _corrupt(path, "the whole-file checksum does not match")
    return meta, sections


# -- the schema check --------------------------------------------------------------

def _describe_column(c) -> str:
    """[name, type code, size, nullable, size_in_bytes] as DDL spells it."""
    name, code, size, nullable, in_bytes = c
    try:
        type_name = ColumnType(code).name
    except ValueError:
        type_name = f"type {code}"
    if code in (ColumnType.VARCHAR, ColumnType.VARBINARY):
        type_name += f"({size}{' BYTES' if in_bytes and code == ColumnType.VARCHAR else ''})"
    return f"{name} {type_name}{'' if nullable else ' NOT NULL'}"


def _describe_view(v) -> str:
    if v is None:
        return "not a view"
    source, group_by, aggregates = v
    aggs = ", ".join(f"{f}({'*' if c is None else c})" for f, c in aggregates)
    return f"SELECT {', '.join(group_by)}, {aggs} FROM {source} GROUP BY {', '.join(group_by)}"


def _check_schema(path: str, file_tables: list, store) -> None:
    names = [t["name"] for t in file_tables]
    only_file = [n for n in names if n not in store.tables]
    only_store = [n for n in store.tables if n not in names]
    if only_file or only_store:
        parts = []
        if only_file:
            parts.append(f"only in the snapshot: {', '.join(only_file)}")
        if only_store:
            parts.append(f"only in the store: {', '.join(only_store)}")
        raise SnapshotSchemaError(f"{path}: the snapshot's tables are not the store's "
                                  f"({'; '.join(parts)})")
    for ft in file_tables:
        name = ft["name"]
        table = store.tables[name]
        what = "view" if table.is_view else "table"
        if bool(ft.get("view")) != bool(table.is_view):
            raise SnapshotSchemaError(
                f"{path}: {name} is a {'view' if ft.get('view') else 'table'} in the snapshot "
                f"but a {what} in the store")
        mine = [_column_meta(c) for c in table.columns]
        theirs = ft.get("columns")
        if theirs != mine:
            if not isinstance(theirs, list):
                _corrupt(path, f"the meta of {name} has no column list")
            for i, (a, b) in enumerate(zip(theirs, mine)):
                if a != b:
                    raise SnapshotSchemaError(
                        f"{path}: {what} {name}, column {i + 1}: `{_describe_column(a)}` in the "
                        f"snapshot, `{_describe_column(b)}` in the store")
            raise SnapshotSchemaError(
                f"{path}: {what} {name} has {len(theirs)} columns in the snapshot "
                f"({', '.join(_describe_column(c) for c in theirs)}), {len(mine)} in the store "
                f"({', '.join(_describe_column(c) for c in mine)})")
        view_of = table.view_definition
        view_of = None if view_of is None else _plain(view_of)
        if ft.get("view_of") != view_of:
            raise SnapshotSchemaError(
                f"{path}: view {name} is `{_describe_view(ft.get('view_of'))}` in the snapshot, "
                f"`{_describe_view(view_of)}` in the store")
        row_size, layout = table.row_layout
        if ft.get("layout") != [row_size, [list(c) for c in layout]]:
            raise SnapshotSchemaError(
                f"{path}: {what} {name} stores its rows in another layout in the snapshot "
                f"(hidden columns or sizes differ): snapshot {ft.get('layout')}, "
                f"store {[row_size, [list(c) for c in layout]]}")
