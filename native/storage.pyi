"""Type stubs for flowstate.native.storage (compiled from storage.pyx).

The storage engine of one partition: typed tables in C memory, hash and
ordered indexes, materialized views and the undo log. See storage.pyx for
the design and invariants.

Keys: a primary key, unique index or ordered index over ONE column takes
the bare value as its key (``t.get(42)``); over several columns it takes a
tuple (``v.get((3, "CA"))``). Ordered-index lookups and range bounds may be
a prefix of the index columns (a shorter tuple, or a bare value for the
first column).

Rows are returned as instances of the table's ``Row`` class, a namedtuple
whose fields are the column names in lower case: ``row.num_votes``,
``row[1]`` and ``a, b, c = row`` all work.

Every write is atomic: a write that fails (bad value, uniqueness) raises a
``flowstate.errors.ConstraintError`` subclass and leaves no trace. Inside
``Store.begin()`` … ``commit()``/``rollback()`` every change (indexes and
views included) is recorded in the undo log; ``rollback()`` undoes them in
reverse order. Outside a transaction each write commits on its own.
Each commit folds the changes it made into ``Store.change_digest``.
"""

from typing import Any, Iterator, Sequence

import numpy

from flowstate.types import Column

Key = Any  # a bare value for one-column keys, a tuple for several

CHANGE_DIGEST_VERSION: int
"""The format of Store.change_digest (1). Any change to what is hashed or
how is a new version, so that command logs written by another version
are recognised rather than reported as non-deterministic."""


class Store:
    """All tables and views of one partition, and its undo log."""

    tables: dict[str, "Table"]          # tables and views by lower-case name

    def __init__(self) -> None: ...

    def create_table(self, name: str, columns: Sequence[Column],
                     primary_key: Sequence[str] | None = None) -> "Table":
        """A new empty table. ``primary_key`` names NOT NULL columns."""

    def create_index(self, table: str, name: str, columns: Sequence[str], *,
                     unique: bool = False, ordered: bool = True) -> "Index":
        """A new index on an existing table, filled from its current rows.

        ``ordered=False`` declares a hash index (equality lookups only).
        Raises UniqueViolationError if ``unique`` and the rows collide."""

    def create_view(self, name: str, source: str, group_by: Sequence[str],
                    aggregates: Sequence[tuple[str, str | None]],
                    column_names: Sequence[str] | None = None) -> "Table":
        """A materialized view ``SELECT g..., AGG(x)... FROM source GROUP BY g...``.

        ``aggregates`` are (function, column) pairs, function one of
        ``COUNT`` (column None for COUNT(*)), ``SUM``, ``MIN``, ``MAX``.
        The view's columns are the group columns then one per aggregate,
        named by ``column_names`` (default: the group column names then
        ``count``, ``sum_x``, ...). Its primary key is the group columns.
        A group's row disappears when its last source row does."""

    def drop(self, name: str) -> None:
        """Drop a table (with its indexes and views) or a view."""

    # transactions
    in_transaction: bool

    def begin(self) -> None:
        """Start recording undo. Raises if a transaction is already open."""

    def commit(self) -> None:
        """Make the transaction's changes permanent, fold them into
        ``change_digest`` and free its undo data."""

    def rollback(self) -> None:
        """Undo every change since begin(), newest first."""

    def savepoint(self) -> int:
        """A mark inside the open transaction to roll back to."""

    def rollback_to(self, savepoint: int) -> None:
        """Undo every change made after ``savepoint``."""

    undo_size: int                      # records in the open transaction's undo log

    # the change digest (storage.pyx, "Change digest", says exactly what
    # is hashed; command logs record it, so it is a format: see
    # CHANGE_DIGEST_VERSION)
    change_digest: int
    """Running 64-bit digest of the row changes committed to tables, in
    [0, 2**64). Starts at 0. Every commit (explicit, or the implicit one of
    a write statement outside a transaction) folds in each change it made,
    in order: its kind (insert / delete / update), the table's name and the
    logical content of the row(s): the new row, the old row, or both.
    Changes undone by rollback, rollback_to or a failed statement never
    count; a commit without changes, DDL and import_rows leave it alone;
    views' changes are not hashed (they follow from their tables').
    Deterministic across processes and however the store was loaded.

    Settable (an int in [0, 2**64); TypeError / ValueError otherwise), but
    not inside a transaction (RuntimeError): recovery restores it from a
    snapshot's metadata, and later commits fold into the value set."""


class Table:
    """A table or a materialized view (views refuse writes)."""

    name: str
    columns: tuple[Column, ...]
    column_names: tuple[str, ...]       # lower case, in declaration order
    primary_key: tuple[str, ...] | None
    Row: type                           # the namedtuple class of this table's rows
    indexes: dict[str, "Index"]         # by lower-case name; the primary key is "primary_key"
    is_view: bool
    read_only_reason: str | None        # while set, writes raise ReadOnlyError(reason)

    def __len__(self) -> int: ...

    # -- by primary key --------------------------------------------------
    def get(self, key: Key) -> Any | None:
        """The row with this primary key, or None."""

    def insert(self, *values: Any, **named: Any) -> None:
        """Insert one row: values in column order, or by column name.

        Columns not given take their DEFAULT (or NULL). Raises
        UniqueViolationError if the primary key or a unique index is taken."""

    def upsert(self, *values: Any, **named: Any) -> bool:
        """Insert the row, or replace the row with the same primary key.
        Returns True if it inserted, False if it replaced."""

    def update(self, key: Key, **changes: Any) -> Any | None:
        """Change some columns of the row with this primary key (key
        columns included). Returns the new row, or None if there is no
        such row."""

    def delete(self, key: Key) -> Any | None:
        """Delete the row with this primary key. Returns the deleted row,
        or None if there was none."""

    def truncate(self) -> int:
        """Delete every row (undoable). Returns how many."""

    # -- scans -----------------------------------------------------------
    def scan(self) -> Iterator[Any]:
        """Every row, in storage order. Rows inserted during the scan may
        or may not be seen; deleted rows are not."""

    def column_array(self, name: str) -> numpy.ndarray:
        """One column of every row (storage order) as a numpy array: int64,
        float64, or object for DECIMAL/VARCHAR/VARBINARY/TIMESTAMP (None for
        NULL). Integer/float columns with NULLs come back as float64 with NaN."""

    def index(self, name: str) -> "Index": ...

    # -- by row id (used by the SQL executor and tables without a key) ----
    def insert_rowid(self, values: Sequence[Any]) -> int:
        """Insert a full row (all columns in order); returns its row id."""

    def read(self, rowid: int) -> Any:
        """The row stored at ``rowid``. KeyError if there is none."""

    def update_rowid(self, rowid: int, **changes: Any) -> Any:
        """Change columns of the row at ``rowid``; returns the new row."""

    def delete_rowid(self, rowid: int) -> Any:
        """Delete the row at ``rowid``; returns it."""

    def scan_rowids(self) -> list[int]:
        """Row ids of every row, in storage order."""

    memory_bytes: int                   # rows + indexes (+ view upkeep) in bytes

    # -- bulk export and import (snapshots) --------------------------------
    row_layout: tuple[int, tuple[tuple[str, int, int, int, int, int, bool], ...]]
    """(row_size, per column (name, type code, offset, width, capacity,
    max_chars, nullable)), hidden view columns included: the meaning of a
    row image. Export streams move between tables with equal layouts."""

    view_definition: tuple[str, tuple[str, ...], tuple[tuple[str, str | None], ...]] | None
    """A view's (source, group_by, ((FUNCTION, column or None), ...));
    None for a table."""

    def export_rows(self, block_size: int = 1 << 20) -> "RowExport":
        """The table's (or view's) rows as a position-independent byte
        stream, in blocks of about ``block_size`` bytes (each ending between
        two items; never empty). The stream keeps every row id and the free
        list, so ``import_rows`` rebuilds an identical table:

            u32 row_size, u32 layout check, u32 high_water, u32 nfree
            nfree x u32            the free list, in reuse order
            per live slot, in row-id order: the row image (row_size bytes,
            out-of-line pointer fields zeroed), then per out-of-line
            VARCHAR/VARBINARY column u32 length (0xFFFFFFFF = NULL) + bytes

        Little-endian; see storage.pyx, "Export and import". Raises
        RuntimeError inside a transaction (export a committed state). The
        table must not change while the iterator runs: a snapshot exports
        in a fork()ed child, whose copy of the store is frozen."""

    def import_rows(self, data: Any, *, rebuild_views: bool = True) -> int:
        """Load an export stream into this EMPTY table or view; returns the
        rows loaded. ``data`` is one bytes-like object or an iterable of
        them (blocks cut between items, as export_rows yields them). Row
        ids and the free list are those of the exported table; every index
        is built in bulk afterwards. With ``rebuild_views`` (tables only)
        each view of the table, which must be empty, is recomputed from
        the rows; without it the views are left alone, to be imported
        directly from their own streams (as snapshots do: faster, and the
        views keep their row ids too).

        No undo: refused inside a transaction (RuntimeError) and on a
        table with rows (ValueError); writes-refused flags (views,
        read_only_reason) do not apply. A malformed stream raises
        ValueError, rows that break a unique index UniqueViolationError;
        either way the table (and its views) are left empty."""


class RowExport:
    """Iterator of ``bytes`` blocks of one table's export stream."""

    rows: int                           # rows exported so far
    block_rows: int                     # rows in the last block

    def __iter__(self) -> "RowExport": ...
    def __next__(self) -> bytes: ...


class Index:
    """A primary key, secondary or hidden index of one table."""

    name: str
    table: Table
    columns: tuple[str, ...]
    unique: bool
    ordered: bool

    def __len__(self) -> int: ...

    def get(self, key: Key) -> Any | None:
        """Unique indexes: the row with exactly this key, or None."""

    def find(self, key: Key) -> list[Any]:
        """Rows whose key equals ``key``; ordered indexes also take a
        prefix of their columns. In key order for ordered indexes."""

    def range(self, low: Key | None = None, high: Key | None = None, *,
              low_inclusive: bool = True, high_inclusive: bool = True,
              reverse: bool = False, limit: int = -1) -> list[Any]:
        """Ordered indexes only: rows with low <= key <= high (bounds may be
        prefixes, None is unbounded), ascending or, with ``reverse``,
        descending, at most ``limit`` rows (-1: all)."""

    def find_rowids(self, key: Key) -> list[int]: ...

    def range_rowids(self, low: Key | None = None, high: Key | None = None, *,
                     low_inclusive: bool = True, high_inclusive: bool = True,
                     reverse: bool = False, limit: int = -1) -> list[int]: ...
