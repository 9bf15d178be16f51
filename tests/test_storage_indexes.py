"""Primary keys, secondary indexes (hash and ordered), range scans, tables
without a key, row ids, column arrays and volumes that make the index
structures grow and shrink."""

import random

import numpy
import pytest

from flowstate.errors import UniqueViolationError
from flowstate.native.storage import Store
from flowstate.types import Column, ColumnType as T

from storage_fixtures import (key_of, make_people_store, null_first, sorted_rows,
                              store_state)


def assert_key_order(rows, expected_rows, columns, reverse=False):
    """``rows`` hold exactly ``expected_rows`` and come in index-key order
    (ties in any order)."""
    keys = [key_of(r, columns) for r in rows]
    want = sorted((key_of(r, columns) for r in expected_rows),
                  key=lambda k: tuple(null_first(v) for v in (k if isinstance(k, tuple) else (k,))),
                  reverse=reverse)
    assert keys == want
    assert sorted_rows(rows) == sorted_rows(expected_rows)


# -- primary key, one column ---------------------------------------------------

def kv_table():
    store = Store()
    t = store.create_table("kv", [Column("k", T.BIGINT, nullable=False),
                                  Column("v", T.VARCHAR, 20),
                                  Column("n", T.INTEGER)], primary_key=["k"])
    return store, t


def test_primary_key_get_insert_delete():
    store, t = kv_table()
    assert t.get(1) is None and len(t) == 0
    t.insert(1, "one", 10)
    t.insert(k=2, v="two", n=20)
    t.insert(-(2**63), "min", 0)
    assert t.get(1) == (1, "one", 10)
    assert t.get(2).v == "two"
    assert t.get(-(2**63)).v == "min"
    assert t.get(3) is None
    assert len(t) == 3 and len(t.indexes["primary_key"]) == 3
    deleted = t.delete(1)
    assert deleted == (1, "one", 10) and isinstance(deleted, t.Row)
    assert t.get(1) is None
    assert t.delete(1) is None
    assert t.delete(99) is None
    assert len(t) == 2
    t.insert(1, "again", None)
    assert t.get(1) == (1, "again", None)


def test_primary_key_duplicate_insert_is_refused():
    store, t = kv_table()
    t.insert(1, "one", 10)
    before = store_state(store)
    with pytest.raises(UniqueViolationError) as info:
        t.insert(1, "other", 11)
    assert store_state(store) == before
    message = str(info.value).lower()
    assert "kv" in message and "1" in message


def test_primary_key_update_other_columns():
    store, t = kv_table()
    t.insert(1, "one", 10)
    new = t.update(1, n=11)
    assert new == (1, "one", 11) and isinstance(new, t.Row)
    assert t.get(1) == (1, "one", 11)
    assert t.update(1) == (1, "one", 11)          # no changes
    assert t.update(2, n=5) is None
    assert t.get(2) is None and len(t) == 1


def test_primary_key_update_of_key_moves_the_row():
    store, t = kv_table()
    t.insert(1, "one", 10)
    t.insert(2, "two", 20)
    new = t.update(1, k=5, v="five")
    assert new == (5, "five", 10)
    assert t.get(1) is None
    assert t.get(5) == (5, "five", 10)
    assert len(t) == 2
    assert t.update(5, k=5) == (5, "five", 10)    # same key: no conflict with itself
    before = store_state(store)
    with pytest.raises(UniqueViolationError):
        t.update(5, k=2)
    assert store_state(store) == before
    assert t.delete(5) == (5, "five", 10)
    assert t.get(5) is None and len(t) == 1


def test_upsert_inserts_then_replaces():
    store, t = kv_table()
    assert t.upsert(1, "one", 10) is True
    assert t.upsert(1, "uno", None) is False
    assert t.get(1) == (1, "uno", None)
    assert t.upsert(k=2, v="two") is True
    assert len(t) == 2


# -- primary key, several columns ----------------------------------------------

def composite_table():
    store = Store()
    t = store.create_table("votes", [Column("contestant", T.INTEGER, nullable=False),
                                     Column("state", T.VARCHAR, 2, nullable=False),
                                     Column("n", T.BIGINT)],
                           primary_key=["contestant", "state"])
    store.create_index("votes", "by_n", ["n"])
    return store, t


def test_composite_primary_key():
    store, t = composite_table()
    assert t.primary_key == ("contestant", "state")
    t.insert(1, "CA", 10)
    t.insert(1, "NY", 20)
    t.insert(2, "CA", 30)
    assert t.get((1, "CA")) == (1, "CA", 10)
    assert t.get((1, "NY")).n == 20
    assert t.get((2, "NY")) is None
    with pytest.raises(UniqueViolationError):
        t.insert(1, "CA", 99)
    assert t.update((1, "NY"), n=21) == (1, "NY", 21)
    assert t.update((2, "CA"), state="TX") == (2, "TX", 30)
    assert t.get((2, "CA")) is None and t.get((2, "TX")) == (2, "TX", 30)
    before = store_state(store)
    with pytest.raises(UniqueViolationError):
        t.update((2, "TX"), contestant=1, state="CA")
    assert store_state(store) == before
    assert t.upsert(1, "CA", 11) is False
    assert t.upsert(3, "CA", 1) is True
    assert t.get((1, "CA")).n == 11
    assert [r.n for r in t.index("by_n").range()] == [1, 11, 21, 30]
    assert t.delete((1, "NY")) == (1, "NY", 21)
    assert t.delete((1, "NY")) is None
    assert sorted_rows(t.scan()) == [(1, "CA", 11), (2, "TX", 30), (3, "CA", 1)]


# -- secondary indexes -----------------------------------------------------------

@pytest.mark.parametrize("ordered", [False, True], ids=["hash", "ordered"])
def test_unique_secondary_index(ordered):
    store = Store()
    t = store.create_table("users", [Column("id", T.INTEGER, nullable=False),
                                     Column("email", T.VARCHAR, 30),
                                     Column("age", T.INTEGER)], primary_key=["id"])
    ix = store.create_index("users", "by_email", ["email"], unique=True, ordered=ordered)
    assert "by_email" in t.indexes and t.index("by_email").name == "by_email"
    assert ix.unique and ix.ordered == ordered and ix.columns == ("email",)
    t.insert(1, "a@x", 30)
    t.insert(2, "b@x", 40)
    assert t.index("by_email").get("a@x") == (1, "a@x", 30)
    assert t.index("by_email").find("b@x") == [(2, "b@x", 40)]
    assert t.index("by_email").get("c@x") is None
    assert t.index("by_email").find("c@x") == []

    before = store_state(store)
    with pytest.raises(UniqueViolationError) as info:
        t.insert(3, "a@x", 50)
    assert "a@x" in str(info.value)
    with pytest.raises(UniqueViolationError):
        t.update(2, email="a@x")
    with pytest.raises(UniqueViolationError):
        t.update(2, age=41, email="a@x")
    with pytest.raises(UniqueViolationError):
        t.upsert(2, "a@x", 41)              # replace row 2, colliding with row 1
    with pytest.raises(UniqueViolationError):
        t.upsert(3, "b@x", 41)              # new row colliding with row 2
    assert store_state(store) == before

    assert t.update(1, email="a@x", age=31) == (1, "a@x", 31)   # own value: no conflict
    assert t.upsert(1, "a@x", 32) is False
    t.update(1, email="c@x")
    assert t.index("by_email").get("a@x") is None
    assert t.index("by_email").get("c@x") == (1, "c@x", 32)
    t.insert(3, "a@x", 50)                  # the freed value can be taken again
    t.delete(3)
    assert t.index("by_email").get("a@x") is None
    assert len(t.index("by_email")) == 2


@pytest.mark.parametrize("ordered", [False, True], ids=["hash", "ordered"])
def test_non_unique_secondary_index(ordered):
    store = Store()
    t = store.create_table("users", [Column("id", T.INTEGER, nullable=False),
                                     Column("city", T.VARCHAR, 10, nullable=False)],
                           primary_key=["id"])
    store.create_index("users", "by_city", ["city"], ordered=ordered)
    ix = t.index("by_city")
    assert not ix.unique
    for i, city in enumerate(["oslo", "rome", "oslo", "lima", "oslo", "rome"]):
        t.insert(i, city)
    assert sorted_rows(ix.find("oslo")) == [(0, "oslo"), (2, "oslo"), (4, "oslo")]
    assert sorted_rows(ix.find("rome")) == [(1, "rome"), (5, "rome")]
    assert ix.find("paris") == []
    assert len(ix) == 6
    t.update(2, city="lima")
    t.delete(4)
    assert sorted_rows(ix.find("oslo")) == [(0, "oslo")]
    assert sorted_rows(ix.find("lima")) == [(2, "lima"), (3, "lima")]
    t.upsert(0, "rome")
    assert ix.find("oslo") == []
    assert sorted_rows(ix.find("rome")) == [(0, "rome"), (1, "rome"), (5, "rome")]
    assert len(ix) == 5
    rowids = ix.find_rowids("rome")
    assert sorted_rows(t.read(r) for r in rowids) == sorted_rows(ix.find("rome"))


def test_multi_column_hash_index():
    store = Store()
    t = store.create_table("t", [Column("id", T.INTEGER, nullable=False),
                                 Column("a", T.INTEGER, nullable=False),
                                 Column("b", T.VARCHAR, 5, nullable=False)],
                           primary_key=["id"])
    store.create_index("t", "ab", ["a", "b"], unique=True, ordered=False)
    t.insert(1, 1, "x")
    t.insert(2, 1, "y")
    t.insert(3, 2, "x")
    assert t.index("ab").get((1, "y")) == (2, 1, "y")
    assert t.index("ab").get((2, "y")) is None
    with pytest.raises(UniqueViolationError):
        t.insert(4, 2, "x")
    assert len(t) == 3


# -- ordered range scans ---------------------------------------------------------

@pytest.fixture
def scores():
    """scores(id PK, score INTEGER NOT NULL) with a unique ordered index on
    score, scores 0, 10, ..., 90."""
    store = Store()
    t = store.create_table("scores", [Column("id", T.INTEGER, nullable=False),
                                      Column("score", T.INTEGER, nullable=False)],
                           primary_key=["id"])
    store.create_index("scores", "by_score", ["score"], unique=True)
    order = [50, 20, 90, 0, 70, 10, 30, 80, 60, 40]
    for i, s in enumerate(order):
        t.insert(i, s)
    return t


def _scores(rows):
    return [r.score for r in rows]


def test_range_unbounded_both_directions(scores):
    ix = scores.index("by_score")
    assert _scores(ix.range()) == list(range(0, 100, 10))
    assert _scores(ix.range(reverse=True)) == list(range(90, -1, -10))


@pytest.mark.parametrize("kwargs,expected", [
    (dict(low=20, high=50), [20, 30, 40, 50]),
    (dict(low=20, high=50, low_inclusive=False), [30, 40, 50]),
    (dict(low=20, high=50, high_inclusive=False), [20, 30, 40]),
    (dict(low=20, high=50, low_inclusive=False, high_inclusive=False), [30, 40]),
    (dict(low=25, high=55), [30, 40, 50]),
    (dict(low=25, high=55, low_inclusive=False, high_inclusive=False), [30, 40, 50]),
    (dict(low=70), [70, 80, 90]),
    (dict(low=70, low_inclusive=False), [80, 90]),
    (dict(high=20), [0, 10, 20]),
    (dict(high=20, high_inclusive=False), [0, 10]),
    (dict(low=-5, high=200), list(range(0, 100, 10))),
    (dict(low=50, high=50), [50]),
    (dict(low=50, high=50, low_inclusive=False), []),
    (dict(low=60, high=40), []),
    (dict(low=91), []),
    (dict(high=-1), []),
    (dict(limit=3), [0, 10, 20]),
    (dict(limit=0), []),
    (dict(limit=100), list(range(0, 100, 10))),
    (dict(low=35, limit=2), [40, 50]),
    (dict(high=35, limit=2, reverse=True), [30, 20]),
    (dict(low=20, high=50, reverse=True), [50, 40, 30, 20]),
    (dict(low=20, high=50, reverse=True, low_inclusive=False, high_inclusive=False), [40, 30]),
    (dict(low=20, reverse=True, limit=2), [90, 80]),
    (dict(reverse=True, limit=1), [90]),
])
def test_range_bounds(scores, kwargs, expected):
    ix = scores.index("by_score")
    rows = ix.range(**kwargs)
    assert _scores(rows) == expected
    assert all(isinstance(r, scores.Row) for r in rows)
    rowids = ix.range_rowids(**kwargs)
    assert [scores.read(r) for r in rowids] == rows


def test_range_refused_on_hash_index():
    store = Store()
    t = store.create_table("t", [Column("id", T.INTEGER, nullable=False),
                                 Column("x", T.INTEGER)], primary_key=["id"])
    store.create_index("t", "hx", ["x"], ordered=False)
    t.insert(1, 1)
    with pytest.raises(Exception):
        t.index("hx").range(low=0)


@pytest.fixture
def events():
    """events(id PK, day SMALLINT, kind VARCHAR(8), seq INTEGER) with an
    ordered non-unique index on (day, kind) and a unique ordered one on
    (day, kind, seq); day in 1..4, kind in a/b/c, 2 rows per (day, kind)."""
    store = Store()
    t = store.create_table("events", [Column("id", T.INTEGER, nullable=False),
                                      Column("day", T.SMALLINT, nullable=False),
                                      Column("kind", T.VARCHAR, 8, nullable=False),
                                      Column("seq", T.INTEGER, nullable=False)],
                           primary_key=["id"])
    store.create_index("events", "by_day_kind", ["day", "kind"])
    store.create_index("events", "by_day_kind_seq", ["day", "kind", "seq"], unique=True)
    rows = [(day, kind, seq) for day in (1, 2, 3, 4) for kind in "abc" for seq in (1, 2)]
    random.Random(7).shuffle(rows)
    for i, (day, kind, seq) in enumerate(rows):
        t.insert(i, day, kind, seq)
    return t


def _dks(rows):
    return [(r.day, r.kind, r.seq) for r in rows]


def _all_events(pred):
    return [(d, k, s) for d in (1, 2, 3, 4) for k in "abc" for s in (1, 2) if pred(d, k, s)]


@pytest.mark.parametrize("kwargs,pred", [
    (dict(), lambda d, k, s: True),
    (dict(low=2, high=3), lambda d, k, s: 2 <= d <= 3),
    (dict(low=2, high=3, low_inclusive=False), lambda d, k, s: d == 3),
    (dict(low=2, high=3, high_inclusive=False), lambda d, k, s: d == 2),
    (dict(low=2), lambda d, k, s: d >= 2),
    (dict(high=2), lambda d, k, s: d <= 2),
    (dict(low=(2,), high=(2,)), lambda d, k, s: d == 2),
    (dict(low=(2, "b")), lambda d, k, s: (d, k) >= (2, "b")),
    (dict(low=(2, "b"), low_inclusive=False), lambda d, k, s: (d, k) > (2, "b")),
    (dict(low=(2, "b"), high=(3, "a")), lambda d, k, s: (2, "b") <= (d, k) <= (3, "a")),
    (dict(low=(2, "b"), high=3), lambda d, k, s: (2, "b") <= (d, k) and d <= 3),
    (dict(low=(2, "b", 2), high=(3, "a", 1)),
     lambda d, k, s: (2, "b", 2) <= (d, k, s) <= (3, "a", 1)),
    (dict(low=(2, "b", 2), high=(3, "a", 1), low_inclusive=False, high_inclusive=False),
     lambda d, k, s: (2, "b", 2) < (d, k, s) < (3, "a", 1)),
    (dict(high=(1, "c"), high_inclusive=False), lambda d, k, s: (d, k) < (1, "c")),
    (dict(low=(1, "bb"), high=(1, "c")), lambda d, k, s: d == 1 and k == "c"),
])
def test_range_on_several_columns_with_prefix_bounds(events, kwargs, pred):
    expected = _all_events(pred)
    ix3 = events.index("by_day_kind_seq")
    assert _dks(ix3.range(**kwargs)) == expected
    assert _dks(ix3.range(reverse=True, **kwargs)) == expected[::-1]
    assert _dks(ix3.range(limit=3, **kwargs)) == expected[:3]
    assert _dks(ix3.range(reverse=True, limit=3, **kwargs)) == expected[::-1][:3]
    # the two-column non-unique index: same rows, ties on (day, kind) in any order
    bounds = {k: (v[:2] if isinstance(v, tuple) else v) for k, v in kwargs.items()}
    if bounds == kwargs:
        ix2 = events.index("by_day_kind")
        got = ix2.range(**kwargs)
        assert [(r.day, r.kind) for r in got] == [(d, k) for d, k, s in expected]
        assert sorted(_dks(got)) == expected
        got = ix2.range(reverse=True, **kwargs)
        assert [(r.day, r.kind) for r in got] == [(d, k) for d, k, s in expected[::-1]]


def test_find_with_prefix_on_ordered_index(events):
    ix2 = events.index("by_day_kind")
    ix3 = events.index("by_day_kind_seq")
    assert _dks(ix3.find(3)) == _all_events(lambda d, k, s: d == 3)
    assert _dks(ix3.find((3,))) == _all_events(lambda d, k, s: d == 3)
    assert _dks(ix3.find((3, "b"))) == [(3, "b", 1), (3, "b", 2)]
    assert _dks(ix3.find((3, "b", 2))) == [(3, "b", 2)]
    assert ix3.find((5, "a")) == []
    assert ix3.get((3, "b", 2)).seq == 2
    assert ix3.get((3, "b", 3)) is None
    assert sorted(_dks(ix2.find((3, "b")))) == [(3, "b", 1), (3, "b", 2)]
    assert [r.day for r in ix2.find(4)] == [4] * 6
    assert [r.kind for r in ix2.find(4)] == sorted(r.kind for r in ix2.find(4))


# -- NULLs in indexed columns -----------------------------------------------------

@pytest.mark.parametrize("ordered", [False, True], ids=["hash", "ordered"])
def test_unique_index_allows_many_nulls(ordered):
    store = Store()
    t = store.create_table("t", [Column("id", T.INTEGER, nullable=False),
                                 Column("x", T.INTEGER)], primary_key=["id"])
    store.create_index("t", "ux", ["x"], unique=True, ordered=ordered)
    t.insert(1, None)
    t.insert(2, None)
    t.insert(3, 5)
    t.insert(4, None)
    t.update(3, x=None)
    t.upsert(5, None)
    assert len(t) == 5
    t.update(1, x=7)
    with pytest.raises(UniqueViolationError):
        t.insert(6, 7)
    assert t.index("ux").get(7) == (1, 7)
    t.update(2, x=8)
    assert t.index("ux").get(8) == (2, 8)
    if ordered:
        rows = t.index("ux").range()
        assert [r.x for r in rows] == [None, None, None, 7, 8]
        assert sorted(r.id for r in rows[:3]) == [3, 4, 5]


def test_nulls_sort_first_in_ordered_index():
    store = Store()
    t = store.create_table("t", [Column("id", T.INTEGER, nullable=False),
                                 Column("x", T.INTEGER),
                                 Column("s", T.VARCHAR, 4)], primary_key=["id"])
    store.create_index("t", "ox", ["x"])
    store.create_index("t", "os", ["s"])
    store.create_index("t", "oxs", ["x", "s"])
    data = [(1, 5, "b"), (2, None, "a"), (3, -(2**31), None), (4, 0, ""), (5, None, None),
            (6, 5, None)]
    for row in data:
        t.insert(*row)
    assert [r.x for r in t.index("ox").range()] == [None, None, -(2**31), 0, 5, 5]
    assert [r.x for r in t.index("ox").range(reverse=True)] == [5, 5, 0, -(2**31), None, None]
    assert [r.s for r in t.index("os").range()] == [None, None, None, "", "a", "b"]
    assert [(r.x, r.s) for r in t.index("oxs").range()] == \
        [(None, None), (None, "a"), (-(2**31), None), (0, ""), (5, None), (5, "b")]
    # a bound excludes NULLs (NULL is below every value)
    assert [r.x for r in t.index("ox").range(low=-(2**31))] == [-(2**31), 0, 5, 5]
    assert [r.x for r in t.index("ox").range(high=0)] == [None, None, -(2**31), 0]
    assert [r.s for r in t.index("os").range(low="")] == ["", "a", "b"]


# -- truncate -------------------------------------------------------------------------

def test_truncate_empties_table_and_indexes():
    store = make_people_store()
    t = store.tables["people"]
    for i in range(100):
        t.insert(i, f"p{i}@x", ["oslo", "rome"][i % 2], i % 7, f"note {i}")
    assert t.truncate() == 100
    assert len(t) == 0 and list(t.scan()) == [] and t.scan_rowids() == []
    for ix in t.indexes.values():
        assert len(ix) == 0
    assert t.get(5) is None
    assert t.index("by_email").get("p5@x") is None
    assert t.index("by_city").find("oslo") == []
    assert t.index("by_age").range() == []
    assert t.truncate() == 0
    t.insert(5, "p5@x", "oslo", 1, "note 5")
    assert t.get(5).email == "p5@x"
    assert t.index("by_note").find("note 5") == [t.get(5)]


# -- create_index on a table with rows ------------------------------------------------

def test_create_index_fills_from_existing_rows():
    store, t = kv_table()
    for i in range(1000):
        t.insert(i, f"v{i % 100}", i % 13)
    ix = store.create_index("kv", "by_v", ["v"], ordered=False)
    assert len(ix) == 1000
    assert sorted(r.k for r in ix.find("v7")) == list(range(7, 1000, 100))
    ix2 = store.create_index("kv", "by_n_k", ["n", "k"], unique=True)
    rows = ix2.range()
    assert [(r.n, r.k) for r in rows] == sorted((i % 13, i) for i in range(1000))
    t.insert(1000, "v7", 0)
    assert len(ix.find("v7")) == 11 and len(ix2) == 1001


@pytest.mark.parametrize("ordered", [False, True], ids=["hash", "ordered"])
def test_create_unique_index_on_colliding_rows_is_refused(ordered):
    store, t = kv_table()
    for i in range(50):
        t.insert(i, f"v{i}", i)
    t.update(49, v="v3")
    before = store_state(store)
    with pytest.raises(UniqueViolationError):
        store.create_index("kv", "by_v", ["v"], unique=True, ordered=ordered)
    assert "by_v" not in t.indexes
    assert store_state(store) == before
    t.insert(50, "v3", 0)               # no half-built unique index is enforcing anything
    t.delete(50)
    t.update(49, v="v49")
    ix = store.create_index("kv", "by_v", ["v"], unique=True, ordered=ordered)
    assert ix.get("v49").k == 49 and len(ix) == 50


def test_create_unique_index_over_nulls_is_allowed():
    store, t = kv_table()
    for i in range(5):
        t.insert(i, None, None)
    ix = store.create_index("kv", "by_v", ["v"], unique=True)
    assert len(ix) == 5


def test_drop_table_removes_it():
    store, t = kv_table()
    t.insert(1, "a", 1)
    store.drop("kv")
    assert "kv" not in store.tables
    t2 = store.create_table("kv", [Column("k", T.INTEGER, nullable=False)], primary_key=["k"])
    assert len(t2) == 0 and t2.get(1) is None


# -- tables without a primary key, row ids --------------------------------------------

def heap_table():
    store = Store()
    t = store.create_table("log", [Column("level", T.VARCHAR, 8, nullable=False),
                                   Column("msg", T.VARCHAR, 200),
                                   Column("n", T.INTEGER)])
    store.create_index("log", "by_level", ["level"], ordered=False)
    store.create_index("log", "by_n", ["n"])
    return store, t


def test_table_without_primary_key_by_rowid():
    store, t = heap_table()
    assert t.primary_key is None
    r1 = t.insert_rowid(["info", "hello", 1])
    r2 = t.insert_rowid(["warn", "x" * 150, 2])
    t.insert("info", "hello", 1)        # duplicates are fine without a key
    t.insert(level="error", n=3)
    assert len(t) == 4
    assert t.read(r1) == ("info", "hello", 1)
    assert t.read(r2) == ("warn", "x" * 150, 2)
    assert isinstance(t.read(r1), t.Row)
    rowids = t.scan_rowids()
    assert len(rowids) == 4 and len(set(rowids)) == 4
    assert [t.read(r) for r in rowids] == list(t.scan())
    assert sorted_rows(t.scan()) == sorted_rows([("info", "hello", 1), ("info", "hello", 1),
                                                 ("warn", "x" * 150, 2), ("error", None, 3)])

    new = t.update_rowid(r1, level="debug", n=10)
    assert new == ("debug", "hello", 10) and t.read(r1) == new
    assert [r.msg for r in t.index("by_level").find("debug")] == ["hello"]
    assert len(t.index("by_level").find("info")) == 1
    assert [r.n for r in t.index("by_n").range()] == [1, 2, 3, 10]

    assert t.delete_rowid(r2) == ("warn", "x" * 150, 2)
    with pytest.raises(KeyError):
        t.read(r2)
    assert r2 not in t.scan_rowids() and len(t) == 3
    assert t.index("by_level").find("warn") == []
    assert [r.n for r in t.index("by_n").range()] == [1, 3, 10]
    with pytest.raises(KeyError):
        t.read(10**9)


def test_rowid_of_a_table_with_primary_key():
    store, t = kv_table()
    rid = t.insert_rowid([1, "one", 10])
    assert t.read(rid) == t.get(1) == (1, "one", 10)
    assert t.update_rowid(rid, v="uno") == (1, "uno", 10)
    assert t.get(1).v == "uno"
    with pytest.raises(UniqueViolationError):
        t.insert_rowid([1, "dup", 0])
    assert t.delete_rowid(rid) == (1, "uno", 10)
    assert t.get(1) is None and len(t) == 0
    assert t.indexes["primary_key"].find_rowids(1) == []


# -- column_array ----------------------------------------------------------------------

def test_column_array_follows_scan_order():
    store = Store()
    t = store.create_table("m", [Column("id", T.INTEGER, nullable=False),
                                 Column("x", T.BIGINT, nullable=False),
                                 Column("f", T.FLOAT, nullable=False),
                                 Column("s", T.VARCHAR, 10)], primary_key=["id"])
    for i in range(300):
        t.insert(i, i * 3 - 100, i / 4, f"s{i}" if i % 5 else None)
    for i in range(0, 300, 3):
        t.delete(i)
    for i in range(1000, 1010):
        t.insert(i, i, -1.0, "new")
    rows = list(t.scan())
    ids, xs, fs, ss = (t.column_array(c) for c in ("id", "x", "f", "s"))
    assert ids.dtype == numpy.int64 and xs.dtype == numpy.int64
    assert fs.dtype == numpy.float64 and ss.dtype == object
    assert len(ids) == len(xs) == len(fs) == len(ss) == len(t) == 210
    assert ids.tolist() == [r.id for r in rows]
    assert xs.tolist() == [r.x for r in rows]
    assert fs.tolist() == [r.f for r in rows]
    assert ss.tolist() == [r.s for r in rows]
    assert int(xs.sum()) == sum(r.x for r in rows)


def test_column_array_of_an_empty_table():
    store, t = kv_table()
    assert len(t.column_array("k")) == 0
    assert len(t.column_array("v")) == 0


# -- volume ------------------------------------------------------------------------------

def test_fifty_thousand_rows_grow_and_shrink_every_index():
    n = 50_000
    store = Store()
    t = store.create_table("big", [Column("id", T.BIGINT, nullable=False),
                                   Column("email", T.VARCHAR, 40, nullable=False),
                                   Column("grp", T.INTEGER, nullable=False),
                                   Column("score", T.INTEGER, nullable=False),
                                   Column("name", T.VARCHAR, 30, nullable=False)],
                           primary_key=["id"])
    store.create_index("big", "by_email", ["email"], unique=True, ordered=False)
    store.create_index("big", "by_grp", ["grp"], ordered=False)
    store.create_index("big", "by_score", ["score", "id"])
    store.create_index("big", "by_name", ["name"], unique=True)
    memory_empty = t.memory_bytes
    rng = random.Random(12345)
    ids = list(range(n))
    rng.shuffle(ids)

    def row(i, gen=0):
        return (i * 7919, f"user{i}.{gen}@example.com", i % 101, (i * 37) % 1000,
                f"name-{i:06d}-{gen}")

    for i in ids:
        t.insert(*row(i))
    assert len(t) == n
    assert all(len(ix) == n for ix in t.indexes.values())
    assert t.memory_bytes > memory_empty
    for i in range(0, n, 97):
        assert t.get(i * 7919) == row(i)
        assert t.index("by_email").get(f"user{i}.0@example.com") == row(i)
        assert t.index("by_name").get(f"name-{i:06d}-0") == row(i)
    assert t.get(3) is None
    assert sorted(r.id // 7919 for r in t.index("by_grp").find(42)) == list(range(42, n, 101))
    scores = [(r.score, r.id) for r in t.index("by_score").range()]
    assert scores == sorted(((i * 37) % 1000, i * 7919) for i in range(n))
    names = [r.name for r in t.index("by_name").range(low="name-010000", limit=5)]
    assert names == [f"name-{i:06d}-0" for i in range(10000, 10005)]

    # delete nine rows in ten, in random order
    keep = set(range(0, n, 10))
    doomed = [i for i in ids if i not in keep]
    for i in doomed:
        assert t.delete(i * 7919) == row(i)
    assert len(t) == len(keep)
    assert all(len(ix) == len(keep) for ix in t.indexes.values())
    for i in range(0, n, 7):
        expected = row(i) if i in keep else None
        assert t.get(i * 7919) == expected
        assert t.index("by_email").get(f"user{i}.0@example.com") == expected
        assert t.index("by_name").get(f"name-{i:06d}-0") == expected
    assert sorted(r.id // 7919 for r in t.index("by_grp").find(42)) == \
        sorted(i for i in keep if i % 101 == 42)
    assert [(r.score, r.id) for r in t.index("by_score").range()] == \
        sorted(((i * 37) % 1000, i * 7919) for i in keep)
    assert sorted(r.id // 7919 for r in t.scan()) == sorted(keep)

    # refill the freed slots with new values
    for i in doomed[:20000]:
        t.insert(*row(i, gen=1))
    assert len(t) == len(keep) + 20000
    for i in doomed[:20000:13]:
        assert t.get(i * 7919) == row(i, 1)
        assert t.index("by_email").get(f"user{i}.0@example.com") is None
        assert t.index("by_email").get(f"user{i}.1@example.com") == row(i, 1)
    assert [(r.score, r.id) for r in t.index("by_score").range()] == \
        sorted(((i * 37) % 1000, i * 7919) for i in list(keep) + doomed[:20000])


def test_integer_ordered_index_across_the_whole_bigint_range():
    """An ordered index on one NOT NULL integer column compares integers
    directly: signs, extremes, duplicates, bounds and uniqueness."""

    store = Store()
    t = store.create_table("n", [Column("id", T.INTEGER, nullable=False),
                                 Column("k", T.BIGINT, nullable=False),
                                 Column("u", T.TIMESTAMP, nullable=False)],
                           primary_key=["id"])
    by_k = store.create_index("n", "by_k", ["k"], unique=False)
    by_u = store.create_index("n", "by_u", ["u"], unique=True)
    values = [-2**63, -5, -1, 0, 0, 1, 7, 2**63 - 1]
    for i, k in enumerate(values):
        t.insert(i, k, i * 10 - 30)
    assert [r.k for r in by_k.range()] == sorted(values)
    assert [r.k for r in by_k.range(reverse=True)] == sorted(values, reverse=True)
    assert sorted(r.id for r in by_k.find(0)) == [3, 4]
    assert [r.k for r in by_k.range(-1, 1, low_inclusive=False)] == [0, 0, 1]
    assert [r.k for r in by_k.range(-1, 1, high_inclusive=False)] == [-1, 0, 0]
    assert [r.k for r in by_k.range(2**63 - 1, None, low_inclusive=False)] == []
    assert [r.k for r in by_k.range(None, -2**63)] == [-2**63]
    assert by_k.range(5, -5) == []
    assert [r.k for r in by_k.range(-10, None, limit=2)] == [-5, -1]
    with pytest.raises(UniqueViolationError):
        t.insert(99, 3, -30)
    with pytest.raises(UniqueViolationError):
        t.update(1, u=-30)
    assert by_u.get(-30).id == 0 and len(t) == len(values)
    t.update(0, k=100, u=-31)                   # moves in both indexes
    assert by_k.find(100)[0].id == 0 and by_u.get(-30) is None and by_u.get(-31).id == 0
    store.begin()
    t.delete(7)
    t.update(3, k=-100)
    store.rollback()
    assert [r.k for r in by_k.range()] == sorted([100] + values[1:])


def test_integer_ordered_index_matches_a_sorted_list_through_splits_and_empty_blocks():
    """Thousands of entries, so the index's blocks split and empty out;
    every so often compare scans, ranges and lookups with a plain model."""
    rng = random.Random(5)
    store = Store()
    t = store.create_table("x", [Column("id", T.INTEGER, nullable=False),
                                 Column("k", T.BIGINT, nullable=False)], ["id"])
    by_k = store.create_index("x", "by_k", ["k"])
    model = {}
    for step in range(30_000):
        op = rng.random()
        if op < 0.55 or not model:
            i = rng.randrange(20_000)
            if i not in model:
                model[i] = rng.randrange(-300, 300)
                t.insert(i, model[i])
        elif op < 0.9:
            i = rng.choice(list(model)) if step % 50 == 0 else next(iter(model))
            t.delete(i)
            del model[i]
        else:
            i = rng.choice(list(model))
            model[i] = rng.randrange(-300, 300)
            t.update(i, k=model[i])
        if step % 499 == 0:
            assert [r.k for r in by_k.range()] == sorted(model.values())
            lo, hi = sorted(rng.randrange(-310, 310) for _ in range(2))
            assert [r.k for r in by_k.range(lo, hi, reverse=True)] == \
                sorted((v for v in model.values() if lo <= v <= hi), reverse=True)
            k = rng.randrange(-300, 300)
            assert sorted(r.id for r in by_k.find(k)) == sorted(i for i, v in model.items() if v == k)
    assert len(by_k) == len(model) > 2_000
