"""The storage engine against a plain-Python model of the same table.

Hypothesis runs random sequences of insert / update (key and indexed
columns included) / delete / upsert / truncate / begin / savepoint /
rollback_to / commit / rollback on one table with

    a TINYINT NOT NULL, b SMALLINT NOT NULL       primary key (a, b) or (a)
    u INTEGER NULL                                by_u: unique, ordered
    h VARCHAR(2) NOT NULL                         by_h: non-unique, hash
    o INTEGER NULL                                by_ob: non-unique, ordered on (o, b)
    g VARCHAR(1) NOT NULL, v INTEGER NULL
    view mv:  g, COUNT(*), COUNT(v), SUM(v), MIN(v), MAX(v) GROUP BY g
    view mv2: g, h, COUNT(*), MIN(o), MAX(o)                GROUP BY g, h

and after every step compares everything observable with the model: rows,
primary-key lookups, every index's find / get / full ordered scan, random
range scans, and both views. Value domains are tiny so that keys and
unique values collide often; a few values are invalid (out of range, NULL
in a NOT NULL column, too long, wrong type) so that refused writes are
exercised too. An expected error must happen in the engine and the model
alike, and a refused write must leave no trace.
"""

from __future__ import annotations

import collections

from hypothesis import HealthCheck, settings, strategies as st
from hypothesis.stateful import (RuleBasedStateMachine, invariant, precondition, rule)

from flowstate.errors import (ConstraintError, NotNullError, TypeMismatchError,
                              UniqueViolationError, ValueOutOfRangeError, ValueTooLongError)
from flowstate.native.storage import Store
from flowstate.types import Column, ColumnType as T

from storage_fixtures import expected_view_rows, null_first, sorted_rows

COLUMNS = ("a", "b", "u", "h", "o", "g", "v")
MRow = collections.namedtuple("MRow", COLUMNS)

MV_AGGS = [("COUNT", None), ("COUNT", "v"), ("SUM", "v"), ("MIN", "v"), ("MAX", "v")]
MV2_AGGS = [("COUNT", None), ("MIN", "o"), ("MAX", "o")]

A_VALID = list(range(4))
B_VALID = list(range(3))
U_VALID = [None, 0, 1, 2, 3, 4, 5]
H_VALID = ["x", "y", "z"]
O_VALID = [None, 0, 1, 2, 3]
G_VALID = ["p", "q"]
V_VALID = [None, -3, -1, 0, 1, 2, 3]

# mostly valid values; the odd one out is refused by the engine
A_ST = st.sampled_from(A_VALID * 3 + [200])                   # TINYINT out of range
B_ST = st.sampled_from(B_VALID)
U_ST = st.sampled_from(U_VALID * 2 + ["1"])                   # str into INTEGER
H_ST = st.sampled_from(H_VALID * 4 + [None, "abc"])           # NOT NULL, VARCHAR(2)
O_ST = st.sampled_from(O_VALID)
G_ST = st.sampled_from(G_VALID)
V_ST = st.sampled_from(V_VALID)
ROW_ST = st.builds(MRow, A_ST, B_ST, U_ST, H_ST, O_ST, G_ST, V_ST)
CHANGES_ST = st.fixed_dictionaries({}, optional={
    "a": A_ST, "b": B_ST, "u": U_ST, "h": H_ST, "o": O_ST, "g": G_ST, "v": V_ST})


def value_errors(values: dict) -> set:
    """The error classes the engine may raise for these column values."""
    errors = set()
    if "a" in values and not -128 <= values["a"] <= 127:
        errors.add(ValueOutOfRangeError)
    if "u" in values and isinstance(values["u"], str):
        errors.add(TypeMismatchError)
    if "h" in values:
        if values["h"] is None:
            errors.add(NotNullError)
        elif len(values["h"]) > 2:
            errors.add(ValueTooLongError)
    return errors


def sort_key(key):
    parts = key if isinstance(key, tuple) else (key,)
    return tuple(null_first(p) for p in parts)


def in_range(key, low, high, low_inclusive, high_inclusive):
    """Whether ``key`` (a tuple) lies within prefix bounds (tuples or None)."""
    if low is not None:
        c = _cmp(sort_key(key[:len(low)]), sort_key(low))
        if c < 0 or (c == 0 and not low_inclusive):
            return False
    if high is not None:
        c = _cmp(sort_key(key[:len(high)]), sort_key(high))
        if c > 0 or (c == 0 and not high_inclusive):
            return False
    return True


def _cmp(x, y):
    return (x > y) - (x < y)


class StorageModel(RuleBasedStateMachine):
    """Subclasses set PK (the primary key columns)."""

    PK: tuple = ()

    def __init__(self):
        super().__init__()
        self.store = Store()
        self.t = self.store.create_table("m", [
            Column("a", T.TINYINT, nullable=False),
            Column("b", T.SMALLINT, nullable=False),
            Column("u", T.INTEGER),
            Column("h", T.VARCHAR, 2, nullable=False),
            Column("o", T.INTEGER),
            Column("g", T.VARCHAR, 1, nullable=False),
            Column("v", T.INTEGER),
        ], primary_key=list(self.PK))
        self.store.create_index("m", "by_u", ["u"], unique=True, ordered=True)
        self.store.create_index("m", "by_h", ["h"], unique=False, ordered=False)
        self.store.create_index("m", "by_ob", ["o", "b"], unique=False, ordered=True)
        # one NOT NULL integer column: served by the integer-keyed ordered index
        self.store.create_index("m", "by_b", ["b"], unique=False, ordered=True)
        self.store.create_view("mv", "m", ["g"], MV_AGGS,
                               column_names=["g", "n", "nv", "s", "lo", "hi"])
        self.store.create_view("mv2", "m", ["g", "h"], MV2_AGGS,
                               column_names=["g", "h", "n", "lo", "hi"])
        self.rows: dict = {}              # primary key -> MRow
        self.tx_start = None              # model rows at begin(), or None
        self.savepoints: list = []        # (engine savepoint, model rows)

    # -- model helpers ---------------------------------------------------------

    def pk_of(self, row):
        key = tuple(getattr(row, c) for c in self.PK)
        return key[0] if len(key) == 1 else key

    def all_keys(self):
        if len(self.PK) == 1:
            return list(A_VALID)
        return [(a, b) for a in A_VALID for b in B_VALID]

    def u_taken(self, u, except_pk):
        return u is not None and any(r.u == u for k, r in self.rows.items() if k != except_pk)

    def expect(self, call, errors, result_check):
        """Run ``call``; if ``errors`` is non-empty it must raise one of them."""
        if errors:
            try:
                result = call()
            except ConstraintError as e:
                assert type(e) in errors, f"raised {type(e).__name__}: {e}; expected {errors}"
                return False
            raise AssertionError(f"expected one of {errors}, got {result!r}")
        result_check(call())
        return True

    # -- writes ----------------------------------------------------------------

    @rule(row=ROW_ST)
    def insert(self, row):
        errors = value_errors(row._asdict())
        if not errors:
            if self.pk_of(row) in self.rows or self.u_taken(row.u, None):
                errors = {UniqueViolationError}
        if self.expect(lambda: self.t.insert(*row), errors, lambda r: None):
            self.rows[self.pk_of(row)] = row

    @rule(row=ROW_ST, by_name=st.booleans())
    def upsert(self, row, by_name):
        errors = value_errors(row._asdict())
        pk = self.pk_of(row)
        if not errors and self.u_taken(row.u, pk):
            errors = {UniqueViolationError}
        existed = pk in self.rows

        def call():
            return self.t.upsert(**row._asdict()) if by_name else self.t.upsert(*row)

        def check(result):
            assert result is (not existed)

        if self.expect(call, errors, check):
            self.rows[pk] = row

    @rule(key=st.data(), changes=CHANGES_ST)
    def update(self, key, changes):
        key = key.draw(st.sampled_from(self.all_keys()), label="key")
        errors = value_errors(changes)
        old = self.rows.get(key)
        if old is None:
            # no such row: None, unless the engine checks the values first
            try:
                result = self.t.update(key, **changes)
            except ConstraintError as e:
                assert type(e) in errors, f"raised {type(e).__name__}: {e}"
                return
            assert result is None
            return
        new = old._replace(**changes)
        new_pk = self.pk_of(new)
        if not errors:
            if (new_pk != key and new_pk in self.rows) or self.u_taken(new.u, key):
                errors = {UniqueViolationError}

        def check(result):
            assert result == new, (result, new)

        if self.expect(lambda: self.t.update(key, **changes), errors, check):
            del self.rows[key]
            self.rows[new_pk] = new

    @rule(key=st.data())
    def delete(self, key):
        key = key.draw(st.sampled_from(self.all_keys()), label="key")
        expected = self.rows.pop(key, None)
        assert self.t.delete(key) == expected

    @rule(roll=st.integers(0, 4))
    def truncate(self, roll):
        if roll:                          # one time in five: keep tables populated
            return
        assert self.t.truncate() == len(self.rows)
        self.rows.clear()

    # -- transactions ---------------------------------------------------------------

    @precondition(lambda self: self.tx_start is None)
    @rule()
    def begin(self):
        self.store.begin()
        self.tx_start = dict(self.rows)
        self.savepoints = []

    @precondition(lambda self: self.tx_start is not None)
    @rule()
    def commit(self):
        self.store.commit()
        self.tx_start = None
        self.savepoints = []

    @precondition(lambda self: self.tx_start is not None)
    @rule()
    def rollback(self):
        self.store.rollback()
        self.rows = self.tx_start
        self.tx_start = None
        self.savepoints = []

    @precondition(lambda self: self.tx_start is not None)
    @rule()
    def savepoint(self):
        self.savepoints.append((self.store.savepoint(), dict(self.rows)))

    @precondition(lambda self: self.savepoints)
    @rule(data=st.data())
    def rollback_to(self, data):
        i = data.draw(st.integers(0, len(self.savepoints) - 1), label="savepoint")
        token, rows = self.savepoints[i]
        self.store.rollback_to(token)
        self.rows = dict(rows)
        del self.savepoints[i + 1:]       # later savepoints are gone; this one stays

    # -- range scans with random bounds -------------------------------------------

    def check_range(self, index_name, columns, low, high, low_inclusive, high_inclusive,
                    reverse, limit):
        def as_tuple(b):
            return None if b is None else (b if isinstance(b, tuple) else (b,))

        lo, hi = as_tuple(low), as_tuple(high)
        matching = [r for r in self.rows.values()
                    if in_range(tuple(getattr(r, c) for c in columns), lo, hi,
                                low_inclusive, high_inclusive)]
        matching.sort(key=lambda r: sort_key(tuple(getattr(r, c) for c in columns)),
                      reverse=reverse)
        if limit >= 0:
            expected_keys = [tuple(getattr(r, c) for c in columns) for r in matching][:limit]
        else:
            expected_keys = [tuple(getattr(r, c) for c in columns) for r in matching]
        got = self.t.index(index_name).range(low, high, low_inclusive=low_inclusive,
                                             high_inclusive=high_inclusive,
                                             reverse=reverse, limit=limit)
        assert [tuple(getattr(r, c) for c in columns) for r in got] == expected_keys, \
            (index_name, low, high, low_inclusive, high_inclusive, reverse, limit)
        pool = sorted_rows(matching)
        for r in got:                      # ties cut by the limit: any of them
            assert tuple(r) in pool
            pool.remove(tuple(r))
        if limit < 0:
            assert pool == []

    @rule(low=st.sampled_from([None] + U_VALID[1:] + [-1, 6]),
          high=st.sampled_from([None] + U_VALID[1:] + [-1, 6]),
          low_inclusive=st.booleans(), high_inclusive=st.booleans(),
          reverse=st.booleans(), limit=st.sampled_from([-1, -1, 0, 1, 3]))
    def range_by_u(self, low, high, low_inclusive, high_inclusive, reverse, limit):
        self.check_range("by_u", ("u",), low, high, low_inclusive, high_inclusive,
                         reverse, limit)

    @rule(low=st.one_of(st.none(), st.sampled_from(O_VALID[1:]),
                        st.tuples(st.sampled_from(O_VALID[1:]), st.sampled_from(B_VALID))),
          high=st.one_of(st.none(), st.sampled_from(O_VALID[1:]),
                         st.tuples(st.sampled_from(O_VALID[1:]), st.sampled_from(B_VALID))),
          low_inclusive=st.booleans(), high_inclusive=st.booleans(),
          reverse=st.booleans(), limit=st.sampled_from([-1, -1, 0, 1, 3]))
    def range_by_ob(self, low, high, low_inclusive, high_inclusive, reverse, limit):
        self.check_range("by_ob", ("o", "b"), low, high, low_inclusive, high_inclusive,
                         reverse, limit)

    @rule(low=st.one_of(st.none(), st.sampled_from(B_VALID)),
          high=st.one_of(st.none(), st.sampled_from(B_VALID)),
          low_inclusive=st.booleans(), high_inclusive=st.booleans(),
          reverse=st.booleans(), limit=st.sampled_from([-1, -1, 0, 1, 3]))
    def range_by_b(self, low, high, low_inclusive, high_inclusive, reverse, limit):
        self.check_range("by_b", ("b",), low, high, low_inclusive, high_inclusive,
                         reverse, limit)

    # -- everything observable, after every step ----------------------------------------

    @invariant()
    def same_rows(self):
        t = self.t
        assert self.store.in_transaction == (self.tx_start is not None)
        assert len(t) == len(self.rows)
        assert sorted_rows(t.scan()) == sorted_rows(self.rows.values())
        for key in self.all_keys():
            assert t.get(key) == self.rows.get(key), key
        for name, index in t.indexes.items():
            assert len(index) == len(self.rows), name

    @invariant()
    def same_indexes(self):
        rows = list(self.rows.values())
        by_u = self.t.index("by_u")
        for u in U_VALID[1:]:
            want = [r for r in rows if r.u == u]
            assert by_u.find(u) == want
            assert by_u.get(u) == (want[0] if want else None)
        full = by_u.range()
        assert [r.u for r in full] == sorted((r.u for r in rows), key=null_first)
        assert sorted_rows(full) == sorted_rows(rows)
        assert [r.u for r in by_u.range(reverse=True)] == \
            sorted((r.u for r in rows), key=null_first, reverse=True)

        by_h = self.t.index("by_h")
        for h in H_VALID:
            assert sorted_rows(by_h.find(h)) == sorted_rows(r for r in rows if r.h == h)

        by_ob = self.t.index("by_ob")
        full = by_ob.range()
        assert [(r.o, r.b) for r in full] == sorted(((r.o, r.b) for r in rows), key=sort_key)
        assert sorted_rows(full) == sorted_rows(rows)
        for o in O_VALID[1:]:
            got = by_ob.find(o)
            assert [r.b for r in got] == sorted(r.b for r in rows if r.o == o)
            assert sorted_rows(got) == sorted_rows(r for r in rows if r.o == o)
            for b in B_VALID:
                assert sorted_rows(by_ob.find((o, b))) == \
                    sorted_rows(r for r in rows if (r.o, r.b) == (o, b))

    @invariant()
    def same_int_index(self):
        rows = list(self.rows.values())
        by_b = self.t.index("by_b")
        assert [r.b for r in by_b.range()] == sorted(r.b for r in rows)
        assert [r.b for r in by_b.range(reverse=True)] == sorted((r.b for r in rows), reverse=True)
        for b in B_VALID:
            assert sorted_rows(by_b.find(b)) == sorted_rows(r for r in rows if r.b == b)

    @invariant()
    def same_views(self):
        rows = list(self.rows.values())
        mv = self.store.tables["mv"]
        expected = expected_view_rows(rows, ["g"], MV_AGGS)
        assert sorted_rows(mv.scan()) == expected
        assert len(mv) == len(expected)
        by_group = {r[0]: r for r in expected}
        for g in G_VALID:
            got = mv.get(g)
            assert (None if got is None else tuple(got)) == by_group.get(g)
        mv2 = self.store.tables["mv2"]
        expected = expected_view_rows(rows, ["g", "h"], MV2_AGGS)
        assert sorted_rows(mv2.scan()) == expected
        by_group = {r[:2]: r for r in expected}
        for g in G_VALID:
            for h in H_VALID:
                got = mv2.get((g, h))
                assert (None if got is None else tuple(got)) == by_group.get((g, h))


MODEL_SETTINGS = settings(max_examples=120, stateful_step_count=50, deadline=None,
                          suppress_health_check=[HealthCheck.too_slow])


class CompositeKeyModel(StorageModel):
    PK = ("a", "b")


class SingleKeyModel(StorageModel):
    PK = ("a",)


TestCompositeKeyModel = CompositeKeyModel.TestCase
TestCompositeKeyModel.settings = MODEL_SETTINGS
TestSingleKeyModel = SingleKeyModel.TestCase
TestSingleKeyModel.settings = MODEL_SETTINGS
