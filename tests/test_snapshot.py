"""Snapshots (server/snapshot.py) and the bulk export/import under them
(Table.export_rows / import_rows).

* Round trips: hypothesis builds random tables of every column type
  (NULLs, long strings stored out of line, primary keys, unique and
  non-unique hash and ordered indexes, views with COUNT/SUM/MIN/MAX),
  fills them, deletes and updates rows (so tables have holes and free
  lists), writes a snapshot and loads it into a fresh store of the same
  schema; everything observable must be equal: rows, storage order and
  row ids, every index's lookups and ordered scans, every view, and where
  the next insert lands.
* Damage: a truncation at every offset and a flipped bit at every byte of
  a small snapshot raise SnapshotCorruptError and leave the store empty.
* Schema mismatches raise SnapshotSchemaError naming what differs.
* The .tmp file of an unfinished write is never taken for a snapshot.
"""

from __future__ import annotations

import datetime as dt
import os
import struct
from decimal import Decimal

import crc32c
import pytest
from hypothesis import HealthCheck, event, given, settings, strategies as st

from flowstate.errors import ConstraintError, SchemaError, UniqueViolationError
from flowstate.native.storage import Store
from flowstate.server import snapshot as snap
from flowstate.server.partition import Partition
from flowstate.server.snapshot import (SnapshotCorruptError, SnapshotSchemaError,
                                       SnapshotVersionError, load_snapshot, read_snapshot_meta,
                                       verify_snapshot, write_snapshot)
from flowstate.types import Column, ColumnType as T

from storage_fixtures import (PEOPLE_VIEW_COLUMNS, make_people_store, sorted_rows, store_state)


# -- comparing two stores ------------------------------------------------------------

def full_state(store):
    """store_state plus what it leaves out: storage order, row ids, the
    exact order of ordered scans (ties go by row id)."""
    state = store_state(store)
    for name, table in store.tables.items():
        state[name]["scan"] = [tuple(r) for r in table.scan()]
        state[name]["rowids"] = table.scan_rowids()
        for ix_name, ix in table.indexes.items():
            if ix.ordered:
                state[name]["indexes"][ix_name]["range_exact"] = [tuple(r) for r in ix.range()]
                state[name]["indexes"][ix_name]["reverse_exact"] = \
                    [tuple(r) for r in ix.range(reverse=True)]
    return state


def check_ranges(a, b, rows_a):
    """Range scans with bounds taken from the rows give the same answers."""
    for name, ix in a.indexes.items():
        if not ix.ordered:
            continue
        other = b.indexes[name]
        one = len(ix.columns) == 1            # a one-column index takes bare values
        keys = [tuple(getattr(r, c) for c in ix.columns) for r in rows_a[:6]]
        keys = [k[0] if one else k for k in keys if None not in k]
        for low in keys[:3]:
            prefix = low if one else low[:1]
            for high in keys[3:6]:
                for li, hi in ((True, True), (False, True), (True, False)):
                    for rev in (False, True):
                        args = dict(low_inclusive=li, high_inclusive=hi, reverse=rev)
                        assert ix.range(low, high, **args) == other.range(low, high, **args)
                        assert ix.range(prefix, None, limit=3, **args) == \
                            other.range(prefix, None, limit=3, **args)
            assert ix.find(prefix) == other.find(prefix)


def assert_same_store(a, b):
    assert full_state(a) == full_state(b)
    for name, t in a.tables.items():
        check_ranges(t, b.tables[name], list(t.scan()))


# -- random schemas -----------------------------------------------------------------

INT_TYPES = (T.TINYINT, T.SMALLINT, T.INTEGER, T.BIGINT)
TS_MIN = -62135596800 * 10**6 + 10**12          # year 1 (+ a margin)
TS_MAX = 253402300799 * 10**6                   # year 9999


@st.composite
def columns_st(draw):
    """Column specs: (type, size, nullable, size_in_bytes). Sizes straddle
    the inline limit (63 bytes; VARCHAR(n) counts 4 bytes a character)."""
    n = draw(st.integers(1, 6))
    cols = []
    for _ in range(n):
        ty = draw(st.sampled_from(list(T)))
        size, in_bytes = 0, False
        if ty == T.VARCHAR:
            in_bytes = draw(st.booleans())
            size = draw(st.sampled_from([10, 63, 64, 200] if in_bytes else [1, 3, 15, 16, 80]))
        elif ty == T.VARBINARY:
            size = draw(st.sampled_from([1, 8, 63, 64, 300]))
        cols.append((ty, size, draw(st.booleans()), in_bytes))
    return cols


def value_st(ty, size, in_bytes):
    """Values of one column: mostly from a small pool (so groups, index ties
    and unique collisions happen), sometimes from the whole domain."""
    if ty in INT_TYPES:
        lo, hi = {T.TINYINT: (-128, 127), T.SMALLINT: (-2**15, 2**15 - 1),
                  T.INTEGER: (-2**31, 2**31 - 1), T.BIGINT: (-2**63, 2**63 - 1)}[ty]
        wide = st.integers(lo, hi)
        small = st.integers(-3, 3)
    elif ty == T.FLOAT:
        wide = st.floats(-1e9, 1e9, allow_nan=False)
        small = st.sampled_from([0.0, -0.5, 1.5, 2.0])
    elif ty == T.DECIMAL:
        wide = st.builds(lambda n, k: Decimal(n).scaleb(-k),
                         st.integers(-10**20, 10**20), st.integers(0, 12))
        small = st.sampled_from([Decimal("0"), Decimal("1.5"), Decimal("-2.000000000001")])
    elif ty == T.VARCHAR:
        if in_bytes:
            wide = st.text(st.characters(max_codepoint=127), max_size=size)
        else:
            wide = st.text(max_size=size)
        small = st.sampled_from(["", "a", "b"])
        if size >= 16:
            small = st.sampled_from(["", "a", "x" * min(size, 70)])
    elif ty == T.VARBINARY:
        wide = st.binary(max_size=size)
        small = st.sampled_from([b"", b"\x00", b"\xff" * size])
    else:
        wide = st.integers(TS_MIN, TS_MAX)
        small = st.sampled_from([0, 1, -1, 10**15])
    return st.one_of(small, small, wide)


@st.composite
def schema_st(draw):
    specs = draw(columns_st())
    if draw(st.booleans()):                 # often a column stored out of line
        specs.append(draw(st.sampled_from([(T.VARCHAR, 100, True, False),
                                           (T.VARBINARY, 500, True, False),
                                           (T.VARCHAR, 70, False, True)])))
    columns = [Column(f"c{i}", ty, size, nullable, None, in_bytes)
               for i, (ty, size, nullable, in_bytes) in enumerate(specs)]
    names = [c.name for c in columns]
    # a primary key: an id column first (any key type), maybe with a second column
    pk = None
    if draw(st.booleans()):
        id_type = draw(st.sampled_from([T.INTEGER, T.BIGINT, T.VARCHAR, T.TIMESTAMP]))
        columns.insert(0, Column("id", id_type, 12 if id_type == T.VARCHAR else 0, False))
        names.insert(0, "id")
        pk = ["id"]
        not_null = [c.name for c in columns[1:] if not c.nullable]
        if not_null and draw(st.booleans()):
            pk.append(draw(st.sampled_from(not_null)))
    indexes = []
    for i in range(draw(st.integers(0, 3))):
        cols = draw(st.lists(st.sampled_from(names), min_size=1, max_size=2, unique=True))
        unique = draw(st.integers(0, 3)) == 0
        indexes.append((f"ix{i}", cols, unique, draw(st.booleans())))
    views = []
    for i in range(draw(st.integers(0, 2))):
        group = draw(st.lists(st.sampled_from(names), min_size=1, max_size=2, unique=True))
        aggs = []
        for _ in range(draw(st.integers(1, 4))):
            col = draw(st.sampled_from(columns))
            funcs = ["COUNT", "MIN", "MAX", "COUNT*"]
            if col.type in INT_TYPES or col.type in (T.FLOAT, T.DECIMAL):
                funcs.append("SUM")
            func = draw(st.sampled_from(funcs))
            aggs.append(("COUNT", None) if func == "COUNT*" else (func, col.name))
        views.append((f"v{i}", group, aggs))
    return {"columns": columns, "pk": pk, "indexes": indexes, "views": views}


def build(schema):
    store = Store()
    store.create_table("t", schema["columns"], schema["pk"])
    store.create_table("other", [Column("k", T.BIGINT, nullable=False),
                                 Column("s", T.VARCHAR, 100)], ["k"])
    for name, cols, unique, ordered in schema["indexes"]:
        store.create_index("t", name, cols, unique=unique, ordered=ordered)
    for name, group, aggs in schema["views"]:
        store.create_view(name, "t", group, aggs,
                          column_names=list(group) + [f"a{i}" for i in range(len(aggs))])
    return store


def fill(store, schema, data):
    t = store.tables["t"]
    cols = schema["columns"]
    row_st = st.tuples(*[st.none() | value_st(c.type, c.size, c.size_in_bytes) if c.nullable
                         else value_st(c.type, c.size, c.size_in_bytes) for c in cols])
    n = data.draw(st.one_of(st.just(0), st.integers(1, 40), st.integers(20, 60)), label="rows")
    for i in range(n):
        row = list(data.draw(row_st, label="row"))
        if schema["pk"]:
            kind = cols[0].type
            row[0] = f"k{i}" if kind == T.VARCHAR else i * 7 - 50
        try:
            t.insert(*row)
        except ConstraintError:             # a unique index, a SUM out of range: refused
            pass
    rowids = t.scan_rowids()
    for r in data.draw(st.lists(st.sampled_from(rowids), unique=True), label="deletes") \
            if rowids else []:
        t.delete_rowid(r)
    rowids = t.scan_rowids()
    if rowids:
        for r in data.draw(st.lists(st.sampled_from(rowids), max_size=5, unique=True),
                           label="updates"):
            c = data.draw(st.sampled_from(cols), label="column")
            if schema["pk"] and c.name in schema["pk"]:
                continue
            value = data.draw(value_st(c.type, c.size, c.size_in_bytes), label="value")
            try:
                t.update_rowid(r, **{c.name: value})
            except ConstraintError:
                pass
    other = store.tables["other"]
    for k in range(data.draw(st.integers(0, 5), label="other rows")):
        other.insert(k, None if k % 2 else "y" * (k * 20))


@settings(max_examples=150, deadline=None, suppress_health_check=list(HealthCheck))
@given(schema=schema_st(), data=st.data())
def test_round_trip_random_tables(tmp_path_factory, schema, data):
    original = build(schema)
    fill(original, schema, data)
    t = original.tables["t"]
    layout = {name: (width, capacity) for name, _, _, width, capacity, _, _ in t.row_layout[1]}
    long_values = [c.name for c in schema["columns"]
                   if c.type in (T.VARCHAR, T.VARBINARY) and layout[c.name][1] > 63
                   and any(getattr(r, c.name) is not None for r in t.scan())]
    event(f"out-of-line values: {bool(long_values)}")
    event(f"free list: {len(t.scan_rowids()) < (max(t.scan_rowids(), default=-1) + 1)}")
    event(f"views: {len(schema['views'])}, MIN/MAX over out-of-line: "
          f"{any(f in ('MIN', 'MAX') and c in long_values for _, _, aggs in schema['views'] for f, c in aggs)}")
    event(f"rows: {'0' if not len(t) else '1-9' if len(t) < 10 else '10+'}")
    path = str(tmp_path_factory.mktemp("snap") / "t.snap")
    block = data.draw(st.sampled_from([1, 64, 1 << 20]), label="block size")
    stats = write_snapshot(original, path, {"partition": 1, "txn_id": 5}, block_size=block)
    assert stats["bytes"] == os.path.getsize(path)
    assert stats["rows"] == sum(len(t) for t in original.tables.values())
    loaded = build(schema)
    meta = load_snapshot(path, loaded)
    assert meta["partition"] == 1 and meta["txn_id"] == 5
    assert_same_store(original, loaded)
    # the next writes land where they would have in the original
    t1, t2 = original.tables["t"], loaded.tables["t"]
    for victim in t1.scan_rowids()[:2]:
        assert t1.delete_rowid(victim) == t2.delete_rowid(victim)
    row = [None if c.nullable else data.draw(value_st(c.type, c.size, c.size_in_bytes),
                                             label="new row")
           for c in schema["columns"]]
    if schema["pk"]:
        row[0] = "new" if schema["columns"][0].type == T.VARCHAR else 10**6
    outcomes = []
    for table in (t1, t2):
        try:
            outcomes.append(table.insert_rowid(row))
        except ConstraintError as e:
            outcomes.append(type(e))
    assert outcomes[0] == outcomes[1]
    assert_same_store(original, loaded)


# -- a fixed store for the rest -----------------------------------------------------------

def people(n=60, deletes=7):
    store = make_people_store()
    t = store.tables["people"]
    for i in range(n):
        t.insert(i, f"p{i}@x.org" if i % 3 else None, f"city{i % 4}",
                 None if i % 5 == 0 else 20 + i % 9,
                 None if i % 2 else f"note {i} " + "z" * (i * 3 % 280))
    for i in range(0, n, deletes):
        t.delete(i)
    return store


def test_people_round_trip_and_meta(tmp_path):
    store = people(300)
    path = tmp_path / "p.snap"
    stats = write_snapshot(store, path, {"partition": 2, "txn_id": 1234, "log": [3, 4096]})
    assert stats["tables"] == {"people": len(store.tables["people"]),
                               "people_by_city": len(store.tables["people_by_city"])}
    assert stats["seconds"] >= stats["fsync_seconds"] > 0
    meta = read_snapshot_meta(path)
    assert meta["partition"] == 2 and meta["txn_id"] == 1234 and meta["log"] == [3, 4096]
    assert meta["format_version"] == 1 and meta["byte_order"] == "little"
    assert [t["name"] for t in meta["tables"]] == ["people", "people_by_city"]
    assert meta["tables"][1]["view_of"][0] == "people"
    assert verify_snapshot(path) == meta
    loaded = make_people_store()
    assert load_snapshot(path, loaded) == meta
    assert_same_store(store, loaded)
    assert not os.path.exists(str(path) + ".tmp")


def test_empty_store_and_emptied_table(tmp_path):
    store = make_people_store()
    write_snapshot(store, tmp_path / "empty.snap", {})
    loaded = make_people_store()
    load_snapshot(tmp_path / "empty.snap", loaded)
    assert_same_store(store, loaded)
    store = people(40)
    store.tables["people"].truncate()          # no rows, but a free list to keep
    write_snapshot(store, tmp_path / "emptied.snap", {})
    loaded = make_people_store()
    load_snapshot(tmp_path / "emptied.snap", loaded)
    store.tables["people"].insert(1000, None, "x", 1, None)
    loaded.tables["people"].insert(1000, None, "x", 1, None)
    assert_same_store(store, loaded)


def test_meta_rules(tmp_path):
    store = people(5)
    with pytest.raises(ValueError, match="tables"):
        write_snapshot(store, tmp_path / "a.snap", {"tables": 1})
    with pytest.raises(TypeError):
        write_snapshot(store, tmp_path / "a.snap", [1])
    with pytest.raises(ValueError, match=r"\.tmp"):
        write_snapshot(store, tmp_path / "a.tmp", {})
    store.begin()
    with pytest.raises(RuntimeError, match="transaction"):
        write_snapshot(store, tmp_path / "a.snap", {})
    store.rollback()
    write_snapshot(store, tmp_path / "a.snap", {})
    with pytest.raises(ValueError, match="empty store"):
        load_snapshot(tmp_path / "a.snap", store)


def test_voter_partition_round_trip(tmp_path):
    from flowstate.procedures.voter.phonecalls import PhoneCallGenerator
    p = Partition()
    p.call("Initialize", 6)
    gen = PhoneCallGenerator(6, seed=3)
    for _ in range(3000):
        p.call("Vote", *gen.next_call(), 2)
    path = tmp_path / "voter.snap"
    write_snapshot(p.store, path, {"partition": 0, "txn_id": p.last_txn_id})
    q = Partition(p.app)
    meta = load_snapshot(path, q.store)
    assert meta["txn_id"] == p.last_txn_id
    assert_same_store(p.store, q.store)
    assert list(p.call("Results").rows) == list(q.call("Results").rows)
    for _ in range(500):                     # the same calls go on the same way
        call = gen.next_call()
        assert p.call("Vote", *call, 2) == q.call("Vote", *call, 2)
    assert_same_store(p.store, q.store)


def test_a_snapshot_is_written_out_as_it_goes(tmp_path, monkeypatch):
    """The file goes to the device in pieces while it is written, so the
    final fsync does not flush it all at once (server/files.py)."""
    ranges = []
    real_write_out = snap.write_out

    def recording(fd, offset, length):
        ranges.append((offset, length))
        return real_write_out(fd, offset, length)

    monkeypatch.setattr(snap, "write_out", recording)
    p = Partition()
    p.call("Initialize", 6)
    for i in range(40_000):
        p.call("Vote", 2_125_550_000 + i, i % 6 + 1, 2)
    path = tmp_path / "voter.snap"
    written = write_snapshot(p.store, path, {"partition": 0})
    assert len(ranges) >= 2 and ranges[0][0] == 0
    for (offset, length), (following, _) in zip(ranges, ranges[1:]):
        assert following == offset + length                  # contiguous, in order
    assert all(length >= snap.WRITE_OUT_BYTES for _, length in ranges)
    end = ranges[-1][0] + ranges[-1][1]
    assert written["bytes"] - snap.WRITE_OUT_BYTES - (1 << 20) < end <= written["bytes"]
    load_snapshot(path, Partition(p.app).store)               # and it reads back


def test_write_in_forked_child(tmp_path):
    store = people(500)
    path = str(tmp_path / "forked.snap")
    pid = os.fork()
    if pid == 0:
        try:
            write_snapshot(store, path, {"from": "child"})
            os._exit(0)
        except BaseException:
            os._exit(1)
    _, status = os.waitpid(pid, 0)
    assert os.waitstatus_to_exitcode(status) == 0
    loaded = make_people_store()
    assert load_snapshot(path, loaded)["from"] == "child"
    assert_same_store(store, loaded)


# -- damage ------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def small_snapshot(tmp_path_factory):
    store = people(12, deletes=5)
    path = tmp_path_factory.mktemp("small") / "small.snap"
    write_snapshot(store, path, {"partition": 0}, block_size=128)
    data = path.read_bytes()
    assert 1000 < len(data) < 4000, len(data)
    return store, data


def assert_refused(path, store, error=SnapshotCorruptError):
    with pytest.raises(error):
        load_snapshot(path, store)
    assert all(len(t) == 0 for t in store.tables.values())
    assert all(len(ix) == 0 for t in store.tables.values() for ix in t.indexes.values())


def test_truncation_at_every_offset(small_snapshot, tmp_path):
    original, data = small_snapshot
    store = make_people_store()
    path = tmp_path / "cut.snap"
    for n in range(len(data)):
        path.write_bytes(data[:n])
        assert_refused(path, store)
        with pytest.raises(SnapshotCorruptError):
            verify_snapshot(path)
    path.write_bytes(data)
    load_snapshot(path, store)
    assert_same_store(original, store)


def test_flipped_bit_anywhere(small_snapshot, tmp_path):
    _, data = small_snapshot
    store = make_people_store()
    path = tmp_path / "flip.snap"
    for i in range(len(data)):
        bits = range(8) if i < 64 else (i % 8,)     # every bit of the header and meta start
        for bit in bits:
            damaged = bytearray(data)
            damaged[i] ^= 1 << bit
            path.write_bytes(damaged)
            assert_refused(path, store)


def test_appended_or_spliced_bytes(small_snapshot, tmp_path):
    _, data = small_snapshot
    store = make_people_store()
    path = tmp_path / "extra.snap"
    for damaged in (data + b"\x00", data + data, data[:40] + data[41:],
                    data[:len(data) - 41] + data[len(data) - 41:][::-1], b"", b"\x89FSNAP",
                    b"not a snapshot at all, just text\n" * 3):
        path.write_bytes(damaged)
        assert_refused(path, store)
    with pytest.raises(SnapshotCorruptError):
        read_snapshot_meta(tmp_path / "extra.snap")


def test_other_version(small_snapshot, tmp_path):
    _, data = small_snapshot
    head = snap.MAGIC + struct.pack("<I", 2)
    path = tmp_path / "v2.snap"
    path.write_bytes(head + struct.pack("<I", crc32c.crc32c(head)) + data[16:])
    with pytest.raises(SnapshotVersionError, match="version 2"):
        load_snapshot(path, make_people_store())
    with pytest.raises(SnapshotVersionError):
        read_snapshot_meta(path)


def test_missing_file(tmp_path):
    with pytest.raises(FileNotFoundError):
        load_snapshot(tmp_path / "nothing.snap", make_people_store())


# -- schema mismatches -------------------------------------------------------------------

def people_variant(change):
    """make_people_store with one thing changed."""
    cols = [Column("id", T.INTEGER, nullable=False), Column("email", T.VARCHAR, 40),
            Column("city", T.VARCHAR, 16, nullable=False), Column("age", T.INTEGER),
            Column("note", T.VARCHAR, 300)]
    aggs = [("COUNT", None), ("COUNT", "age"), ("SUM", "age"), ("MIN", "age"), ("MAX", "age")]
    extra_table = False
    if change == "type":
        cols[3] = Column("age", T.BIGINT)
    elif change == "size":
        cols[2] = Column("city", T.VARCHAR, 17, nullable=False)
    elif change == "nullable":
        cols[3] = Column("age", T.INTEGER, nullable=False)
    elif change == "name":
        cols[1] = Column("mail", T.VARCHAR, 40)
    elif change == "column added":
        cols.append(Column("extra", T.TINYINT))
    elif change == "view":
        aggs[3] = ("MAX", "age")
    elif change == "table added":
        extra_table = True
    store = Store()
    store.create_table("people", cols, ["id"])
    store.create_view("people_by_city", "people", ["city"], aggs,
                      column_names=PEOPLE_VIEW_COLUMNS)
    if extra_table:
        store.create_table("extra", [Column("x", T.INTEGER)])
    return store


@pytest.mark.parametrize("change, message", [
    ("type", r"column 4: `age INTEGER` in the snapshot, `age BIGINT` in the store"),
    ("size", r"column 3: `city VARCHAR\(16\) NOT NULL` in the snapshot, "
             r"`city VARCHAR\(17\) NOT NULL`"),
    ("nullable", r"`age INTEGER` in the snapshot, `age INTEGER NOT NULL` in the store"),
    ("name", r"`email VARCHAR\(40\)` in the snapshot, `mail VARCHAR\(40\)`"),
    ("column added", r"table people has 5 columns in the snapshot .* 6 in the store"),
    ("view", r"view people_by_city is `SELECT city, COUNT\(\*\), COUNT\(age\), SUM\(age\), "
             r"MIN\(age\), MAX\(age\) FROM people"),
    ("table added", r"only in the store: extra"),
])
def test_schema_mismatch(tmp_path, change, message):
    path = tmp_path / "p.snap"
    write_snapshot(people(20), path, {})
    store = people_variant(change)
    with pytest.raises(SnapshotSchemaError, match=message):
        load_snapshot(path, store)
    assert all(len(t) == 0 for t in store.tables.values())
    assert issubclass(SnapshotSchemaError, SchemaError)


def test_missing_table_and_new_indexes(tmp_path):
    path = tmp_path / "p.snap"
    original = people(30)
    write_snapshot(original, path, {})
    store = Store()
    store.create_table("people", [Column("id", T.INTEGER, nullable=False)], ["id"])
    with pytest.raises(SnapshotSchemaError, match="only in the snapshot: people_by_city"):
        load_snapshot(path, store)
    # an index the snapshot did not have is built from the rows
    store = make_people_store()
    store.create_index("people", "by_city_age", ["city", "age"])
    load_snapshot(path, store)
    assert sorted_rows(store.tables["people"].index("by_city_age").find("city1")) == \
        sorted_rows(r for r in original.tables["people"].scan() if r.city == "city1")
    # a unique index the rows break is a schema error, named
    store = make_people_store()
    store.create_index("people", "one_per_city", ["city"], unique=True)
    with pytest.raises(SnapshotSchemaError, match="one_per_city"):
        load_snapshot(path, store)


# -- unfinished writes --------------------------------------------------------------------

def test_tmp_file_is_not_a_snapshot(tmp_path, monkeypatch):
    path = str(tmp_path / "p.snap")
    first = people(50)
    write_snapshot(first, path, {"n": 1})
    # a write that dies half way leaves the old snapshot in place and no .tmp
    second = people(80)
    real_writev = os.writev
    calls = []

    def failing_writev(fd, buffers):
        calls.append(1)
        if len(calls) > 3:
            raise OSError(28, "No space left on device")
        return real_writev(fd, buffers)

    monkeypatch.setattr(snap.os, "writev", failing_writev)
    with pytest.raises(OSError):
        write_snapshot(second, path, {"n": 2})
    monkeypatch.undo()
    assert not os.path.exists(path + ".tmp")
    loaded = make_people_store()
    assert load_snapshot(path, loaded)["n"] == 1
    assert_same_store(first, loaded)
    # a crash (no cleanup) leaves a .tmp: never loaded, complete or not
    write_snapshot(second, str(tmp_path / "done.snap"), {"n": 2})
    data = (tmp_path / "done.snap").read_bytes()
    for content in (data[:len(data) // 2], data):
        with open(path + ".tmp", "wb") as f:
            f.write(content)
        for reader in (read_snapshot_meta, verify_snapshot,
                       lambda p: load_snapshot(p, make_people_store())):
            with pytest.raises(SnapshotCorruptError, match="unfinished"):
                reader(path + ".tmp")
        assert load_snapshot(path, make_people_store())["n"] == 1
    # the next write replaces the stale .tmp
    write_snapshot(second, path, {"n": 3})
    assert not os.path.exists(path + ".tmp")
    loaded = make_people_store()
    assert load_snapshot(path, loaded)["n"] == 3
    assert_same_store(second, loaded)


# -- the native bulk API -----------------------------------------------------------------

def test_export_import_api():
    store = people(200)
    t = store.tables["people"]
    blocks = list(t.export_rows(1))          # one item per block
    assert all(len(b) in (16, 4) or len(b) >= t.row_layout[0] for b in blocks)
    whole = b"".join(t.export_rows())
    assert whole == b"".join(blocks)
    view = store.tables["people_by_city"]
    view_stream = b"".join(view.export_rows())
    for data in (whole, blocks, iter(blocks), memoryview(whole), bytearray(whole)):
        other = make_people_store()
        assert other.tables["people"].import_rows(data, rebuild_views=False) == len(t)
        assert other.tables["people_by_city"].import_rows(view_stream) == len(view)
        assert_same_store(store, other)
    # rebuilding the views from the rows gives the same groups
    other = make_people_store()
    other.tables["people"].import_rows(whole)
    assert sorted_rows(other.tables["people_by_city"].scan()) == sorted_rows(view.scan())
    # refusals
    with pytest.raises(ValueError, match="empty table"):
        other.tables["people"].import_rows(whole)
    fresh = make_people_store()
    fresh.tables["people_by_city"].import_rows(view_stream)
    with pytest.raises(ValueError, match="empty views"):
        fresh.tables["people"].import_rows(whole)
    fresh.begin()
    with pytest.raises(RuntimeError, match="transaction"):
        fresh.tables["people"].import_rows(whole, rebuild_views=False)
    store.begin()
    with pytest.raises(RuntimeError, match="transaction"):
        t.export_rows()
    store.rollback()
    with pytest.raises(ValueError, match="another row layout"):
        make_people_store().tables["people"].import_rows(view_stream)
    assert t.view_definition is None
    assert view.view_definition == ("people", ("city",), (("COUNT", None), ("COUNT", "age"),
                                                          ("SUM", "age"), ("MIN", "age"),
                                                          ("MAX", "age")))


def test_import_malformed_stream_leaves_table_empty():
    store = people(40)
    t = store.tables["people"]
    whole = b"".join(t.export_rows())
    target = make_people_store()
    tt = target.tables["people"]
    for n in range(0, len(whole), 3):
        with pytest.raises(ValueError, match="malformed"):
            tt.import_rows(whole[:n])
        assert len(tt) == 0 and all(len(ix) == 0 for ix in tt.indexes.values())
        assert len(target.tables["people_by_city"]) == 0
    with pytest.raises(ValueError, match="malformed"):
        tt.import_rows(whole + whole[16:16 + 40])
    with pytest.raises(ValueError, match="malformed"):
        tt.import_rows([])
    # a row cut between blocks
    rows_at = 16 + 4 * struct.unpack_from("<I", whole, 12)[0]
    with pytest.raises(ValueError, match="cut"):
        tt.import_rows([whole[:rows_at + 5], whole[rows_at + 5:]])
    tt.import_rows(whole)                   # the view is rebuilt: same groups, new row ids
    assert store_state(store) == store_state(target)


def test_import_duplicate_keys_refused():
    """Rows that break a unique index on import raise and leave nothing."""
    cols = [Column("k", T.BIGINT, nullable=False), Column("s", T.VARCHAR, 5),
            Column("d", T.DECIMAL)]
    plain = Store()
    plain.create_table("t", cols)
    for i in range(1000):
        plain.tables["t"].insert(i % 400, f"s{i % 400}", Decimal(i % 400) / 8)
    stream = b"".join(plain.tables["t"].export_rows())
    for kind in ("pk", "hash", "ordered", "int ordered", "pair"):
        store = Store()
        store.create_table("t", cols, ["k"] if kind == "pk" else None)
        if kind == "hash":
            store.create_index("t", "u", ["s"], unique=True, ordered=False)
        elif kind == "ordered":
            store.create_index("t", "u", ["d"], unique=True)
        elif kind == "int ordered":
            store.create_index("t", "u", ["k"], unique=True)
        elif kind == "pair":
            store.create_index("t", "u", ["k", "s"], unique=True, ordered=False)
        store.create_index("t", "other", ["s"])
        with pytest.raises(UniqueViolationError):
            store.tables["t"].import_rows(stream)
        assert len(store.tables["t"]) == 0
        assert all(len(ix) == 0 for ix in store.tables["t"].indexes.values())
    # a unique index with NULLs: NULLs are distinct
    store = Store()
    store.create_table("t", [Column("k", T.INTEGER, nullable=False), Column("u", T.INTEGER)])
    for i in range(50):
        store.tables["t"].insert(i, None if i % 2 else i)
    stream = b"".join(store.tables["t"].export_rows())
    for ordered in (True, False):
        other = Store()
        other.create_table("t", [Column("k", T.INTEGER, nullable=False), Column("u", T.INTEGER)])
        other.create_index("t", "u", ["u"], unique=True, ordered=ordered)
        assert other.tables["t"].import_rows(stream) == 50
        assert other.tables["t"].index("u").get(4).k == 4


def test_timestamps_and_big_int_index():
    """Loaded integer ordered indexes (bulk-built blocks) keep working as
    rows come and go afterwards."""
    store = Store()
    store.create_table("e", [Column("id", T.BIGINT, nullable=False),
                             Column("at", T.TIMESTAMP, nullable=False)], ["id"])
    store.create_index("e", "by_at", ["at"])
    e = store.tables["e"]
    base = dt.datetime(2026, 1, 1, tzinfo=dt.timezone.utc)
    for i in range(5000):
        e.insert(i, base + dt.timedelta(seconds=(i * 7919) % 5000))
    other = Store()
    other.create_table("e", [Column("id", T.BIGINT, nullable=False),
                             Column("at", T.TIMESTAMP, nullable=False)], ["id"])
    other.create_index("e", "by_at", ["at"])
    other.tables["e"].import_rows(b"".join(e.export_rows()))
    o = other.tables["e"]
    for i in range(0, 5000, 3):
        e.delete(i)
        o.delete(i)
    for i in range(5000, 6000):
        e.insert(i, base + dt.timedelta(seconds=i % 97))
        o.insert(i, base + dt.timedelta(seconds=i % 97))
    assert_same_store(store, other)
