# cython: language_level=3
"""The storage engine of one partition: tables, indexes, views and undo.

How it fits: a partition process owns one ``Store``. The catalog
(flowstate.server.catalog) describes tables, indexes and views; the
partition creates them here; procedures read and write through ``Table``
and ``Index`` objects, one Python call per row operation or per scan.
The API is described in ``storage.pyi``.

Rows
    A table keeps fixed-width rows in chunks of CHUNK_ROWS slots. A slot is
    one state byte (FREE, LIVE, DEAD) followed by the row: a NULL bitmap
    (only if some column is nullable; bit set = NULL) and then each column
    at a fixed offset, unaligned. Integers, FLOAT and TIMESTAMP take their
    natural width, DECIMAL 16 bytes (int128 scaled by 10**12). VARCHAR and
    VARBINARY whose worst-case byte size is at most INLINE_MAX are stored
    inline as one length byte plus the bytes; longer ones as a pointer to a
    malloc'd block ``[uint32 length][bytes]`` owned by the row. A row id
    is the slot number (uint32); it is stable while the row lives.

Keys
    Every index works on memcmp-ordered key encodings (``encode_cell``):
    per column a marker byte (0x00 NULL, 0x01 value) then an
    order-preserving image of the value: big-endian integers with the sign
    bit flipped, IEEE doubles with the usual sign trick (-0.0 == 0.0),
    int128 for DECIMAL, and strings/bytes with 0x00 escaped as 0x00 0xFF
    and terminated by 0x00 0x00. Column encodings are self-delimiting, so
    the encoding of a prefix of the columns is a byte prefix of the
    encoding of the whole key: prefix lookups and range bounds are byte
    prefixes.

Indexes
    * ``HashIndex`` (primary keys, unique hash indexes): linear probing over
      64-bit slots holding (32-bit hash tag, row id); keys are not stored,
      a tag match re-encodes the row's key to compare. Deletion shifts
      entries back, so there are no tombstones.
    * ``IntOrderedIndex`` (one NOT NULL integer column): 128-bit integers
      (sign-flipped key, row id) in a two-level block B-tree (fs_blockset).
    * ``OrderedIndex`` (everything else): a std::set of encoded key + big-
      endian row id. A non-unique index declared as hash is served by one
      of the ordered kinds too (range scans stay refused on it).

Undo
    Every change of a table, including those of views and indexes, is a
    record in the Store's undo log: INSERT (row id), DELETE (row id: the
    slot stays DEAD, not FREE, until commit) and UPDATE (row id and the old
    row image, which owns the old out-of-line values). Rollback applies
    them newest first; commit frees DEAD slots and old images. Outside a
    transaction every write statement is its own transaction.

Change digest
    ``Store.change_digest`` is an unsigned 64-bit running digest of the row
    changes committed to tables. The command log's determinism guard
    records it, so that a replay which returns the same results but changes
    the state differently is caught. It is a FORMAT: logs keep digests
    made by one version of this code and compare them with another's, so
    any change to what follows needs a new ``CHANGE_DIGEST_VERSION``.

    It starts at 0 (or whatever Python sets: recovery restores it from a
    snapshot's metadata). Each commit, explicit or the implicit one of a
    write statement outside a transaction, folds the change hash ``c`` of
    every change it made, in the order they were made:

        digest = round(digest, c)

    Only the sequence of changes matters: the same changes committed as one
    transaction or as several give the same digest, a commit without
    changes leaves it alone, and changes undone by rollback, rollback_to or
    a failed statement never count (their undo records, which carry ``c``,
    are gone before any commit). ``import_rows``, DDL (create, drop, and
    filling a new index or view) are not changes. A change is one undo
    record of a table: a statement's INSERT, DELETE or UPDATE of one row
    (upsert: whichever it did; truncate: one DELETE per row, in row-id
    order; an update counts even if it rewrites equal values).

    Views' changes are NOT hashed: a view's rows are a function of the
    changes of its source table, which are hashed, so they would only
    cost time (an insert into a table with two views would hash four more
    rows: each view's old and new row); and a view rebuilt by
    ``import_rows(rebuild_views=True)`` may hold a FLOAT SUM that differs
    in its last bits from the incrementally kept original, which would
    make the digest depend on how the store was loaded.

    The hash (xxHash64's constants, round and avalanche, used as one
    sequential lane; arithmetic modulo 2**64; storage_support.h):

        P1 = 0x9E3779B185EBCA87  P2 = 0xC2B2AE3D27D4EB4F
        P3 = 0x165667B19E3779F9  SEED = 0x27D4EB2F165667C5
        round(acc, w) = rotl64(acc + w * P2, 31) * P1
        avalanche(h)  = h ^= h >> 33; h *= P2; h ^= h >> 29; h *= P3;
                        h ^= h >> 32
        bytes(acc, b) = round(acc, len(b)), then round with each 8 bytes
                        of b as a little-endian word, the last word padded
                        with zero bytes (no word for the empty string)

    A change hash absorbs words into ``h = SEED``:

        kind              1 INSERT, 2 DELETE, 3 UPDATE
        table tag         avalanche(bytes(SEED, the table's lower-case
                          name in UTF-8)): stable across processes, unlike
                          a pointer, a table id or Python's hash()
        the row(s)        INSERT: the new row; DELETE: the old row;
                          UPDATE: the old row, then the new row

    and is ``c = avalanche(h)``. A row is, for a table of n columns:

        ceil(n / 64) words of NULL mask: bit j of word k set iff column
            64k + j (declaration order) is NULL; always 0 for NOT NULL
            columns, whatever the stored bitmap's spare bits say
        then, for each column in declaration order that is not NULL:
            TINYINT .. BIGINT   the value sign-extended to 64 bits (two's
                                complement, as an unsigned word)
            TIMESTAMP           microseconds since the epoch, likewise
            FLOAT               the IEEE-754 bits of the double as stored
                                (-0.0 and 0.0 differ: they read back
                                differently)
            DECIMAL             the value * 10**12 as an int128: its low
                                word, then its high word
            VARCHAR, VARBINARY  bytes(value): UTF-8 for VARCHAR, the same
                                whether stored inline or out of line

    Row ids are not hashed (they are layout, not content). The change
    hash is computed in ``Store.log`` when the undo record is written: the
    new image of an insert or update is at hand then (and in cache), while
    at commit only the last image of each row is left; the undo record
    keeps the hash and commit only folds them. The cost is one pass over
    the columns of each changed row, about 10-30 ns a row.
    tests/test_storage_digest.py reimplements all of this in Python and
    pins the digest of a fixed sequence: if that test fails, the format
    changed.

Export and import (snapshots)
    ``Table.export_rows`` writes a table's slots as a position-independent
    byte stream and ``Table.import_rows`` loads one into an empty table,
    then builds every index in bulk (sorted loads; hash inserts grouped
    by table region). The stream keeps row ids and the free list exactly, so a
    loaded table scans, breaks index ties and places future inserts as the
    original did (deterministic replay of a command log depends on it):

        u32 row_size, u32 layout check (FNV-1a of the column layout),
        u32 high_water, u32 nfree                        16-byte header
        nfree x u32                                      the free list, in order
        then each LIVE slot in row-id order:
            row image (row_size bytes; out-of-line pointer fields zeroed)
            per out-of-line column: u32 length (0xFFFFFFFF: NULL) + bytes

    All integers little-endian (the row image is the machine's layout;
    only little-endian machines are supported). A stream may be cut into
    blocks anywhere between two items (header, free-list entry, row).

Invariants
    1. A LIVE slot is in every index of its table (rows with a NULL in a
       unique secondary index's columns are left out of that index:
       NULLs are distinct in SQL). DEAD and FREE slots are in none.
    2. Each out-of-line buffer has exactly one owner: a live or dead slot,
       or one undo image.
    3. A failed statement leaves no trace: uniqueness is checked before any
       change, and anything that fails later (a view's SUM overflowing)
       rolls back to the statement's savepoint.
    4. A view's row for a group exists iff the source has rows in the
       group, and its aggregates equal those recomputed from the source.
    5. ``Store.change_digest`` has folded the change hash of every undo
       record of a table released by a commit, in log order, and of no
       other; each such record carries the hash of its change as made.
"""

from libc.stdint cimport int8_t, int16_t, int32_t, int64_t, uint8_t, uint16_t, uint32_t, uint64_t
from libc.stdlib cimport malloc, free, calloc
from libc.string cimport memcpy, memcmp, memset
from libc.math cimport isnan
from libcpp.string cimport string
from libcpp.vector cimport vector
from libcpp.set cimport set as cppset
from cython.operator cimport dereference as deref, preincrement as inc, predecrement as dec
from cpython.ref cimport Py_INCREF
from cpython.tuple cimport PyTuple_SET_ITEM
from cpython.long cimport PyLong_Check
from cpython.float cimport PyFloat_Check, PyFloat_AS_DOUBLE
from cpython.unicode cimport PyUnicode_Check, PyUnicode_DecodeUTF8
from cpython.bytes cimport PyBytes_Check, PyBytes_AS_STRING, PyBytes_GET_SIZE, PyBytes_FromStringAndSize
from cpython.buffer cimport PyObject_CheckBuffer, PyObject_GetBuffer, PyBuffer_Release, PyBUF_SIMPLE

import collections
import datetime as _dt
import decimal as _decimal


from flowstate.errors import (NotNullError, ReadOnlyError, TypeMismatchError,
                              UniqueViolationError, ValueOutOfRangeError, ValueTooLongError)
from flowstate.types import (Column, ColumnType, DECIMAL_CONTEXT, DECIMAL_SCALE, EPOCH,
                             timestamp_to_micros)

cdef extern from "Python.h":
    ctypedef struct PyTypeObject:
        object (*tp_alloc)(PyTypeObject*, Py_ssize_t)
    Py_ssize_t PyUnicode_GET_LENGTH(object)
    const char* PyUnicode_AsUTF8AndSize(object, Py_ssize_t*) except NULL
    long long PyLong_AsLongLongAndOverflow(object, int*) except? -1

cdef extern from "storage_support.h":
    uint64_t fs_hash_bytes(const char* data, size_t n) nogil
    uint64_t FS_DIGEST_SEED
    uint64_t fs_digest_round(uint64_t acc, uint64_t w) nogil
    uint64_t fs_digest_avalanche(uint64_t h) nogil
    uint64_t fs_digest_bytes(uint64_t acc, const char* p, size_t n) nogil
    uint64_t fs_load_partial(const char* p, size_t n) nogil
    void fs_int128_store(char* dst, int64_t hi, uint64_t lo) nogil
    int64_t fs_int128_hi(const char* src) nogil
    uint64_t fs_int128_lo(const char* src) nogil
    int fs_int128_add_checked(const char* a, const char* b, char* out, int negate_b) nogil
    int fs_starts_with(const string& s, const string& prefix) nogil
    ctypedef unsigned long long fs_u128     # unsigned __int128 in C++
    struct fs_bpos:
        size_t b
        int i
    cdef cppclass fs_blockset:
        size_t size()
        size_t memory_bytes()
        void insert(fs_u128)
        bint erase(fs_u128)
        fs_bpos begin()
        fs_bpos end()
        fs_bpos lower_bound(fs_u128)
        bint at_end(fs_bpos)
        fs_u128 get(fs_bpos)
        void next(fs_bpos*)
        void prev(fs_bpos*)
        void clear()
        void load_sorted(const fs_u128*, size_t) except +
    bint fs_bpos_eq(fs_bpos, fs_bpos)
    bint fs_bpos_lt(fs_bpos, fs_bpos)
    void* fs_alloc_huge(size_t) nogil
    void fs_sort_u128(fs_u128*, size_t) nogil
    void fs_sort_u32(uint32_t*, size_t) nogil
    void fs_hash_insert_many(uint64_t*, size_t, const uint64_t*, size_t, vector[uint64_t]*) except +
    void fs_sort_strings(vector[string]&) except +
    void fs_set_fill_sorted(cppset[string]&, vector[string]&) except +


# -- constants ---------------------------------------------------------------

cdef enum:
    T_TINYINT = 1
    T_SMALLINT = 2
    T_INTEGER = 3
    T_BIGINT = 4
    T_FLOAT = 5
    T_DECIMAL = 6
    T_VARCHAR = 7
    T_VARBINARY = 8
    T_TIMESTAMP = 9

cdef enum:
    SLOT_FREE = 0
    SLOT_LIVE = 1
    SLOT_DEAD = 2

cdef enum:
    UNDO_INSERT = 1
    UNDO_DELETE = 2
    UNDO_UPDATE = 3

# how the change digest reads a column's stored value (Table.digest_row)
cdef enum:
    DK_INT = 1          # TINYINT, SMALLINT, INTEGER: sign-extended
    DK_WORD = 2         # BIGINT, TIMESTAMP, FLOAT: the 8 stored bytes are the word
    DK_DECIMAL = 3
    DK_INLINE = 4       # VARCHAR/VARBINARY: length byte + bytes
    DK_OUTLINE = 5      # VARCHAR/VARBINARY: pointer to [u32 length][bytes]

cdef enum:
    AGG_COUNT_STAR = 1
    AGG_COUNT = 2
    AGG_SUM = 3
    AGG_MIN = 4
    AGG_MAX = 5

DEF CHUNK_SHIFT = 14
DEF CHUNK_ROWS = 16384
DEF INLINE_MAX = 63
cdef uint32_t NO_ROW = 0xFFFFFFFF
cdef uint64_t EMPTY_SLOT = 0xFFFFFFFFFFFFFFFF
cdef uint32_t MAX_ROWID = 0xFFFFFFFE

_INT_RANGES = {
    T_TINYINT: (-(2**7), 2**7 - 1),
    T_SMALLINT: (-(2**15), 2**15 - 1),
    T_INTEGER: (-(2**31), 2**31 - 1),
    T_BIGINT: (-(2**63), 2**63 - 1),
}
_DECIMAL_LIMIT = 10**38
_MASK64 = (1 << 64) - 1

#: The format of Store.change_digest (module docstring, "Change digest").
#: Command logs record digests: any change to what is hashed or how is a
#: new version, so that a log written by another version is recognised.
CHANGE_DIGEST_VERSION = 1


cdef struct ColMeta:
    int type
    int offset           # byte offset of the value inside the row
    int width            # bytes the value takes inside the row
    int capacity         # VARCHAR/VARBINARY: largest value in bytes
    int max_chars        # VARCHAR counted in characters: n, else -1
    bint inline_value    # VARCHAR/VARBINARY stored inside the row
    bint nullable
    int null_byte
    uint8_t null_mask
    int64_t min_int
    int64_t max_int
    uint8_t digest_kind  # DK_*


cdef struct Cell:
    bint null
    int64_t i
    double f
    int64_t dhi
    uint64_t dlo
    const char* p
    Py_ssize_t n


cdef struct UndoRec:
    uint8_t op
    bint digested           # counts in the change digest (not a view's change)
    uint32_t table_id
    uint32_t rowid
    size_t image_off
    size_t images_mark
    uint64_t change         # the change's hash, folded into the digest at commit


cdef struct ImportCursor:
    int phase               # 0: expecting the header, 1: the free list, 2: rows
    uint32_t high_water
    uint32_t nfree
    uint32_t free_seen
    uint32_t next_slot      # the next slot a row may go to
    size_t next_free        # index in the sorted free list of the next free slot >= next_slot
    Py_ssize_t rows
    Py_ssize_t consumed     # stream bytes in the blocks before this one


# -- small helpers -------------------------------------------------------------

cdef str _short(object v):
    r = repr(v)
    if len(r) > 60:
        r = r[:57] + "..."
    return r


cdef inline int64_t _read_int(const char* p, int width) noexcept nogil:
    cdef int8_t a
    cdef int16_t b
    cdef int32_t c
    cdef int64_t d
    if width == 8:
        memcpy(&d, p, 8)
        return d
    if width == 4:
        memcpy(&c, p, 4)
        return c
    if width == 2:
        memcpy(&b, p, 2)
        return b
    memcpy(&a, p, 1)
    return a


cdef inline void _write_int(char* p, int width, int64_t v) noexcept nogil:
    cdef int8_t a
    cdef int16_t b
    cdef int32_t c
    if width == 8:
        memcpy(p, &v, 8)
    elif width == 4:
        c = <int32_t>v
        memcpy(p, &c, 4)
    elif width == 2:
        b = <int16_t>v
        memcpy(p, &b, 2)
    else:
        a = <int8_t>v
        memcpy(p, &a, 1)


cdef inline void _put_be(string* out, uint64_t u, int width) noexcept:
    cdef char buf[8]
    cdef int k
    for k in range(width):
        buf[k] = <char>((u >> (8 * (width - 1 - k))) & 0xFF)
    out.append(buf, width)


cdef inline uint32_t _rowid_from_entry(const string& e) noexcept:
    cdef const unsigned char* p = <const unsigned char*>e.data() + e.size() - 4
    return (<uint32_t>p[0] << 24) | (<uint32_t>p[1] << 16) | (<uint32_t>p[2] << 8) | <uint32_t>p[3]


cdef inline void _append_rowid(string* out, uint32_t rowid) noexcept:
    _put_be(out, rowid, 4)


cdef bint _successor(string* s) noexcept:
    """Turn ``s`` into the smallest string greater than every string that
    starts with ``s``. False if there is none (s is all 0xFF)."""
    while s.size() > 0 and <unsigned char>s.back() == 0xFF:
        s.pop_back()
    if s.size() == 0:
        return False
    cdef char last = <char>(<unsigned char>s.back() + 1)
    s.pop_back()
    s.push_back(last)
    return True


def _decimal_parts(str table, str column, object v):
    """A DECIMAL parameter as the (hi, lo) halves of its scaled int128."""
    if isinstance(v, _decimal.Decimal):
        d = v
    elif isinstance(v, int) and not isinstance(v, bool):
        d = _decimal.Decimal(v)
    elif isinstance(v, float):
        d = _decimal.Decimal(repr(v))
    else:
        raise TypeMismatchError(
            f"{table}.{column}: expected a Decimal for DECIMAL, got {type(v).__name__} {_short(v)}")
    if not d.is_finite():
        raise ValueOutOfRangeError(f"{table}.{column}: {_short(v)} is not a finite DECIMAL")
    scaled = d.scaleb(DECIMAL_SCALE, context=DECIMAL_CONTEXT)
    if scaled != scaled.to_integral_value(context=DECIMAL_CONTEXT):
        raise ValueOutOfRangeError(
            f"{table}.{column}: {_short(v)} has more than {DECIMAL_SCALE} digits after the decimal point")
    n = int(scaled)
    if n >= _DECIMAL_LIMIT or n <= -_DECIMAL_LIMIT:
        raise ValueOutOfRangeError(f"{table}.{column}: {_short(v)} is out of range for DECIMAL(38,12)")
    return n >> 64, n & _MASK64


cdef object _decimal_from_parts(int64_t hi, uint64_t lo):
    n = (<object>hi << 64) | <object>lo
    return _decimal.Decimal(n).scaleb(-DECIMAL_SCALE, context=DECIMAL_CONTEXT)


cdef object _timestamp_from_micros(int64_t micros):
    return EPOCH + _dt.timedelta(microseconds=micros)


include "values.pxi"


# -- the store ----------------------------------------------------------------

cdef class Store:
    """All tables and views of one partition, and its undo log."""

    cdef readonly dict tables
    cdef list by_id
    cdef vector[UndoRec] undo
    cdef string images
    cdef readonly bint in_transaction
    cdef uint64_t digest

    def __cinit__(self):
        self.tables = {}
        self.by_id = []
        self.in_transaction = False
        self.digest = 0

    # -- DDL --------------------------------------------------------------

    def create_table(self, name, columns, primary_key=None):
        name = name.lower()
        self._check_ddl(name)
        t = Table(self, name, list(columns), primary_key, len(self.by_id))
        self.by_id.append(t)
        self.tables[name] = t
        return t

    def create_index(self, table, name, columns, *, unique=False, ordered=True):
        self._check_no_transaction()
        t = self._table(table)
        return (<Table>t).add_index(name.lower(), [c.lower() for c in columns], unique, ordered, False)

    def create_view(self, name, source, group_by, aggregates, column_names=None):
        name = name.lower()
        self._check_ddl(name)
        cdef Table src = self._table(source)
        if src.is_view:
            raise ValueError(f"view {name}: its source {src.name} is a view; views of views are not supported")
        cdef ViewMaintainer maint = ViewMaintainer(self, name, src, [g.lower() for g in group_by],
                               [(f.upper(), None if c is None else c.lower()) for f, c in aggregates],
                               column_names, len(self.by_id))
        view = maint.view
        self.by_id.append(view)
        self.tables[name] = view
        try:
            maint.build(self)
        except BaseException:
            self.by_id[len(self.by_id) - 1] = None
            del self.tables[name]
            for idx in maint.hidden_indexes:
                src.remove_index(idx)
            raise
        src.views.append(maint)
        return view

    def drop(self, name):
        self._check_no_transaction()
        cdef Table t = self._table(name)
        cdef ViewMaintainer m
        cdef Table src
        if t.is_view:
            m = t.view_maintainer
            src = m.source
            src.views.remove(m)
            for idx in m.hidden_indexes:
                src.remove_index(idx)
        else:
            for m in list(t.views):
                self.drop(m.view.name)
        del self.tables[t.name]
        self.by_id[t.table_id] = None
        t.release_all()

    cdef _check_ddl(self, str name):
        self._check_no_transaction()
        if name in self.tables:
            raise ValueError(f"{name} already exists")

    cdef _check_no_transaction(self):
        if self.in_transaction:
            raise RuntimeError("schema changes are not allowed inside a transaction")

    cdef object _table(self, name):
        try:
            return self.tables[name.lower()]
        except KeyError:
            raise KeyError(f"no table or view named {name!r}") from None

    # -- transactions -----------------------------------------------------

    def begin(self):
        if self.in_transaction:
            raise RuntimeError("a transaction is already open")
        self.in_transaction = True

    def commit(self):
        if not self.in_transaction:
            raise RuntimeError("no transaction is open")
        self._release_undo()
        self.in_transaction = False

    def rollback(self):
        if not self.in_transaction:
            raise RuntimeError("no transaction is open")
        self._undo_to(0)
        self.in_transaction = False

    def savepoint(self):
        if not self.in_transaction:
            raise RuntimeError("no transaction is open")
        return self.undo.size()

    def rollback_to(self, size_t savepoint):
        if not self.in_transaction:
            raise RuntimeError("no transaction is open")
        if savepoint > self.undo.size():
            raise ValueError("savepoint is past the end of the undo log")
        self._undo_to(savepoint)

    @property
    def undo_size(self):
        return self.undo.size()

    @property
    def change_digest(self):
        """The running digest of every change committed so far (module
        docstring, "Change digest"): an int in [0, 2**64)."""
        return self.digest

    @change_digest.setter
    def change_digest(self, value):
        # recovery restores it from a snapshot's metadata; inside a
        # transaction the value would be ambiguous (before or after it?)
        if self.in_transaction:
            raise RuntimeError("change_digest cannot be set inside a transaction")
        if not PyLong_Check(value) or isinstance(value, bool):
            raise TypeError(f"change_digest must be an int, got {type(value).__name__}")
        if not 0 <= value <= _MASK64:
            raise ValueError(f"change_digest must be in [0, 2**64), got {value}")
        self.digest = <uint64_t>value

    # -- undo log internals -----------------------------------------------

    cdef inline void log(self, uint8_t op, Table t, uint32_t rowid, const char* image,
                         const char* old_row, const char* new_row) noexcept:
        """Record a change made to ``t``: ``image`` is the row image to keep
        for undo (UPDATE), ``old_row``/``new_row`` the row before/after it
        (NULL for none), hashed now for the change digest: later changes of
        the same row in this transaction overwrite ``new_row``, so commit
        could not find it any more."""
        cdef UndoRec rec
        rec.op = op
        # views are derived from their tables: see "Change digest"
        rec.digested = not t.is_view
        rec.change = t.change_hash(op, old_row, new_row) if rec.digested else 0
        rec.table_id = t.table_id
        rec.rowid = rowid
        rec.images_mark = self.images.size()
        rec.image_off = self.images.size()
        if image != NULL:
            self.images.append(image, t.row_size)
        self.undo.push_back(rec)

    cdef void _undo_to(self, size_t mark) noexcept:
        cdef UndoRec* rec
        cdef Table t
        cdef size_t images_mark = self.images.size()
        while self.undo.size() > mark:
            rec = &self.undo[self.undo.size() - 1]
            t = <Table>self.by_id[rec.table_id]
            if rec.op == UNDO_INSERT:
                t.undo_insert(rec.rowid)
            elif rec.op == UNDO_DELETE:
                t.undo_delete(rec.rowid)
            else:
                t.undo_update(rec.rowid, self.images.data() + rec.image_off)
            images_mark = rec.images_mark
            self.undo.pop_back()
        self.images.resize(images_mark)

    cdef void _release_undo(self) noexcept:
        """Commit: fold the changes into the digest, in the order they
        were made, and free what undo kept (DEAD slots, old images)."""
        cdef size_t i
        cdef UndoRec* rec
        cdef Table t
        cdef uint64_t digest = self.digest
        for i in range(self.undo.size()):
            rec = &self.undo[i]
            if rec.digested:
                digest = fs_digest_round(digest, rec.change)
            if rec.op == UNDO_INSERT:
                continue
            t = <Table>self.by_id[rec.table_id]
            if rec.op == UNDO_DELETE:
                t.release_slot(rec.rowid)
            elif t.has_outline:
                t.free_outline(<char*>self.images.data() + rec.image_off)
        self.digest = digest
        self.undo.clear()
        self.images.clear()

    # statement atomicity: outside a transaction each statement commits
    # alone; inside one, a failed statement rolls back to where it began.
    cdef inline size_t stmt_begin(self) noexcept:
        return self.undo.size()

    cdef inline void stmt_end(self) noexcept:
        if not self.in_transaction:
            self._release_undo()

    cdef void stmt_fail(self, size_t mark) noexcept:
        self._undo_to(mark)


# -- tables -------------------------------------------------------------------

cdef class Table:
    """A table or a materialized view; see storage.pyi for the API."""

    cdef readonly str name
    cdef readonly tuple columns
    cdef readonly tuple column_names
    cdef tuple all_names          # column_names plus a view's hidden columns
    cdef readonly object primary_key
    cdef readonly object Row
    cdef readonly dict indexes
    cdef readonly bint is_view
    # Set by the server: while not None, every write raises ReadOnlyError
    # with this message (replicated tables outside multi-partition txns).
    cdef public object read_only_reason
    cdef readonly object view_maintainer
    cdef Store store
    cdef uint32_t table_id
    cdef int ncols
    cdef int nvisible
    cdef ColMeta* cols
    cdef int row_size
    cdef int slot_size
    cdef bint has_outline
    cdef vector[char*] chunks
    cdef vector[uint32_t] free_slots
    cdef uint32_t high_water
    cdef Py_ssize_t count
    cdef size_t outline_bytes
    cdef char* scratch
    cdef char* scratch_old
    cdef uint8_t* seen
    cdef HashIndex pk
    cdef list all_indexes
    cdef list unique_indexes
    cdef list views
    cdef tuple defaults
    cdef dict col_index
    cdef list _keep
    cdef PyTypeObject* row_type
    cdef uint32_t last_rowid
    # change digest: per 64 columns the mask of the nullable ones (bits of
    # the stored NULL bitmap that may be set), and per change kind the
    # hash state after the words every change of the table starts with:
    # kind, table tag and, without nullable columns, the first row's
    # all-zero NULL mask (two or three rounds saved per change)
    cdef int null_bytes
    cdef int null_words
    cdef uint64_t* null_masks
    cdef uint64_t digest_start[4]

    def __cinit__(self, Store store, str name, list columns, primary_key, uint32_t table_id,
                  int nvisible=-1, bint is_view=False):
        cdef int i, k, op, offset, nullable_count = 0
        cdef uint64_t tag
        cdef ColMeta* c
        self.store = store
        self.name = name
        self.table_id = table_id
        self.nvisible = len(columns) if nvisible < 0 else nvisible
        self.columns = tuple(columns[:self.nvisible])
        self.ncols = len(columns)
        if self.ncols == 0:
            raise ValueError(f"table {name} has no columns")
        self.all_names = tuple(col.name.lower() for col in columns)
        self.column_names = self.all_names[:self.nvisible]
        if len(set(self.all_names)) != self.ncols:
            raise ValueError(f"table {name} has two columns with the same name")
        self.col_index = {n: i for i, n in enumerate(self.all_names)}
        self.cols = <ColMeta*>calloc(self.ncols, sizeof(ColMeta))
        self.seen = <uint8_t*>calloc(self.ncols, 1)
        self.null_words = (self.ncols + 63) // 64
        self.null_masks = <uint64_t*>calloc(self.null_words, sizeof(uint64_t))
        if self.cols == NULL or self.seen == NULL or self.null_masks == NULL:
            raise MemoryError()
        for i, col in enumerate(columns):
            if col.nullable:
                nullable_count += 1
                self.null_masks[i // 64] |= (<uint64_t>1) << (i % 64)
        offset = (self.ncols + 7) // 8 if nullable_count else 0
        self.null_bytes = offset
        name_utf8 = name.encode("utf-8")
        tag = fs_digest_avalanche(fs_digest_bytes(FS_DIGEST_SEED, name_utf8, len(name_utf8)))
        for op in (UNDO_INSERT, UNDO_DELETE, UNDO_UPDATE):
            self.digest_start[op] = fs_digest_round(fs_digest_round(FS_DIGEST_SEED, op), tag)
            if not nullable_count:
                for k in range(self.null_words):
                    self.digest_start[op] = fs_digest_round(self.digest_start[op], 0)
        self.has_outline = False
        for i, col in enumerate(columns):
            c = &self.cols[i]
            ty = int(col.type)
            c.type = ty
            c.nullable = bool(col.nullable)
            c.null_byte = i // 8
            c.null_mask = <uint8_t>(1 << (i % 8))
            c.max_chars = -1
            if ty in _INT_RANGES:
                c.width = {T_TINYINT: 1, T_SMALLINT: 2, T_INTEGER: 4, T_BIGINT: 8}[ty]
                c.min_int, c.max_int = _INT_RANGES[ty]
            elif ty == T_FLOAT or ty == T_TIMESTAMP:
                c.width = 8
            elif ty == T_DECIMAL:
                c.width = 16
            elif ty == T_VARCHAR or ty == T_VARBINARY:
                if col.size <= 0:
                    raise ValueError(f"{name}.{col.name}: size must be positive")
                if ty == T_VARCHAR and not col.size_in_bytes:
                    c.max_chars = col.size
                    c.capacity = 4 * col.size
                else:
                    c.capacity = col.size
                c.inline_value = c.capacity <= INLINE_MAX
                c.width = 1 + c.capacity if c.inline_value else sizeof(char*)
                if not c.inline_value:
                    self.has_outline = True
            else:
                raise ValueError(f"{name}.{col.name}: unknown column type {ty}")
            c.offset = offset
            offset += c.width
            if ty == T_TINYINT or ty == T_SMALLINT or ty == T_INTEGER:
                c.digest_kind = DK_INT
            elif ty == T_DECIMAL:
                c.digest_kind = DK_DECIMAL
            elif ty == T_VARCHAR or ty == T_VARBINARY:
                c.digest_kind = DK_INLINE if c.inline_value else DK_OUTLINE
            else:
                c.digest_kind = DK_WORD
        self.row_size = offset
        self.slot_size = offset + 1
        self.scratch = <char*>calloc(self.row_size, 1)
        self.scratch_old = <char*>calloc(self.row_size, 1)
        if self.scratch == NULL or self.scratch_old == NULL:
            raise MemoryError()
        self.high_water = 0
        self.count = 0
        self.outline_bytes = 0
        self.indexes = {}
        self.all_indexes = []
        self.unique_indexes = []
        self.views = []
        self._keep = []
        self.is_view = is_view
        self.read_only_reason = None
        self.defaults = tuple(col.default for col in columns)
        visible = self.all_names[:self.nvisible]
        self.Row = collections.namedtuple(name.title().replace("_", "") + "Row", visible, rename=True)
        self.row_type = <PyTypeObject*>self.Row
        self.pk = None
        self.primary_key = None
        if primary_key:
            pk_cols = [p.lower() for p in primary_key]
            for p in pk_cols:
                if p not in self.col_index:
                    raise ValueError(f"{name}: primary key column {p!r} is not a column")
                if self.cols[self.col_index[p]].nullable and not is_view:
                    raise ValueError(f"{name}: primary key column {p!r} must be NOT NULL")
            self.primary_key = tuple(pk_cols)
            # NULL is a value in a primary key (only views' keys can hold it)
            self.pk = self.add_index("primary_key", pk_cols, True, False, True)

    def __dealloc__(self):
        self.release_all()
        free(self.cols)
        free(self.seen)
        free(self.null_masks)
        free(self.scratch)
        free(self.scratch_old)
        self.cols = NULL
        self.seen = NULL
        self.null_masks = NULL
        self.scratch = NULL
        self.scratch_old = NULL

    cdef void release_all(self) noexcept:
        cdef uint32_t r
        if self.cols != NULL and self.has_outline:
            for r in range(self.high_water):
                if self.slot_state(r) != SLOT_FREE:
                    self.free_outline(self.slot_row(r))
        for i in range(self.chunks.size()):
            free(self.chunks[i])
        self.chunks.clear()
        self.free_slots.clear()
        self.high_water = 0
        self.count = 0

    def __len__(self):
        return self.count

    def __repr__(self):
        kind = "view" if self.is_view else "table"
        return f"<{kind} {self.name}: {self.count} rows>"

    # -- slots ------------------------------------------------------------

    cdef inline char* slot_ptr(self, uint32_t rowid) noexcept:
        return self.chunks[rowid >> CHUNK_SHIFT] + <size_t>(rowid & (CHUNK_ROWS - 1)) * self.slot_size

    cdef inline char* slot_row(self, uint32_t rowid) noexcept:
        return self.slot_ptr(rowid) + 1

    cdef inline uint8_t slot_state(self, uint32_t rowid) noexcept:
        return <uint8_t>self.slot_ptr(rowid)[0]

    cdef uint32_t alloc_slot(self) except? 0xFFFFFFFF:
        cdef uint32_t r
        cdef char* chunk
        if not self.free_slots.empty():
            r = self.free_slots.back()
            self.free_slots.pop_back()
            return r
        if self.high_water > MAX_ROWID:
            raise MemoryError(f"table {self.name} is full (4G rows)")
        r = self.high_water
        if (r >> CHUNK_SHIFT) >= self.chunks.size():
            chunk = <char*>calloc(CHUNK_ROWS, self.slot_size)
            if chunk == NULL:
                raise MemoryError()
            self.chunks.push_back(chunk)
        self.high_water += 1
        return r

    cdef void release_slot(self, uint32_t rowid) noexcept:
        cdef char* s = self.slot_ptr(rowid)
        if self.has_outline:
            self.free_outline(s + 1)
        s[0] = SLOT_FREE
        self.free_slots.push_back(rowid)

    cdef void free_outline(self, char* row) noexcept:
        cdef int i
        cdef char* buf
        cdef uint32_t n32
        cdef ColMeta* c
        for i in range(self.ncols):
            c = &self.cols[i]
            if (c.type == T_VARCHAR or c.type == T_VARBINARY) and not c.inline_value:
                memcpy(&buf, row + c.offset, sizeof(char*))
                if buf != NULL:
                    memcpy(&n32, buf, 4)
                    self.outline_bytes -= 4 + n32
                    free(buf)
                    buf = NULL
                    memcpy(row + c.offset, &buf, sizeof(char*))

    cdef int copy_row_owned(self, const char* src, char* dst) except -1:
        """Copy a row, giving the copy its own out-of-line values."""
        cdef int i
        cdef ColMeta* c
        cdef Cell cell
        memcpy(dst, src, self.row_size)
        if not self.has_outline:
            return 0
        for i in range(self.ncols):
            c = &self.cols[i]
            if (c.type == T_VARCHAR or c.type == T_VARBINARY) and not c.inline_value:
                row_to_cell(c, src, &cell)
                memset(dst + c.offset, 0, sizeof(char*))
                if not cell.null:
                    cell_to_row(self, c, &cell, dst)
        return 0

    cdef object make_row(self, const char* row):
        """The namedtuple of a stored row (visible columns only)."""
        cdef Cell cell
        cdef int i
        cdef object value
        cdef object result = self.row_type.tp_alloc(self.row_type, self.nvisible)
        for i in range(self.nvisible):
            row_to_cell(&self.cols[i], row, &cell)
            value = cell_to_py(&self.cols[i], &cell)
            Py_INCREF(value)
            PyTuple_SET_ITEM(result, i, value)
        return result

    # -- the change digest (module docstring, "Change digest") -------------

    cdef uint64_t digest_row(self, uint64_t h, const char* row, bint mask_done) noexcept:
        """Absorb the canonical words of a row: its NULL mask (unless
        ``mask_done``: the all-zero mask of a table without nullable columns
        is in ``digest_start``), then the values of its non-NULL columns.
        Only logical content: no pointers, no bytes of NULL values, no
        padding, no stray bitmap bits."""
        cdef int i, k, nb
        cdef uint8_t dk
        cdef uint64_t w
        cdef uint32_t n32
        cdef const char* p
        cdef const char* buf
        cdef ColMeta* c
        for k in range(0 if mask_done else self.null_words):
            nb = self.null_bytes - 8 * k
            w = fs_load_partial(row + 8 * k, 8 if nb > 8 else (nb if nb > 0 else 0))
            h = fs_digest_round(h, w & self.null_masks[k])
        # reads the stored values directly (row_to_cell's generic dispatch
        # cost more than the hashing); each case yields the documented words
        for i in range(self.ncols):
            c = &self.cols[i]
            if c.nullable and (row[c.null_byte] & c.null_mask):
                continue
            p = row + c.offset
            dk = c.digest_kind
            if dk == DK_WORD:
                memcpy(&w, p, 8)
                h = fs_digest_round(h, w)
            elif dk == DK_INT:
                h = fs_digest_round(h, <uint64_t>_read_int(p, c.width))
            elif dk == DK_INLINE:
                h = fs_digest_bytes(h, p + 1, <uint8_t>p[0])
            elif dk == DK_OUTLINE:
                memcpy(&buf, p, sizeof(char*))
                memcpy(&n32, buf, 4)
                h = fs_digest_bytes(h, buf + 4, n32)
            else:
                h = fs_digest_round(fs_digest_round(h, fs_int128_lo(p)), <uint64_t>fs_int128_hi(p))
        return h

    cdef uint64_t change_hash(self, uint8_t op, const char* old_row, const char* new_row) noexcept:
        """The hash of one change: kind, table, old row, new row."""
        cdef uint64_t h = self.digest_start[op]
        cdef bint mask_done = self.null_bytes == 0
        if old_row != NULL:
            h = self.digest_row(h, old_row, mask_done)
            mask_done = False
        if new_row != NULL:
            h = self.digest_row(h, new_row, mask_done)
        return fs_digest_avalanche(h)

    # -- filling a row from Python values ---------------------------------

    cdef int fill_row(self, tuple values, dict named, char* row) except -1:
        """Validate values (positional, then by name, then defaults) into
        ``row``. On error nothing stays allocated."""
        cdef Py_ssize_t n = len(values)
        cdef int i, ci
        cdef Cell cell
        if n > self.ncols:
            raise TypeMismatchError(f"{self.name}: {n} values given for {self.ncols} columns")
        memset(row, 0, self.row_size)
        try:
            for i in range(n):
                py_to_cell(self, i, values[i], &cell)
                cell_to_row(self, &self.cols[i], &cell, row)
            if named:
                memset(self.seen, 0, self.ncols)
                for key, value in named.items():
                    ci = self.column_position(key)
                    if ci < n or self.seen[ci]:
                        raise TypeMismatchError(f"{self.name}: column {key!r} is given twice")
                    self.seen[ci] = 1
                    py_to_cell(self, ci, value, &cell)
                    cell_to_row(self, &self.cols[ci], &cell, row)
                for i in range(n, self.ncols):
                    if not self.seen[i]:
                        py_to_cell(self, i, self.defaults[i], &cell)
                        cell_to_row(self, &self.cols[i], &cell, row)
            else:
                for i in range(n, self.ncols):
                    py_to_cell(self, i, self.defaults[i], &cell)
                    cell_to_row(self, &self.cols[i], &cell, row)
        except BaseException:
            if self.has_outline:
                self.free_outline(row)
            raise
        finally:
            if self._keep:
                self._keep.clear()
        return 0

    cdef int apply_changes(self, dict changes, char* row) except -1:
        """Overwrite the named columns of an owned row copy."""
        cdef int ci
        cdef Cell cell
        cdef ColMeta* c
        try:
            for key, value in changes.items():
                ci = self.column_position(key)
                c = &self.cols[ci]
                py_to_cell(self, ci, value, &cell)
                if (c.type == T_VARCHAR or c.type == T_VARBINARY) and not c.inline_value:
                    self.free_one_outline(c, row)
                cell_to_row(self, c, &cell, row)
        finally:
            if self._keep:
                self._keep.clear()
        return 0

    cdef void free_one_outline(self, ColMeta* c, char* row) noexcept:
        cdef char* buf
        cdef uint32_t n32
        memcpy(&buf, row + c.offset, sizeof(char*))
        if buf != NULL:
            memcpy(&n32, buf, 4)
            self.outline_bytes -= 4 + n32
            free(buf)
            buf = NULL
            memcpy(row + c.offset, &buf, sizeof(char*))

    cdef int column_position(self, key) except -1:
        try:
            return self.col_index[key]
        except KeyError:
            pass
        try:
            return self.col_index[key.lower()]
        except (KeyError, AttributeError):
            raise TypeMismatchError(f"{self.name} has no column {key!r}") from None

    # -- the write primitives (each logged in the undo log) ---------------

    cdef int insert_row(self, char* row) except -1:
        """Insert an owned, validated row; returns after indexes and views."""
        cdef Index idx
        cdef uint32_t rowid
        cdef char* slot
        try:
            for idx in self.unique_indexes:
                idx.check_unique(row, NO_ROW)
            rowid = self.alloc_slot()
        except BaseException:
            if self.has_outline:
                self.free_outline(row)
            raise
        slot = self.slot_ptr(rowid)
        memcpy(slot + 1, row, self.row_size)
        slot[0] = SLOT_LIVE
        for idx in self.all_indexes:
            idx.add(rowid, slot + 1)
        self.count += 1
        self.store.log(UNDO_INSERT, self, rowid, NULL, NULL, slot + 1)
        self.last_rowid = rowid
        if self.views:
            self.maintain_views(NULL, slot + 1)
        return 0

    cdef int delete_slot(self, uint32_t rowid) except -1:
        cdef Index idx
        cdef char* slot = self.slot_ptr(rowid)
        for idx in self.all_indexes:
            idx.remove(rowid, slot + 1)
        slot[0] = SLOT_DEAD
        self.count -= 1
        self.store.log(UNDO_DELETE, self, rowid, NULL, slot + 1, NULL)
        if self.views:
            self.maintain_views(slot + 1, NULL)
        return 0

    cdef int update_slot(self, uint32_t rowid, char* row) except -1:
        """Replace the row at ``rowid`` by the owned row ``row``."""
        cdef Index idx
        cdef char* old = self.slot_row(rowid)
        cdef list changed = []
        try:
            for idx in self.all_indexes:
                if idx.key_changed(old, row):
                    if idx.unique:
                        idx.check_unique(row, rowid)
                    changed.append(idx)
        except BaseException:
            if self.has_outline:
                self.free_outline(row)
            raise
        self.store.log(UNDO_UPDATE, self, rowid, old, old, row)
        for idx in changed:
            idx.remove(rowid, old)
        if self.views:
            memcpy(self.scratch_old, old, self.row_size)
        memcpy(old, row, self.row_size)
        for idx in changed:
            idx.add(rowid, old)
        if self.views:
            self.maintain_views(self.scratch_old, old)
        return 0

    cdef int maintain_views(self, const char* old_row, const char* new_row) except -1:
        cdef ViewMaintainer m
        for m in self.views:
            if old_row != NULL:
                m.on_delete(old_row)
            if new_row != NULL:
                m.on_insert(new_row)
        return 0

    # undo: each restores the exact state before the logged change
    cdef void undo_insert(self, uint32_t rowid) noexcept:
        cdef Index idx
        cdef char* slot = self.slot_ptr(rowid)
        for idx in self.all_indexes:
            idx.remove(rowid, slot + 1)
        self.count -= 1
        self.release_slot(rowid)

    cdef void undo_delete(self, uint32_t rowid) noexcept:
        cdef Index idx
        cdef char* slot = self.slot_ptr(rowid)
        slot[0] = SLOT_LIVE
        for idx in self.all_indexes:
            idx.add(rowid, slot + 1)
        self.count += 1

    cdef void undo_update(self, uint32_t rowid, const char* image) noexcept:
        cdef Index idx
        cdef char* row = self.slot_row(rowid)
        for idx in self.all_indexes:
            if idx.key_changed(row, image):
                idx.remove(rowid, row)
                idx.add(rowid, image)
        if self.has_outline:
            self.free_outline(row)
        memcpy(row, image, self.row_size)

    # -- indexes ----------------------------------------------------------

    cdef Index add_index(self, str name, list columns, bint unique, bint ordered, bint nulls_equal):
        cdef Index idx
        cdef ColMeta* meta
        cdef uint32_t r
        if name in self.indexes:
            raise ValueError(f"{self.name} already has an index named {name}")
        for c in columns:
            if c not in self.col_index:
                raise ValueError(f"index {name}: {self.name} has no column {c!r}")
        if not columns:
            raise ValueError(f"index {name} has no columns")
        col_ids = [self.col_index[c] for c in columns]
        if unique and not ordered:
            idx = HashIndex(self, name, col_ids, nulls_equal)
        else:
            meta = &self.cols[<int>col_ids[0]]
            if (len(col_ids) == 1 and not meta.nullable
                    and (meta.type <= T_BIGINT or meta.type == T_TIMESTAMP)):
                idx = IntOrderedIndex(self, name, col_ids, unique, ordered)
            else:
                idx = OrderedIndex(self, name, col_ids, unique, nulls_equal)
                (<OrderedIndex>idx).declared_ordered = ordered
        # fill from existing rows; a collision undoes the whole index
        for r in range(self.high_water):
            if self.slot_state(r) == SLOT_LIVE:
                if unique:
                    idx.check_unique(self.slot_row(r), NO_ROW)
                idx.add(r, self.slot_row(r))
        self.indexes[name] = idx
        self.all_indexes.append(idx)
        if unique:
            self.unique_indexes.append(idx)
        return idx

    cdef void remove_index(self, Index idx):
        del self.indexes[idx.name]
        self.all_indexes.remove(idx)
        if idx in self.unique_indexes:
            self.unique_indexes.remove(idx)

    def index(self, name):
        try:
            return self.indexes[name.lower()]
        except KeyError:
            raise KeyError(f"{self.name} has no index named {name!r}") from None

    # -- the Python API ---------------------------------------------------

    cdef inline void check_writable(self) except *:
        if self.is_view:
            raise ReadOnlyError(f"{self.name} is a view: it changes with its source table, "
                                f"not by direct writes")
        if self.read_only_reason is not None:
            raise ReadOnlyError(self.read_only_reason)

    cdef inline HashIndex need_pk(self):
        if self.pk is None:
            raise TypeError(f"{self.name} has no primary key: use an index or the row-id API")
        return self.pk

    def get(self, key):
        cdef uint32_t rowid = self.need_pk().lookup(key)
        if rowid == NO_ROW:
            return None
        return self.make_row(self.slot_row(rowid))

    def insert(self, *values, **named):
        self.check_writable()
        self.fill_row(values, named, self.scratch)
        cdef size_t mark = self.store.stmt_begin()
        try:
            self.insert_row(self.scratch)
        except BaseException:
            self.store.stmt_fail(mark)
            raise
        self.store.stmt_end()

    def insert_rowid(self, values):
        self.check_writable()
        self.fill_row(tuple(values), None, self.scratch)
        cdef size_t mark = self.store.stmt_begin()
        try:
            self.insert_row(self.scratch)
        except BaseException:
            self.store.stmt_fail(mark)
            raise
        self.store.stmt_end()
        return self.last_rowid

    def upsert(self, *values, **named):
        self.check_writable()
        cdef HashIndex pk = self.need_pk()
        self.fill_row(values, named, self.scratch)
        cdef uint32_t rowid = pk.find_row_key(self.scratch)
        cdef size_t mark = self.store.stmt_begin()
        try:
            if rowid == NO_ROW:
                self.insert_row(self.scratch)
            else:
                self.update_slot(rowid, self.scratch)
        except BaseException:
            self.store.stmt_fail(mark)
            raise
        self.store.stmt_end()
        return rowid == NO_ROW

    def update(self, key, **changes):
        self.check_writable()
        cdef uint32_t rowid = self.need_pk().lookup(key)
        if rowid == NO_ROW:
            return None
        return self._update_rowid(rowid, changes)

    def update_rowid(self, uint32_t rowid, **changes):
        self.check_writable()
        self.check_rowid(rowid)
        return self._update_rowid(rowid, changes)

    cdef object _update_rowid(self, uint32_t rowid, dict changes):
        self.copy_row_owned(self.slot_row(rowid), self.scratch)
        try:
            self.apply_changes(changes, self.scratch)
        except BaseException:
            if self.has_outline:
                self.free_outline(self.scratch)
            raise
        cdef size_t mark = self.store.stmt_begin()
        try:
            self.update_slot(rowid, self.scratch)
        except BaseException:
            self.store.stmt_fail(mark)
            raise
        self.store.stmt_end()
        return self.make_row(self.slot_row(rowid))

    def delete(self, key):
        self.check_writable()
        cdef uint32_t rowid = self.need_pk().lookup(key)
        if rowid == NO_ROW:
            return None
        return self._delete_rowid(rowid)

    def delete_rowid(self, uint32_t rowid):
        self.check_writable()
        self.check_rowid(rowid)
        return self._delete_rowid(rowid)

    cdef object _delete_rowid(self, uint32_t rowid):
        row = self.make_row(self.slot_row(rowid))
        cdef size_t mark = self.store.stmt_begin()
        try:
            self.delete_slot(rowid)
        except BaseException:
            self.store.stmt_fail(mark)
            raise
        self.store.stmt_end()
        return row

    def truncate(self):
        self.check_writable()
        cdef uint32_t r
        cdef Py_ssize_t n = 0
        cdef size_t mark = self.store.stmt_begin()
        try:
            for r in range(self.high_water):
                if self.slot_state(r) == SLOT_LIVE:
                    self.delete_slot(r)
                    n += 1
        except BaseException:
            self.store.stmt_fail(mark)
            raise
        self.store.stmt_end()
        return n

    cdef void check_rowid(self, uint32_t rowid) except *:
        if rowid >= self.high_water or self.slot_state(rowid) != SLOT_LIVE:
            raise KeyError(f"{self.name} has no row {rowid}")

    def read(self, uint32_t rowid):
        self.check_rowid(rowid)
        return self.make_row(self.slot_row(rowid))

    def scan(self):
        return TableScan(self)

    def scan_rowids(self):
        cdef uint32_t r
        out = []
        for r in range(self.high_water):
            if self.slot_state(r) == SLOT_LIVE:
                out.append(r)
        return out

    def column_array(self, name):
        cdef int ci = self.column_position(name)
        cdef ColMeta* c = &self.cols[ci]
        cdef Cell cell
        cdef uint32_t r
        cdef Py_ssize_t k = 0
        cdef bint has_null = False
        cdef int64_t[:] ints
        cdef double[:] floats
        # numpy is imported on first use only: importing it starts BLAS
        # threads that a partition process has no use for
        import numpy as np
        if c.type <= T_BIGINT or c.type == T_FLOAT:
            if c.nullable:
                for r in range(self.high_water):
                    if self.slot_state(r) == SLOT_LIVE:
                        row_to_cell(c, self.slot_row(r), &cell)
                        if cell.null:
                            has_null = True
                            break
            if c.type == T_FLOAT or has_null:
                out = np.empty(self.count, dtype=np.float64)
                floats = out
                for r in range(self.high_water):
                    if self.slot_state(r) == SLOT_LIVE:
                        row_to_cell(c, self.slot_row(r), &cell)
                        if cell.null:
                            floats[k] = float('nan')
                        elif c.type == T_FLOAT:
                            floats[k] = cell.f
                        else:
                            floats[k] = <double>cell.i
                        k += 1
                return out
            out = np.empty(self.count, dtype=np.int64)
            ints = out
            for r in range(self.high_water):
                if self.slot_state(r) == SLOT_LIVE:
                    row_to_cell(c, self.slot_row(r), &cell)
                    ints[k] = cell.i
                    k += 1
            return out
        out = np.empty(self.count, dtype=object)
        for r in range(self.high_water):
            if self.slot_state(r) == SLOT_LIVE:
                row_to_cell(c, self.slot_row(r), &cell)
                out[k] = cell_to_py(c, &cell)
                k += 1
        return out

    @property
    def memory_bytes(self):
        """Bytes held by rows, out-of-line values and indexes."""
        cdef Index idx
        total = self.chunks.size() * <size_t>CHUNK_ROWS * self.slot_size + self.outline_bytes
        total += self.free_slots.capacity() * 4
        for idx in self.all_indexes:
            total += idx.memory_bytes()
        return total

    # -- bulk export and import (snapshots) ---------------------------------

    @property
    def row_layout(self):
        """(row_size, per column (name, type, offset, width, capacity,
        max_chars, nullable)), hidden view columns included: what a row
        image means. Two tables can exchange export streams iff equal
        (names aside)."""
        cdef int i
        cdef ColMeta* c
        cols = []
        for i in range(self.ncols):
            c = &self.cols[i]
            cols.append((self.all_names[i], c.type, c.offset, c.width, c.capacity, c.max_chars,
                         bool(c.nullable)))
        return (self.row_size, tuple(cols))

    @property
    def view_definition(self):
        """A view's (source, group_by, aggregates); None for a table."""
        if not self.is_view:
            return None
        return (<ViewMaintainer>self.view_maintainer).definition

    cdef uint32_t layout_check(self) noexcept:
        """FNV-1a over the column layout (types, offsets, widths, capacities,
        nullability): the export stream's guard against a foreign table."""
        cdef uint32_t h = 2166136261
        cdef int i, k
        cdef int32_t v[6]
        cdef const unsigned char* b
        for i in range(self.ncols):
            v[0] = self.cols[i].type
            v[1] = self.cols[i].offset
            v[2] = self.cols[i].width
            v[3] = self.cols[i].capacity
            v[4] = self.cols[i].max_chars
            v[5] = self.cols[i].nullable
            b = <const unsigned char*>v
            for k in range(<int>sizeof(v)):
                h = (h ^ b[k]) * 16777619
        return h

    def export_rows(self, Py_ssize_t block_size=1 << 20):
        if block_size <= 0:
            raise ValueError("block_size must be positive")
        if self.store.in_transaction:
            raise RuntimeError(f"{self.name}: cannot export rows inside an open transaction "
                               f"(a snapshot is a committed state)")
        return RowExport(self, block_size)

    def import_rows(self, data, *, bint rebuild_views=True):
        cdef Py_buffer view
        cdef ImportCursor cur
        cdef ViewMaintainer m
        cdef Index idx
        cdef vector[int] inline_cols, outline_cols
        cdef vector[uint32_t] free_sorted
        cdef int i
        if self.store.in_transaction:
            raise RuntimeError(f"{self.name}: cannot import rows inside an open transaction")
        if self.count:
            raise ValueError(f"{self.name} has {self.count} rows: import_rows loads an empty table")
        if rebuild_views and not self.is_view:
            for m in self.views:
                if m.view.count:
                    raise ValueError(f"view {m.view.name} of {self.name} has rows: "
                                     f"rebuild_views needs empty views")
        for i in range(self.ncols):
            if self.cols[i].type == T_VARCHAR or self.cols[i].type == T_VARBINARY:
                if self.cols[i].inline_value:
                    inline_cols.push_back(i)
                else:
                    outline_cols.push_back(i)
        blocks = (data,) if PyObject_CheckBuffer(data) else data
        memset(&cur, 0, sizeof(cur))
        self.reset_rows()
        try:
            for block in blocks:
                PyObject_GetBuffer(block, &view, PyBUF_SIMPLE)
                try:
                    self.import_block(<const char*>view.buf, view.len, &cur, inline_cols,
                                      outline_cols, free_sorted)
                finally:
                    PyBuffer_Release(&view)
                cur.consumed += view.len
            self.import_finish(&cur, free_sorted)
            for idx in self.all_indexes:
                idx.bulk_build()
        except BaseException:
            self.reset_rows()
            raise
        if rebuild_views and not self.is_view:
            try:
                for m in self.views:
                    m.build(self.store)
            except BaseException:
                for m in self.views:
                    m.view.reset_rows()
                self.reset_rows()
                raise
        return self.count

    cdef int reset_rows(self) except -1:
        """Forget every row, out-of-line value and index entry, without undo
        (only for an import into an empty table, which has no undo)."""
        cdef Index idx
        self.release_all()
        self.outline_bytes = 0
        for idx in self.all_indexes:
            idx.clear()
        return 0

    cdef int import_error(self, ImportCursor* cur, Py_ssize_t at, str what) except -1:
        raise ValueError(f"{self.name}: malformed export stream at byte {cur.consumed + at}: {what}")

    cdef int import_block(self, const char* p, Py_ssize_t n, ImportCursor* cur,
                          vector[int]& inline_cols, vector[int]& outline_cols,
                          vector[uint32_t]& free_sorted) except -1:
        cdef Py_ssize_t at = 0
        cdef uint32_t hdr[4]
        cdef uint32_t r, nchunks, k, n32
        cdef char* chunk
        cdef char* slot
        cdef char* row
        cdef char* buf
        cdef ColMeta* c
        cdef size_t j
        cdef bint null
        if n == 0:
            return 0
        if cur.phase == 0:
            if n < 16:
                self.import_error(cur, 0, "the stream must begin with its 16-byte header")
            memcpy(hdr, p, 16)
            if hdr[0] != <uint32_t>self.row_size or hdr[1] != self.layout_check():
                self.import_error(cur, 0, f"it was exported from a table with another row layout "
                                          f"(row size {hdr[0]}, this table's is {self.row_size})")
            if hdr[3] > hdr[2] or hdr[2] > MAX_ROWID + 1:
                self.import_error(cur, 8, f"bad slot map: {hdr[3]} free slots of {hdr[2]}")
            cur.high_water = hdr[2]
            cur.nfree = hdr[3]
            nchunks = (cur.high_water + CHUNK_ROWS - 1) >> CHUNK_SHIFT
            self.chunks.reserve(nchunks)
            for k in range(nchunks):
                chunk = <char*>calloc(CHUNK_ROWS, self.slot_size)
                if chunk == NULL:
                    raise MemoryError()
                self.chunks.push_back(chunk)
            self.high_water = cur.high_water
            self.free_slots.reserve(cur.nfree)
            cur.phase = 1
            at = 16
        if cur.phase == 1:
            # the slots stay FREE (zero) as calloc left them; rows skip the
            # free slots by a sorted copy of the list (reading the slots
            # would fault every page in twice)
            while cur.free_seen < cur.nfree and at < n:
                if n - at < 4:
                    self.import_error(cur, at, "a free-list entry is cut by the end of its block")
                memcpy(&r, p + at, 4)
                if r >= cur.high_water:
                    self.import_error(cur, at, f"free slot {r} is past the high-water mark")
                self.free_slots.push_back(r)
                cur.free_seen += 1
                at += 4
            if cur.free_seen < cur.nfree:
                return 0
            free_sorted.assign(self.free_slots.begin(), self.free_slots.end())
            fs_sort_u32(free_sorted.data(), free_sorted.size())
            for j in range(1, free_sorted.size()):
                if free_sorted[j] == free_sorted[j - 1]:
                    self.import_error(cur, at, f"free slot {free_sorted[j]} is listed twice")
            cur.phase = 2
        while at < n:
            if n - at < self.row_size:
                self.import_error(cur, at, "a row is cut by the end of its block")
            while cur.next_free < free_sorted.size() and free_sorted[cur.next_free] == cur.next_slot:
                cur.next_slot += 1
                cur.next_free += 1
            if cur.next_slot >= cur.high_water:
                self.import_error(cur, at, f"more rows than the slot map's "
                                           f"{cur.high_water - cur.nfree}")
            slot = self.slot_ptr(cur.next_slot)
            row = slot + 1
            memcpy(row, p + at, self.row_size)
            at += self.row_size
            for j in range(outline_cols.size()):
                memset(row + self.cols[outline_cols[j]].offset, 0, sizeof(char*))
            slot[0] = SLOT_LIVE
            cur.next_slot += 1
            cur.rows += 1
            self.count += 1
            for j in range(inline_cols.size()):
                c = &self.cols[inline_cols[j]]
                if not (c.nullable and (row[c.null_byte] & c.null_mask)):
                    if <uint8_t>row[c.offset] > c.capacity:
                        self.import_error(cur, at - self.row_size,
                                          f"{self.all_names[inline_cols[j]]} is longer than its column")
            for j in range(outline_cols.size()):
                c = &self.cols[outline_cols[j]]
                null = c.nullable and (row[c.null_byte] & c.null_mask)
                if n - at < 4:
                    self.import_error(cur, at, "a row is cut by the end of its block")
                memcpy(&n32, p + at, 4)
                if n32 == 0xFFFFFFFF:
                    if not null:
                        self.import_error(cur, at, f"{self.all_names[outline_cols[j]]} is NULL "
                                                   f"but the row says it is not")
                    at += 4
                    continue
                if null:
                    self.import_error(cur, at, f"{self.all_names[outline_cols[j]]} has a value "
                                               f"but the row says it is NULL")
                if n32 > <uint32_t>c.capacity or <Py_ssize_t>n32 > n - at - 4:
                    self.import_error(cur, at, f"{self.all_names[outline_cols[j]]}: bad length {n32}")
                buf = <char*>malloc(4 + n32)
                if buf == NULL:
                    raise MemoryError()
                memcpy(buf, &n32, 4)
                memcpy(buf + 4, p + at + 4, n32)
                memcpy(row + c.offset, &buf, sizeof(char*))
                self.outline_bytes += 4 + n32
                at += 4 + n32
        return 0

    cdef int import_finish(self, ImportCursor* cur, vector[uint32_t]& free_sorted) except -1:
        if cur.phase == 0:
            self.import_error(cur, 0, "no data (an export stream has at least its header)")
        if cur.phase == 1:
            self.import_error(cur, 0, f"the free list ends after {cur.free_seen} of "
                                      f"{cur.nfree} entries")
        if cur.phase == 1 or <size_t>cur.rows + free_sorted.size() != cur.high_water:
            self.import_error(cur, 0, f"{cur.rows} rows for a slot map of "
                                      f"{cur.high_water - cur.nfree}")
        return 0


cdef class TableScan:
    """Iterator over the live rows of a table, in slot order."""

    cdef Table table
    cdef uint32_t pos

    def __cinit__(self, Table table):
        self.table = table
        self.pos = 0

    def __iter__(self):
        return self

    def __next__(self):
        cdef Table t = self.table
        cdef uint32_t r
        while self.pos < t.high_water:
            r = self.pos
            self.pos += 1
            if t.slot_state(r) == SLOT_LIVE:
                return t.make_row(t.slot_row(r))
        raise StopIteration


cdef class RowExport:
    """Iterator over a table's export stream in blocks of about
    ``block_size`` bytes, each ending between two items (see the module
    docstring, "Export and import"). ``rows``: rows exported so far;
    ``block_rows``: rows in the last block. The table must not change
    while the export runs (a snapshot exports in a forked child)."""

    cdef Table table
    cdef Py_ssize_t block_size
    cdef int phase              # 0: header, 1: free list, 2: rows, 3: done
    cdef size_t free_pos
    cdef uint32_t pos
    cdef readonly Py_ssize_t rows
    cdef readonly Py_ssize_t block_rows
    cdef string buf

    def __cinit__(self, Table table, Py_ssize_t block_size):
        self.table = table
        self.block_size = block_size
        self.phase = 0
        self.free_pos = 0
        self.pos = 0
        self.rows = 0
        self.block_rows = 0

    def __iter__(self):
        return self

    def __next__(self):
        cdef Table t = self.table
        cdef uint32_t hdr[4]
        cdef uint32_t r, n32
        cdef size_t start, limit = <size_t>self.block_size
        cdef int i
        cdef ColMeta* c
        cdef const char* row
        cdef char* p
        cdef const char* value
        cdef uint32_t null_len = 0xFFFFFFFF
        if self.phase == 3:
            raise StopIteration
        self.buf.clear()
        self.block_rows = 0
        if self.phase == 0:
            hdr[0] = t.row_size
            hdr[1] = t.layout_check()
            hdr[2] = t.high_water
            hdr[3] = <uint32_t>t.free_slots.size()
            self.buf.append(<const char*>hdr, 16)
            self.phase = 1
        if self.phase == 1:
            while self.free_pos < t.free_slots.size() and self.buf.size() < limit:
                r = t.free_slots[self.free_pos]
                self.buf.append(<const char*>&r, 4)
                self.free_pos += 1
            if self.free_pos == t.free_slots.size():
                self.phase = 2
        if self.phase == 2:
            while self.pos < t.high_water and self.buf.size() < limit:
                if t.slot_state(self.pos) == SLOT_LIVE:
                    row = t.slot_row(self.pos)
                    start = self.buf.size()
                    self.buf.append(row, t.row_size)
                    if t.has_outline:
                        p = <char*>self.buf.data() + start
                        for i in range(t.ncols):
                            c = &t.cols[i]
                            if (c.type == T_VARCHAR or c.type == T_VARBINARY) and not c.inline_value:
                                memset(p + c.offset, 0, sizeof(char*))
                        for i in range(t.ncols):
                            c = &t.cols[i]
                            if (c.type == T_VARCHAR or c.type == T_VARBINARY) and not c.inline_value:
                                memcpy(&value, row + c.offset, sizeof(char*))
                                if value == NULL:
                                    self.buf.append(<const char*>&null_len, 4)
                                else:
                                    memcpy(&n32, value, 4)
                                    self.buf.append(value, 4 + n32)
                    self.block_rows += 1
                self.pos += 1
            if self.pos >= t.high_water:
                self.phase = 3
        if self.buf.size() == 0:
            raise StopIteration         # only free slots were left after the last row
        self.rows += self.block_rows
        return PyBytes_FromStringAndSize(self.buf.data(), self.buf.size())


include "indexes.pxi"
include "views.pxi"
