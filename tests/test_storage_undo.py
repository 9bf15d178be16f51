"""The undo log: begin/commit/rollback, savepoints, statement atomicity
inside a transaction, and slot reuse around them. Every check compares the
whole observable state (rows, every index's lookups and ordered scans,
view rows) before and after."""

import pytest

from flowstate.errors import (ConstraintError, NotNullError, UniqueViolationError,
                              ValueOutOfRangeError, ValueTooLongError)
from flowstate.native.storage import Store
from flowstate.types import Column, ColumnType as T

from storage_fixtures import (PEOPLE_VIEW_COLUMNS, expected_view_rows, make_people_store,
                              sorted_rows, store_state)

CITIES = ["oslo", "rome", "lima"]
VIEW_AGGS = [("COUNT", None), ("COUNT", "age"), ("SUM", "age"), ("MIN", "age"), ("MAX", "age")]


def person(i, gen=0):
    """Row i of the people table; ``gen`` changes every non-key value."""
    return (i, f"p{i}.{gen}@x", CITIES[(i + gen) % 3], None if i % 5 == 0 else (i * 7 + gen) % 50,
            (f"note {i}.{gen} " * 30)[:250] if i % 2 else f"n{i}.{gen}")


def seeded(n=30):
    store = make_people_store()
    t = store.tables["people"]
    for i in range(n):
        t.insert(*person(i))
    return store, t


def check_view(store):
    rows = list(store.tables["people"].scan())
    assert sorted_rows(store.tables["people_by_city"].scan()) == \
        expected_view_rows(rows, ["city"], VIEW_AGGS)


# -- each kind of write, undone -------------------------------------------------

WRITES = {
    "insert": lambda t: t.insert(*person(100)),
    "insert_named_with_nulls": lambda t: t.insert(id=101, city="oslo"),
    "update_value": lambda t: t.update(3, age=49),
    "update_to_null": lambda t: t.update(3, age=None, email=None, note=None),
    "update_indexed_columns": lambda t: t.update(4, email="new@x", city="lima", note="moved"),
    "update_key": lambda t: t.update(5, id=500),
    "update_everything": lambda t: t.update(7, id=700, email="x@x", city="rome", age=1,
                                            note="y" * 300),
    "update_group_away_from_last_row": lambda t: [t.update(i, city="oslo") for i in range(30)],
    "delete": lambda t: t.delete(9),
    "delete_long_note": lambda t: t.delete(11),
    "upsert_insert": lambda t: t.upsert(*person(200)),
    "upsert_replace": lambda t: t.upsert(*person(12, gen=1)),
    "truncate": lambda t: t.truncate(),
}


@pytest.mark.parametrize("name", list(WRITES))
def test_rollback_undoes_one_write(name):
    store, t = seeded()
    before = store_state(store)
    store.begin()
    assert store.in_transaction
    WRITES[name](t)
    assert store_state(store) != before
    assert store.undo_size > 0
    check_view(store)
    store.rollback()
    assert not store.in_transaction
    assert store_state(store) == before
    check_view(store)


@pytest.mark.parametrize("name", list(WRITES))
def test_commit_keeps_one_write(name):
    store, t = seeded()
    store.begin()
    WRITES[name](t)
    during = store_state(store)
    store.commit()
    assert not store.in_transaction and store.undo_size == 0
    assert store_state(store) == during
    store.begin()                        # a later rollback does not reach back
    t.insert(*person(999))
    store.rollback()
    assert store_state(store) == during


def test_rollback_undoes_a_sequence_in_reverse_order():
    store, t = seeded()
    before = store_state(store)
    store.begin()
    t.insert(*person(100))
    t.update(100, age=1)
    t.update(100, id=101, email="p0.0@y")
    t.delete(0)                          # frees p0.0@x and a long-or-short note
    t.update(101, email="p0.0@x")        # takes the freed unique value
    t.insert(*person(0, gen=1))
    t.upsert(*person(0, gen=2))
    t.upsert(*person(1, gen=2))
    t.delete(101)
    t.insert(*person(100, gen=3))
    for i in range(2, 30, 3):
        t.update(i, age=None if i % 2 else 0, city="lima")
    t.truncate()
    t.insert(*person(5, gen=4))
    t.update(5, id=6)
    check_view(store)
    store.rollback()
    assert store_state(store) == before
    check_view(store)


def test_rollback_across_several_tables():
    store, t = seeded()
    other = store.create_table("kv", [Column("k", T.INTEGER, nullable=False),
                                      Column("v", T.VARCHAR, 50)], primary_key=["k"])
    other.insert(1, "one")
    before = store_state(store)
    store.begin()
    other.insert(2, "two")
    t.update(3, age=0)
    other.update(1, v="uno" * 10)
    t.delete(3)
    other.delete(2)
    t.insert(*person(3, gen=5))
    other.truncate()
    store.rollback()
    assert store_state(store) == before


def test_writes_outside_a_transaction_commit_alone():
    store, t = seeded()
    assert not store.in_transaction and store.undo_size == 0
    t.insert(*person(100))
    t.update(1, age=3)
    t.delete(2)
    assert store.undo_size == 0
    after = store_state(store)
    store.begin()
    store.rollback()
    assert store_state(store) == after


def test_undo_size_grows_and_is_freed():
    store, t = seeded()
    store.begin()
    assert store.undo_size == 0
    t.insert(*person(100))
    n1 = store.undo_size
    assert n1 > 0
    t.update(100, age=2)
    assert store.undo_size > n1
    store.commit()
    assert store.undo_size == 0
    store.begin()
    t.delete(100)
    assert store.undo_size > 0
    store.rollback()
    assert store.undo_size == 0


# -- savepoints ----------------------------------------------------------------------

def test_rollback_to_savepoint_keeps_earlier_changes():
    store, t = seeded()
    store.begin()
    t.insert(*person(100))
    t.update(1, city="lima")
    at_savepoint = store_state(store)
    sp = store.savepoint()
    t.delete(100)
    t.update(1, id=111, age=None)
    t.upsert(*person(2, gen=1))
    t.truncate()
    store.rollback_to(sp)
    assert store.in_transaction
    assert store_state(store) == at_savepoint
    t.insert(*person(101))
    after = store_state(store)
    store.commit()
    assert store_state(store) == after
    assert t.get(100) == person(100) and t.get(101) == person(101)
    assert t.get(1).city == "lima"
    check_view(store)


def test_nested_savepoints():
    store, t = seeded()
    before = store_state(store)
    store.begin()
    s0 = store.savepoint()
    t.update(1, age=11)
    state1 = store_state(store)
    s1 = store.savepoint()
    t.update(1, age=12)
    t.delete(2)
    state2 = store_state(store)
    s2 = store.savepoint()
    t.update(1, age=13, id=1000)
    t.insert(*person(2, gen=9))
    store.rollback_to(s2)
    assert store_state(store) == state2
    store.rollback_to(s1)
    assert store_state(store) == state1
    t.update(3, note="after s1")
    store.rollback_to(s0)
    assert store_state(store) == before
    t.update(4, note="after s0")
    store.rollback()
    assert store_state(store) == before


def test_rollback_after_rollback_to_undoes_everything():
    store, t = seeded()
    before = store_state(store)
    store.begin()
    t.insert(*person(100))
    sp = store.savepoint()
    t.delete(100)
    store.rollback_to(sp)
    t.update(100, age=7)
    store.rollback()
    assert store_state(store) == before


# -- a failed statement inside a transaction ------------------------------------------

FAILING = [
    ("duplicate_key", lambda t: t.insert(*person(3)), UniqueViolationError),
    ("duplicate_email_on_insert", lambda t: t.insert(500, "p1.0@x", "oslo", 1, "n"),
     UniqueViolationError),
    ("duplicate_note_on_update", lambda t: t.update(2, age=40, city="lima", note="n4.0"),
     UniqueViolationError),
    ("key_move_onto_existing", lambda t: t.update(2, id=3, age=1), UniqueViolationError),
    ("upsert_replace_colliding", lambda t: t.upsert(2, "p1.0@x", "lima", 3, "z"),
     UniqueViolationError),
    ("upsert_insert_colliding", lambda t: t.upsert(600, "a@b", "lima", 3, "n4.0"),
     UniqueViolationError),
    ("not_null", lambda t: t.update(2, age=5, city=None), NotNullError),
    ("out_of_range", lambda t: t.update(2, age=2**31), ValueOutOfRangeError),
    ("too_long", lambda t: t.insert(700, "a@b", "oslo", 1, "x" * 301), ValueTooLongError),
]


@pytest.mark.parametrize("name,statement,error", FAILING, ids=[f[0] for f in FAILING])
def test_failed_statement_in_a_transaction_undoes_only_itself(name, statement, error):
    store, t = seeded()
    before = store_state(store)
    store.begin()
    t.insert(*person(100))
    t.update(1, age=33, city="rome")
    t.delete(6)
    mid = store_state(store)
    size = store.undo_size
    with pytest.raises(error):
        statement(t)
    assert store.in_transaction
    assert store_state(store) == mid
    assert store.undo_size == size
    check_view(store)
    t.update(8, age=1)                   # the transaction goes on
    store.rollback()
    assert store_state(store) == before


@pytest.mark.parametrize("name,statement,error", FAILING, ids=[f[0] for f in FAILING])
def test_failed_statement_then_commit_keeps_the_rest(name, statement, error):
    store, t = seeded()
    store.begin()
    t.insert(*person(100))
    t.update(1, age=33)
    mid = store_state(store)
    with pytest.raises(error):
        statement(t)
    store.commit()
    assert store_state(store) == mid


def test_begin_twice_raises_and_keeps_the_open_transaction():
    store, t = seeded()
    before = store_state(store)
    store.begin()
    t.insert(*person(100))
    with pytest.raises(Exception) as info:
        store.begin()
    assert not isinstance(info.value, ConstraintError)
    assert store.in_transaction
    t.insert(*person(101))
    store.rollback()
    assert store_state(store) == before


# -- slot and rowid reuse ---------------------------------------------------------------

def test_slots_freed_by_committed_deletes_are_reused_safely():
    store, t = seeded(200)
    store.begin()
    for i in range(0, 200, 2):
        t.delete(i)
    store.commit()
    for i in range(1000, 1100):         # likely land in the freed slots
        t.insert(*person(i))
    committed = store_state(store)
    store.begin()
    for i in range(1000, 1100, 3):
        t.update(i, age=None, note=f"changed {i}" * 20)
    for i in range(1001, 1100, 3):
        t.delete(i)
    for i in range(1, 200, 4):
        t.update(i, id=i + 5000)
    for i in range(2000, 2050):
        t.insert(*person(i))
    store.rollback()
    assert store_state(store) == committed
    check_view(store)
    for i in range(1000, 1100):
        assert t.get(i) == person(i)
    for i in range(0, 200, 2):
        assert t.get(i) is None


def test_delete_then_insert_in_one_transaction_then_rollback():
    store, t = seeded(50)
    before = store_state(store)
    store.begin()
    for i in range(0, 50, 2):
        t.delete(i)
    for i in range(100, 125):           # a slot freed in this transaction must not be
        t.insert(*person(i, gen=7))     # reused before commit, or rollback corrupts it
    for i in range(0, 50, 4):
        t.insert(*person(i, gen=8))     # the same keys come back with other values
    store.rollback()
    assert store_state(store) == before
    for i in range(50):
        assert t.get(i) == person(i)


def test_insert_delete_insert_same_key_then_rollback():
    store, t = seeded(10)
    before = store_state(store)
    store.begin()
    for gen in range(5):
        t.insert(*person(100, gen))
        t.delete(100)
    t.insert(*person(100, 9))
    t.delete(3)
    t.insert(*person(3, 9))
    t.delete(3)
    t.insert(*person(3, 10))
    store.rollback()
    assert store_state(store) == before
    assert t.get(100) is None and t.get(3) == person(3)


def test_rollback_then_reuse_after_commit():
    store, t = seeded(20)
    store.begin()
    for i in range(20):
        t.delete(i)
    store.rollback()
    store.begin()
    for i in range(0, 20, 2):
        t.delete(i)
    store.commit()
    for i in range(30, 40):
        t.insert(*person(i))
    state = store_state(store)
    assert sorted(r.id for r in t.scan()) == list(range(1, 20, 2)) + list(range(30, 40))
    store.begin()
    t.truncate()
    store.rollback()
    assert store_state(store) == state


def test_rowid_writes_are_undone_in_place():
    store = Store()
    t = store.create_table("log", [Column("level", T.VARCHAR, 8, nullable=False),
                                   Column("msg", T.VARCHAR, 200)])
    store.create_index("log", "by_level", ["level"])
    rowids = [t.insert_rowid(["info", f"m{i}" * (i % 40)]) for i in range(50)]
    before = store_state(store)
    before_rowids = t.scan_rowids()
    store.begin()
    new = t.insert_rowid(["warn", "new"])
    t.update_rowid(rowids[3], level="error", msg="x" * 200)
    t.delete_rowid(rowids[4])
    t.delete_rowid(new)
    t.insert_rowid(["debug", "again"])
    t.update_rowid(rowids[5], msg=None)
    store.rollback()
    assert store_state(store) == before
    assert t.scan_rowids() == before_rowids
    for i, r in enumerate(rowids):
        assert t.read(r) == ("info", f"m{i}" * (i % 40))


def test_view_rows_restored_after_rollback_of_min_max_deletes():
    store = make_people_store()
    t = store.tables["people"]
    for i, age in enumerate([5, 5, 9, 9, 7]):
        t.insert(i, None, "oslo", age, None)
    v = store.tables["people_by_city"]
    assert v.column_names[:len(PEOPLE_VIEW_COLUMNS)] == PEOPLE_VIEW_COLUMNS
    before = store_state(store)
    store.begin()
    for i in range(4):
        t.delete(i)
    assert v.get("oslo") == ("oslo", 1, 1, 7, 7, 7)
    t.delete(4)
    assert v.get("oslo") is None
    store.rollback()
    assert store_state(store) == before
    assert v.get("oslo") == ("oslo", 5, 5, 35, 5, 9)
    t.delete(0)
    t.delete(2)
    assert v.get("oslo") == ("oslo", 3, 3, 21, 5, 9)
