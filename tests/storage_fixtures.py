"""Table builders and whole-state snapshots for the storage engine tests.

``store_state(store)`` reads everything a user can observe of a store
through the public API (rows, every index's lookups and ordered scans,
view rows) into plain Python values, so a test can say "this failed write
/ this rollback left the store exactly as it was" with one ``==``.

``expected_view_rows`` computes a materialized view from source rows the
slow way (plain Python), for the view and model tests to compare against.
"""

from __future__ import annotations

import math

from flowstate.native.storage import Store
from flowstate.types import Column, ColumnType

__all__ = [
    "null_first", "row_sort_key", "sorted_rows", "key_of", "index_state",
    "table_state", "store_state", "expected_view_rows", "make_people_store",
    "PEOPLE_VIEW_COLUMNS",
]


def null_first(value):
    """Sort key putting None before every value (SQL NULLS FIRST)."""
    if value is None:
        return (0, 0)
    if isinstance(value, float) and math.isnan(value):
        return (2, 0)
    return (1, value)


def row_sort_key(row):
    return tuple(null_first(v) for v in row)


def sorted_rows(rows):
    """Rows as plain tuples in a canonical order (for multiset comparison)."""
    return sorted((tuple(r) for r in rows), key=row_sort_key)


def key_of(row, columns):
    """The index key of ``row``: a bare value for one column, else a tuple."""
    values = tuple(getattr(row, c) for c in columns)
    return values[0] if len(values) == 1 else values


def index_state(index, rows):
    """Everything observable of ``index`` over the table's current ``rows``."""
    state = {"len": len(index), "columns": tuple(index.columns)}
    keys = {key_of(r, index.columns) for r in rows}
    lookups = {}
    for key in keys:
        parts = key if isinstance(key, tuple) else (key,)
        if any(p is None for p in parts):
            continue  # equality lookup of NULL is not part of the contract
        found = index.find(key)
        lookups[key] = sorted_rows(found)
        if index.unique:
            got = index.get(key)
            lookups[("get", key)] = None if got is None else tuple(got)
    state["find"] = lookups
    if index.ordered:
        forward = index.range()
        backward = index.range(reverse=True)
        state["range_keys"] = [key_of(r, index.columns) for r in forward]
        state["range_rows"] = sorted_rows(forward)
        state["reverse_keys"] = [key_of(r, index.columns) for r in backward]
    return state


def table_state(table):
    rows = list(table.scan())
    return {
        "len": len(table),
        "rows": sorted_rows(rows),
        "indexes": {name: index_state(ix, rows) for name, ix in table.indexes.items()},
    }


def store_state(store):
    return {name: table_state(t) for name, t in store.tables.items()}


def expected_view_rows(source_rows, group_by, aggregates):
    """Rows of ``SELECT group_by..., AGG(x)... FROM source GROUP BY group_by``
    as sorted plain tuples, with SQL semantics (aggregates skip NULLs; SUM,
    MIN and MAX of only NULLs are NULL)."""
    groups = {}
    for row in source_rows:
        g = tuple(getattr(row, c) for c in group_by)
        groups.setdefault(g, []).append(row)
    out = []
    for g, members in groups.items():
        values = list(g)
        for func, column in aggregates:
            func = func.upper()
            if func == "COUNT" and column is None:
                values.append(len(members))
                continue
            xs = [getattr(r, column) for r in members if getattr(r, column) is not None]
            if func == "COUNT":
                values.append(len(xs))
            elif not xs:
                values.append(None)
            elif func == "SUM":
                values.append(sum(xs))
            elif func == "MIN":
                values.append(min(xs))
            elif func == "MAX":
                values.append(max(xs))
            else:
                raise ValueError(func)
        out.append(tuple(values))
    return sorted_rows(out)


PEOPLE_VIEW_COLUMNS = ("city", "people", "aged", "total_age", "min_age", "max_age")


def make_people_store():
    """A store with one table of every index kind and a view over it:

    people(id INTEGER PK, email VARCHAR(40) NULL, city VARCHAR(16) NOT NULL,
           age INTEGER NULL, note VARCHAR(300) NULL)
      by_email  unique hash on email
      by_city   non-unique hash on city
      by_age    non-unique ordered on (age, id)
      by_note   unique ordered on note
    people_by_city: city, COUNT(*), COUNT(age), SUM(age), MIN(age), MAX(age)
    """
    store = Store()
    store.create_table("people", [
        Column("id", ColumnType.INTEGER, nullable=False),
        Column("email", ColumnType.VARCHAR, 40),
        Column("city", ColumnType.VARCHAR, 16, nullable=False),
        Column("age", ColumnType.INTEGER),
        Column("note", ColumnType.VARCHAR, 300),
    ], primary_key=["id"])
    store.create_index("people", "by_email", ["email"], unique=True, ordered=False)
    store.create_index("people", "by_city", ["city"], ordered=False)
    store.create_index("people", "by_age", ["age", "id"])
    store.create_index("people", "by_note", ["note"], unique=True)
    store.create_view("people_by_city", "people", ["city"],
                      [("COUNT", None), ("COUNT", "age"), ("SUM", "age"),
                       ("MIN", "age"), ("MAX", "age")],
                      column_names=PEOPLE_VIEW_COLUMNS)
    return store
