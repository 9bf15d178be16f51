"""Store.change_digest against a plain-Python reimplementation of its format.

The reference below (``change_hash``, ``fold``) is written from the module
docstring of storage.pyx ("Change digest") alone: xxHash64's round and
avalanche over the documented canonical words of each change. A driver
runs operation sequences on a real Store and feeds the reference every
change that succeeded (rows are read back through the public API: the
row after an insert or update, before an update or delete), queuing them
while a transaction is open, dropping them on rollback / rollback_to, and
folding them on commit; after every operation the native digest must
equal the reference's.

Hypothesis generates the sequences over

    kinds  id BIGINT PK; ti TINYINT, si SMALLINT, i INTEGER (unique),
           f FLOAT, d DECIMAL, ts TIMESTAMP, vs VARCHAR(6) (inline),
           vl VARCHAR(40) (out of line), vb VARBINARY(8) (inline),
           vbl VARBINARY(100), vsb VARCHAR(70 BYTES) (out of line):
           every type, inline and out-of-line strings, NULLs
    plain  k INTEGER PK, s VARCHAR(3): no nullable column
    log    n BIGINT, msg VARCHAR(80): no primary key (row-id API)
    views  kinds_by_ti (SUM(d) can overflow: a statement that fails after
           its table change was logged), plain_by_s

with insert / upsert / update / delete / truncate (each may fail on a
constraint), begin / savepoint / rollback_to / commit / rollback. Other
tests: the same sequences on a store loaded by export/import reach the
same digest; changing any one value changes the digest; out-of-line
strings hash by content; views don't count; a fixed sequence gives a
fixed, known digest in any process (the format is pinned).
"""

from __future__ import annotations

import datetime as dt
import os
import struct
import subprocess
import sys
import textwrap
from decimal import Decimal

import flowstate
import pytest
from hypothesis import HealthCheck, assume, given, settings, strategies as st

from flowstate.errors import ConstraintError
from flowstate.native import storage
from flowstate.native.storage import Store
from flowstate.types import (DECIMAL_CONTEXT, DECIMAL_SCALE, Column, ColumnType as T,
                             timestamp_to_micros)

# -- the reference implementation (storage.pyx, "Change digest") ------------------

MASK = (1 << 64) - 1
P1 = 0x9E3779B185EBCA87
P2 = 0xC2B2AE3D27D4EB4F
P3 = 0x165667B19E3779F9
SEED = 0x27D4EB2F165667C5
INSERT, DELETE, UPDATE = 1, 2, 3


def rnd(acc, w):
    acc = (acc + (w & MASK) * P2) & MASK
    acc = ((acc << 31) | (acc >> 33)) & MASK
    return (acc * P1) & MASK


def avalanche(h):
    h ^= h >> 33
    h = (h * P2) & MASK
    h ^= h >> 29
    h = (h * P3) & MASK
    h ^= h >> 32
    return h


def absorb_bytes(acc, b):
    acc = rnd(acc, len(b))
    for k in range(0, len(b), 8):
        acc = rnd(acc, int.from_bytes(b[k:k + 8].ljust(8, b"\0"), "little"))
    return acc


def table_tag(name):
    return avalanche(absorb_bytes(SEED, name.encode("utf-8")))


def value_words(column, v):
    ty = column.type
    if ty in (T.TINYINT, T.SMALLINT, T.INTEGER, T.BIGINT):
        return [v & MASK]
    if ty == T.TIMESTAMP:
        return [timestamp_to_micros(v) & MASK]
    if ty == T.FLOAT:
        return [struct.unpack("<Q", struct.pack("<d", v))[0]]
    if ty == T.DECIMAL:
        n = int(v.scaleb(DECIMAL_SCALE, context=DECIMAL_CONTEXT))
        return [n & MASK, (n >> 64) & MASK]
    b = v.encode("utf-8") if ty == T.VARCHAR else bytes(v)
    return [len(b)] + [int.from_bytes(b[k:k + 8].ljust(8, b"\0"), "little")
                       for k in range(0, len(b), 8)]


def row_words(columns, row):
    masks = [0] * ((len(columns) + 63) // 64)
    words = []
    for i, (column, v) in enumerate(zip(columns, row, strict=True)):
        if v is None:
            masks[i // 64] |= 1 << (i % 64)
        else:
            words += value_words(column, v)
    return masks + words


def change_hash(kind, table, old, new):
    h = rnd(rnd(SEED, kind), table_tag(table.name))
    for row in (old, new):
        if row is not None:
            for w in row_words(table.columns, row):
                h = rnd(h, w)
    return avalanche(h)


def fold(digest, change):
    return rnd(digest, change)


class Reference:
    """The digest a store should have: changes fold at commit, in order."""

    def __init__(self, start=0):
        self.digest = start
        self.pending = None                 # a list while a transaction is open

    def change(self, kind, table, old, new):
        c = change_hash(kind, table, old, new)
        if self.pending is None:
            self.digest = fold(self.digest, c)
        else:
            self.pending.append(c)

    def begin(self):
        self.pending = []

    def commit(self):
        for c in self.pending:
            self.digest = fold(self.digest, c)
        self.pending = None

    def rollback(self):
        self.pending = None


# -- a store and a driver -----------------------------------------------------------

KINDS = [
    Column("id", T.BIGINT, nullable=False),
    Column("ti", T.TINYINT),
    Column("si", T.SMALLINT),
    Column("i", T.INTEGER),
    Column("f", T.FLOAT),
    Column("d", T.DECIMAL),
    Column("ts", T.TIMESTAMP),
    Column("vs", T.VARCHAR, 6),
    Column("vl", T.VARCHAR, 40),
    Column("vb", T.VARBINARY, 8),
    Column("vbl", T.VARBINARY, 100),
    Column("vsb", T.VARCHAR, 70, size_in_bytes=True),
]
PLAIN = [Column("k", T.INTEGER, nullable=False), Column("s", T.VARCHAR, 3, nullable=False)]
LOG = [Column("n", T.BIGINT, nullable=False), Column("msg", T.VARCHAR, 80)]


def make_store(views=True):
    store = Store()
    store.create_table("kinds", KINDS, primary_key=["id"])
    store.create_index("kinds", "by_i", ["i"], unique=True)
    store.create_table("plain", PLAIN, primary_key=["k"])
    store.create_table("log", LOG)
    if views:
        store.create_view("kinds_by_ti", "kinds", ["ti"],
                          [("COUNT", None), ("SUM", "d"), ("MIN", "vl"), ("MAX", "f")])
        store.create_view("plain_by_s", "plain", ["s"], [("COUNT", None), ("SUM", "k")])
    return store


class Driver:
    """Runs operations on a store and tells the reference what changed.
    Every operation is valid in any state (commit outside a transaction
    is skipped, and so on), so one list can drive several stores."""

    def __init__(self, store, start=0):
        self.store = store
        self.ref = Reference(start)
        self.savepoints = []                # (engine mark, len(ref.pending))

    def check(self):
        assert self.store.change_digest == self.ref.digest

    def run(self, ops):
        for op in ops:
            self.apply(op)
            self.check()

    def finish(self):
        """End an open transaction (commit), so the store can be exported."""
        self.apply(("commit",))
        self.check()

    def apply(self, op):
        name, args = op[0], op[1:]
        s, ref = self.store, self.ref
        if name == "begin":
            if not s.in_transaction:
                s.begin()
                ref.begin()
                self.savepoints = []
        elif name == "commit":
            if s.in_transaction:
                s.commit()
                ref.commit()
        elif name == "rollback":
            if s.in_transaction:
                s.rollback()
                ref.rollback()
        elif name == "savepoint":
            if s.in_transaction:
                self.savepoints.append((s.savepoint(), len(ref.pending)))
        elif name == "rollback_to":
            if s.in_transaction and self.savepoints:
                k = args[0] % len(self.savepoints)
                mark, n = self.savepoints[k]
                del self.savepoints[k + 1:]
                s.rollback_to(mark)
                del ref.pending[n:]
        else:
            getattr(self, "op_" + name)(*args)

    def op_insert(self, table, values):
        t = self.store.tables[table]
        try:
            t.insert(*values)
        except ConstraintError:
            return
        self.ref.change(INSERT, t, None, t.get(values[0]))

    def op_upsert(self, table, values):
        t = self.store.tables[table]
        old = t.get(values[0])
        try:
            inserted = t.upsert(*values)
        except ConstraintError:
            return
        assert inserted is (old is None)
        new = t.get(values[0])
        self.ref.change(INSERT, t, None, new) if inserted else self.ref.change(UPDATE, t, old, new)

    def op_update(self, table, key, changes):
        t = self.store.tables[table]
        old = t.get(key)
        try:
            new = t.update(key, **changes)
        except ConstraintError:
            return
        if new is not None:
            self.ref.change(UPDATE, t, old, new)

    def op_delete(self, table, key):
        t = self.store.tables[table]
        old = t.delete(key)
        if old is not None:
            self.ref.change(DELETE, t, old, None)

    def op_truncate(self, table):
        t = self.store.tables[table]
        rows = list(t.scan())              # row-id order, as truncate deletes
        try:
            assert t.truncate() == len(rows)
        except ConstraintError:
            return
        for row in rows:
            self.ref.change(DELETE, t, row, None)

    # the table without a primary key: rows picked by position in row-id order
    def op_log_insert(self, values):
        t = self.store.tables["log"]
        try:
            rowid = t.insert_rowid(values)
        except ConstraintError:
            return
        self.ref.change(INSERT, t, None, t.read(rowid))

    def op_log_update(self, pick, changes):
        t = self.store.tables["log"]
        rowids = t.scan_rowids()
        if not rowids:
            return
        rowid = rowids[pick % len(rowids)]
        old = t.read(rowid)
        try:
            new = t.update_rowid(rowid, **changes)
        except ConstraintError:
            return
        self.ref.change(UPDATE, t, old, new)

    def op_log_delete(self, pick):
        t = self.store.tables["log"]
        rowids = t.scan_rowids()
        if rowids:
            old = t.delete_rowid(rowids[pick % len(rowids)])
            self.ref.change(DELETE, t, old, None)


# -- strategies ---------------------------------------------------------------------

TEXT = st.characters(blacklist_categories=("Cs",))   # no lone surrogates: not UTF-8
MICROS = (timestamp_to_micros(dt.datetime(1, 1, 1)), timestamp_to_micros(dt.datetime(9999, 12, 31)))
BIG = Decimal("6e25")                                  # two of them overflow SUM(d)

ID = st.integers(0, 7)
TWO_BYTE = st.characters(max_codepoint=0x7FF, blacklist_categories=("Cs",))
VALUE = {           # valid values (a unique i or a SUM(d) may still be refused)
    "ti": st.sampled_from([None, 0, 1, 2]) | st.integers(-128, 127),
    "si": st.none() | st.integers(-2**15, 2**15 - 1),
    "i": st.sampled_from([None, 0, 1, 2, 3, 4, 5]) | st.integers(-2**31, 2**31 - 1),
    "f": st.none() | st.sampled_from([0.0, -0.0, 1.5]) | st.floats(allow_nan=False),
    "d": st.none() | st.sampled_from([BIG, -BIG, Decimal("0.000000000001")])
         | st.builds(lambda n, e: Decimal(n).scaleb(-e), st.integers(-10**25, 10**25),
                     st.integers(0, 12)),
    "ts": st.none() | st.integers(*MICROS)
          | st.datetimes(timezones=st.just(dt.timezone.utc)),
    "vs": st.none() | st.text(TEXT, max_size=6),
    "vl": st.none() | st.text(TEXT, max_size=40),
    "vb": st.none() | st.binary(max_size=8),
    "vbl": st.none() | st.binary(max_size=100),
    "vsb": st.none() | st.text(TWO_BYTE, max_size=35),
}
# values the engine refuses (the statement fails before any change)
BAD = st.sampled_from([("ti", 300), ("si", 2**15), ("i", "1"), ("f", float("nan")),
                       ("d", Decimal("1e-13")), ("d", Decimal("1e26")), ("ts", 1.5),
                       ("vs", "x" * 7), ("vl", 3), ("vb", b"x" * 9), ("vsb", "\u00e9" * 36)])
KINDS_ROW = st.tuples(ID, *(VALUE[c.name] for c in KINDS[1:]))
COLUMN_NUMBER = {c.name: n for n, c in enumerate(KINDS)}


def with_bad_value(row_and_bad):
    row, (name, value) = row_and_bad
    n = COLUMN_NUMBER[name]
    return row[:n] + (value,) + row[n + 1:]


BAD_ROW = st.tuples(KINDS_ROW, BAD).map(with_bad_value)


@st.composite
def kinds_changes(draw):
    names = draw(st.sets(st.sampled_from([c.name for c in KINDS]), max_size=4))
    return {n: draw(ID if n == "id" else VALUE[n]) for n in sorted(names)}


PLAIN_ROW = st.tuples(st.integers(0, 5), st.text(TEXT, max_size=4))
LOG_ROW = st.tuples(st.integers(-2**63, 2**63 - 1), st.none() | st.text(TEXT, max_size=90))

OP = st.one_of(
    st.tuples(st.just("insert"), st.just("kinds"), KINDS_ROW),
    st.tuples(st.just("insert"), st.just("kinds"), KINDS_ROW),
    st.tuples(st.just("upsert"), st.just("kinds"), KINDS_ROW),
    st.tuples(st.just("update"), st.just("kinds"), ID, kinds_changes()),
    st.tuples(st.just("update"), st.just("kinds"), ID, kinds_changes()),
    st.tuples(st.just("delete"), st.just("kinds"), ID),
    st.tuples(st.just("insert"), st.just("kinds"), BAD_ROW),
    st.tuples(st.just("update"), st.just("kinds"), ID, BAD.map(lambda nv: {nv[0]: nv[1]})),
    st.tuples(st.just("insert"), st.just("plain"), PLAIN_ROW),
    st.tuples(st.just("upsert"), st.just("plain"), PLAIN_ROW),
    st.tuples(st.just("update"), st.just("plain"), st.integers(0, 5),
              st.fixed_dictionaries({}, optional={"k": st.integers(0, 5),
                                                  "s": st.text(TEXT, max_size=4)})),
    st.tuples(st.just("delete"), st.just("plain"), st.integers(0, 5)),
    st.tuples(st.just("truncate"), st.sampled_from(["kinds", "plain", "log"])),
    st.tuples(st.just("log_insert"), LOG_ROW),
    st.tuples(st.just("log_update"), st.integers(0, 99),
              st.fixed_dictionaries({}, optional={"n": LOG_ROW.map(lambda r: r[0]),
                                                  "msg": LOG_ROW.map(lambda r: r[1])})),
    st.tuples(st.just("log_delete"), st.integers(0, 99)),
    st.tuples(st.just("begin")),
    st.tuples(st.just("begin")),
    st.tuples(st.just("commit")),
    st.tuples(st.just("rollback")),
    st.tuples(st.just("savepoint")),
    st.tuples(st.just("rollback_to"), st.integers(0, 9)),
)
OPS = st.lists(OP, min_size=20, max_size=100)
DIGEST = st.integers(0, MASK)

SETTINGS = settings(max_examples=150, deadline=None,
                    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])


# -- the reference, step by step ----------------------------------------------------

@SETTINGS
@given(ops=OPS)
def test_native_digest_equals_reference(ops):
    Driver(make_store()).run(ops)


@SETTINGS
@given(ops=OPS, start=DIGEST)
def test_digest_folds_into_the_value_set(ops, start):
    store = make_store()
    store.change_digest = start
    Driver(store, start).run(ops)


@settings(max_examples=60, deadline=None)
@given(rows=st.lists(st.lists(st.none() | st.integers(-128, 127), min_size=70, max_size=70),
                     min_size=1, max_size=6),
       updates=st.lists(st.tuples(st.integers(0, 5), st.integers(1, 69),
                                  st.none() | st.integers(-128, 127)), max_size=8))
def test_wide_table_null_mask_has_two_words(rows, updates):
    """70 columns: the NULL mask is two words; column 69 is bit 5 of the second."""
    store = Store()
    cols = [Column("id", T.INTEGER, nullable=False)] + [
        Column(f"c{j}", T.TINYINT if j % 2 else T.SMALLINT) for j in range(1, 70)]
    store.create_table("wide", cols, primary_key=["id"])
    drv = Driver(store)
    for n, row in enumerate(rows):
        drv.run([("insert", "wide", (n, *row[1:]))])
    for n, j, v in updates:
        drv.run([("update", "wide", n, {f"c{j}": v})])


# -- determinism across stores: snapshots, allocation history, views ---------------------

@SETTINGS
@given(before=OPS, after=OPS, start=DIGEST, rebuild_views=st.booleans(),
       block=st.sampled_from([1, 100, 1 << 20]))
def test_loaded_store_reaches_the_same_digest(before, after, start, rebuild_views, block):
    """A store loaded by export_rows/import_rows, its digest set to the same
    value, then given the same operations, ends with the same digest."""
    a = Driver(make_store())
    a.run(before)
    a.finish()
    streams = {name: list(t.export_rows(block)) for name, t in a.store.tables.items()}
    b_store = make_store()
    for name, t in b_store.tables.items():
        if t.is_view:
            if not rebuild_views:
                t.import_rows(streams[name])
        else:
            t.import_rows(streams[name], rebuild_views=rebuild_views)
    assert b_store.change_digest == 0       # loading rows is not a change
    for store in (a.store, b_store):
        store.change_digest = start
    a.ref = Reference(start)
    b = Driver(b_store, start)
    a.run(after)
    b.run(after)
    assert a.store.change_digest == b.store.change_digest


@SETTINGS
@given(ops=OPS)
def test_two_stores_same_ops_same_digest(ops):
    x, y = Driver(make_store()), Driver(make_store())
    x.run(ops)
    y.run(ops)
    assert x.store.change_digest == y.store.change_digest


@SETTINGS
@given(ops=OPS.map(lambda ops: [op for op in ops if op[1:2] != ("kinds",)]))
def test_views_do_not_count(ops):
    """Without the kinds table (whose SUM(d) view can refuse a statement),
    the same operations give the same digest with or without views."""
    with_views, without = Driver(make_store(views=True)), Driver(make_store(views=False))
    with_views.run(ops)
    without.run(ops)
    assert with_views.store.change_digest == without.store.change_digest


LONG = st.text(st.characters(max_codepoint=0x7FF, blacklist_categories=("Cs",)),
               min_size=20, max_size=35)               # at most 70 UTF-8 bytes: fits vsb


def long_row(key, s):
    """A kinds row whose out-of-line columns (vl, vbl, vsb) hold ``s``."""
    return (key,) + (None,) * 7 + (s, None, s.encode("utf-8"), s)


@settings(max_examples=50, deadline=None)
@given(longs=st.lists(LONG, min_size=1, max_size=6), noise=st.lists(LONG, max_size=20))
def test_out_of_line_strings_hash_by_content(longs, noise):
    """Equal content, different allocation history and different Python
    string objects: equal digests. Store y first allocates and frees many
    out-of-line values in a rolled-back transaction, and is given copies
    of the strings rather than the same objects."""
    x, y = Driver(make_store()), Driver(make_store())
    y.run([("begin",)] + [("insert", "kinds", long_row(k % 8, s)) for k, s in enumerate(noise)]
          + [("rollback",)])
    for drv in (x, y):
        for n, s in enumerate(longs):
            if drv is y:
                s = "".join(list(s))                    # a different object, same text
            drv.run([("upsert", "kinds", long_row(n, s))])
        for n, s in enumerate(longs):
            drv.run([("update", "kinds", n, {"vl": s[::-1], "vbl": s.encode()[:3]}),
                     ("delete", "kinds", n)])
    assert x.store.change_digest == y.store.change_digest
    assert x.store.change_digest != 0


# -- sensitivity ------------------------------------------------------------------------

def canonical(row):
    """A row with floats as their bits: -0.0 and 0.0 differ, as stored."""
    return tuple(struct.pack("<d", v) if isinstance(v, float) else v for v in row)


@settings(max_examples=300, deadline=None)
@given(row=KINDS_ROW, column=st.integers(1, len(KINDS) - 1), data=st.data())
def test_changing_any_one_value_changes_the_digest(row, column, data):
    other = data.draw(VALUE[KINDS[column].name], label="other value")
    changed = row[:column] + (other,) + row[column + 1:]
    stores = []
    for values in (row, changed):
        store = make_store(views=False)
        try:
            store.tables["kinds"].insert(*values)
        except ConstraintError:
            assume(False)
        stores.append(store)
    a, b = (s.tables["kinds"].get(row[0]) for s in stores)
    assume(canonical(a) != canonical(b))
    assert stores[0].change_digest != stores[1].change_digest
    # as an update's new row, then as an update's old row and a delete's old
    # row (the digest reset to the same value first, to see that change alone)
    digests = []
    for values in (row, changed):
        store = make_store(views=False)
        t = store.tables["kinds"]
        t.insert(row[0])
        t.update(row[0], **{c.name: v for c, v in zip(KINDS[1:], values[1:])})
        digests.append(store.change_digest)
        store.change_digest = 0
        t.update(row[0], **{c.name: None for c in KINDS[1:]})
        digests.append(store.change_digest)
        t.update(row[0], **{c.name: v for c, v in zip(KINDS[1:], values[1:])})
        store.change_digest = 0
        t.delete(row[0])
        digests.append(store.change_digest)
    assert digests[0] != digests[3] and digests[1] != digests[4] and digests[2] != digests[5]


def test_kind_table_and_order_count():
    def digest(*ops):
        drv = Driver(make_store())
        drv.run(ops)
        return drv.store.change_digest

    ins1, ins2 = ("insert", "plain", (1, "a")), ("insert", "plain", (2, "a"))
    assert digest(ins1, ins2) != digest(ins2, ins1)                   # order
    # the same row in two tables of the same layout
    other = make_store()
    other.create_table("plain2", PLAIN, primary_key=["k"])
    other.tables["plain2"].insert(1, "a")
    assert digest(ins1) != other.change_digest != 0
    # the second change: an INSERT or a DELETE of the same row
    row = ("log_insert", (7, "m"))
    assert digest(row, row) != digest(row, ("log_delete", 0))
    # an update that rewrites the same values still counts
    assert digest(ins1, ("update", "plain", 1, {"s": "a"})) != digest(ins1)


# -- transactions ---------------------------------------------------------------------

def test_transaction_boundaries_do_not_matter_and_empty_commits_change_nothing():
    ops = [("insert", "plain", (k, "x")) for k in range(4)] + [("update", "plain", 2, {"s": "y"})]
    auto = Driver(make_store())
    auto.run(ops)
    one = Driver(make_store())
    one.run([("begin",)] + ops + [("commit",)])
    assert auto.store.change_digest == one.store.change_digest != 0
    d = one.store.change_digest
    s = one.store
    s.begin()
    s.commit()
    s.begin()
    s.tables["plain"].get(1)
    list(s.tables["plain"].scan())
    s.commit()
    assert s.change_digest == d


def test_rolled_back_and_failed_statements_do_not_count():
    drv = Driver(make_store())
    drv.run([("insert", "kinds", (1, 0) + (None,) * 3 + (BIG,) + (None,) * 6)])
    d = drv.store.change_digest
    kinds = drv.store.tables["kinds"]
    # fails in the view after the table change was logged: SUM(d) overflows
    with pytest.raises(ConstraintError):
        kinds.insert(2, 0, None, None, None, BIG)
    with pytest.raises(ConstraintError):
        kinds.insert(1)                                     # duplicate key
    assert drv.store.change_digest == d
    s = drv.store
    s.begin()
    kinds.insert(3)
    sp = s.savepoint()
    kinds.insert(4)
    kinds.update(3, vl="x" * 40)
    s.rollback_to(sp)
    with pytest.raises(ConstraintError):
        kinds.insert(5, 0, None, None, None, BIG)
    s.rollback()
    assert s.change_digest == d
    s.begin()
    kinds.insert(3)
    sp = s.savepoint()
    kinds.insert(4)
    s.rollback_to(sp)
    s.commit()
    only3 = Driver(make_store())
    only3.run([("insert", "kinds", (1, 0) + (None,) * 3 + (BIG,) + (None,) * 6),
               ("insert", "kinds", (3,))])
    assert s.change_digest == only3.store.change_digest


def test_ddl_and_import_are_not_changes():
    s = make_store()
    s.tables["plain"].insert(1, "a")
    d = s.change_digest
    s.create_index("plain", "by_s", ["s"])
    s.create_view("plain_by_k", "plain", ["k"], [("COUNT", None)])
    s.drop("plain_by_k")
    s.create_table("extra", PLAIN, primary_key=["k"])
    s.tables["extra"].import_rows(b"".join(s.tables["plain"].export_rows()))
    s.drop("extra")
    assert s.change_digest == d


# -- the API -------------------------------------------------------------------------

def test_change_digest_setter():
    s = make_store()
    assert s.change_digest == 0
    s.change_digest = MASK
    assert s.change_digest == MASK
    s.tables["plain"].insert(1, "a")
    assert s.change_digest == fold(MASK, change_hash(INSERT, s.tables["plain"], None, (1, "a")))
    for bad, error in ((-1, ValueError), (1 << 64, ValueError), (1.0, TypeError),
                       ("1", TypeError), (True, TypeError), (None, TypeError)):
        with pytest.raises(error):
            s.change_digest = bad
    s.begin()
    with pytest.raises(RuntimeError):
        s.change_digest = 5
    s.rollback()
    assert storage.CHANGE_DIGEST_VERSION == 1


# -- the format is pinned, and the same in every process ------------------------------

GOLDEN_SCRIPT = textwrap.dedent("""
    import datetime as dt
    from decimal import Decimal
    from flowstate.native.storage import Store
    from flowstate.types import Column, ColumnType as T
    s = Store()
    s.create_table("Golden", [
        Column("id", T.BIGINT, nullable=False), Column("ti", T.TINYINT), Column("f", T.FLOAT),
        Column("d", T.DECIMAL), Column("ts", T.TIMESTAMP), Column("vs", T.VARCHAR, 6),
        Column("vl", T.VARCHAR, 40), Column("vb", T.VARBINARY, 200)], primary_key=["id"])
    s.create_view("golden_v", "golden", ["ti"], [("COUNT", None)])
    t = s.tables["golden"]
    t.insert(1, -3, -0.0, Decimal("-1.5"), dt.datetime(2024, 2, 29, 12, 0, 0, 7),
             "h\\u00e9llo", "\\u00fc" * 33, bytes(range(150)))
    t.insert(-(2**63), None, float("inf"), Decimal("123456789012345678901234.000000000001"),
             -1, "", None, b"")
    s.begin()
    t.update(1, ti=None, vl="short", vb=None)
    t.delete(-(2**63))
    s.commit()
    print(s.change_digest)
    from flowstate.native import storage
""")

def golden_reference():
    cols = [Column("id", T.BIGINT, nullable=False), Column("ti", T.TINYINT),
            Column("f", T.FLOAT), Column("d", T.DECIMAL), Column("ts", T.TIMESTAMP),
            Column("vs", T.VARCHAR, 6), Column("vl", T.VARCHAR, 40),
            Column("vb", T.VARBINARY, 200)]

    class Golden:
        name = "golden"
        columns = cols

    r1 = (1, -3, -0.0, Decimal("-1.5"), dt.datetime(2024, 2, 29, 12, 0, 0, 7),
          "h\u00e9llo", "\u00fc" * 33, bytes(range(150)))
    r2 = (-(2**63), None, float("inf"), Decimal("123456789012345678901234.000000000001"),
          -1, "", None, b"")
    r1b = r1[:1] + (None,) + r1[2:6] + ("short", None)
    ref = Reference()
    ref.change(INSERT, Golden, None, r1)
    ref.change(INSERT, Golden, None, r2)
    ref.change(UPDATE, Golden, r1, r1b)
    ref.change(DELETE, Golden, r2, None)
    return ref.digest


# Changing this constant means the digest format changed: bump
# CHANGE_DIGEST_VERSION (command logs hold digests of the old format).
GOLDEN_V1 = 0x1C45EC8A4B2AD50B


@pytest.mark.parametrize("hashseed", ["0", "1", "random"])
def test_golden_digest_in_fresh_processes(hashseed):
    expected = golden_reference()
    assert expected == GOLDEN_V1, hex(expected)
    # the child must import the engine this process tests: the folder that
    # holds this process's flowstate package goes first on its path
    root = os.path.dirname(os.path.dirname(os.path.abspath(flowstate.__file__)))
    env = dict(os.environ, PYTHONHASHSEED=hashseed)
    env["PYTHONPATH"] = root + os.pathsep + env.get("PYTHONPATH", "")
    out = subprocess.run([sys.executable, "-c", GOLDEN_SCRIPT + "print(storage.__file__)"],
                         env=env, cwd=root, capture_output=True, text=True, check=True).stdout
    digest, engine = out.split()
    assert engine == storage.__file__
    assert int(digest) == expected
