"""Table handles for multi-partition procedures: each statement becomes
fragments sent to the partitions that hold the rows.

A multi-partition procedure runs in the coordinator with ``self.db`` made
of FanoutTables. They offer the Table API a procedure uses (get, insert,
upsert, update, delete, truncate, scan, column_array, len, index(...)
with get/find/range/len) and turn each call into fragments:

  * partitioned table, the partitioning value known (in the row, or in the
    key of an index that contains the partitioning column): one fragment
    to its owner;
  * partitioned table otherwise: one fragment to every partition, results
    combined (rows concatenated, ranges merged in index order, counts
    summed, the first row found);
  * replicated table: reads from partition 0 (every copy is the same),
    writes to every partition.
  * a view grouped by other columns than the partitioning one holds a
    partial row per group in each partition: reads merge them (COUNT and
    SUM add up, MIN and MAX compare), so the procedure sees whole groups.

Views follow their source table's partitioning. Rows come back as the
table's Row namedtuples, as in a single-partition procedure.

Invariant: a write never moves a row to another partition; an update of
a partitioning column is refused with a ConstraintError.
"""

from __future__ import annotations

import types

from flowstate.errors import ConstraintError
from flowstate.server.partition import build_store

__all__ = ["FanoutDatabase", "FanoutTable", "FanoutIndex", "fanout_database"]


class _Sorter:
    """Orders index keys that may hold None (NULL sorts first)."""

    __slots__ = ("key",)

    def __init__(self, key):
        self.key = key

    def __lt__(self, other):
        for a, b in zip(self.key, other.key):
            if a == b:
                continue
            if a is None:
                return True
            if b is None:
                return False
            return a < b
        return False


class FanoutTable:
    def __init__(self, cluster, table, partition_column: str | None, replicated: bool,
                 view_aggregates=None):
        self._cluster = cluster
        self.name = table.name
        self.columns = table.columns
        self.column_names = table.column_names
        self.primary_key = table.primary_key
        self.Row = table.Row
        self.is_view = table.is_view
        self._index_columns = {name: index.columns for name, index in table.indexes.items()}
        self.partition_column = partition_column
        self.replicated = replicated
        self._column_position = (table.column_names.index(partition_column)
                                 if partition_column is not None else None)
        # A partitioned view whose groups span partitions: every partition
        # holds a partial row per group; reads merge them into one.
        self._merge = None
        if view_aggregates is not None and not replicated and partition_column is None:
            groups = len(table.column_names) - len(view_aggregates)
            self._merge = (groups, tuple(function for function, _ in view_aggregates))

    # -- where a statement goes -------------------------------------------

    def _owner_of_key(self, columns, key):
        """The partition owning ``key`` of an index on ``columns``, or None."""
        if (self.replicated or columns is None or self.partition_column is None
                or self.partition_column not in columns):
            return None
        position = columns.index(self.partition_column)
        if len(columns) == 1:
            value = key[0] if isinstance(key, (tuple, list)) and len(key) == 1 else key
        elif isinstance(key, (tuple, list)) and position < len(key):
            value = key[position]
        else:
            return None
        if value is None:
            return 0
        return self._cluster.topology.partition_of(value)

    def _row(self, values):
        return None if values is None else self.Row._make(values)

    def _rows(self, rows):
        make = self.Row._make
        return [make(r) for r in rows]

    def _read(self, op, args):
        """A read of a replicated table: partition 0 answers."""
        return self._cluster.fragment(0, self.name, op, args)

    def _write_all(self, op, args):
        """A write of a replicated table: every copy; partition 0's result."""
        return self._cluster.broadcast(self.name, op, args)[0]

    # -- the Table API --------------------------------------------------------

    def __len__(self):
        if self.replicated:
            return self._read("len", [])
        if self._merge is not None:
            return len(self._merged([r for part in self._cluster.broadcast(self.name, "scan", [])
                                     for r in part]))
        return sum(self._cluster.broadcast(self.name, "len", []))

    def get(self, key):
        if self.replicated:
            return self._row(self._read("get", [key]))
        owner = self._owner_of_key(self.primary_key, key)
        if owner is not None:
            return self._row(self._cluster.fragment(owner, self.name, "get", [key]))
        found = [r for r in self._cluster.broadcast(self.name, "get", [key]) if r is not None]
        if self._merge is not None:
            found = self._merged(found)
        return self._row(found[0]) if found else None

    def _merged(self, rows):
        """Partial view rows from several partitions -> one row per group."""
        groups, functions = self._merge
        merged: dict = {}
        for row in rows:
            key = tuple(row[:groups])
            into = merged.get(key)
            if into is None:
                merged[key] = list(row)
                continue
            for i, function in enumerate(functions, start=groups):
                a, b = into[i], row[i]
                if b is None:
                    continue
                if a is None:
                    into[i] = b
                elif function in ("COUNT", "SUM"):
                    into[i] = a + b
                elif function == "MIN":
                    into[i] = min(a, b)
                else:
                    into[i] = max(a, b)
        return list(merged.values())

    def _insert(self, op, values, named):
        if self.replicated:
            return self._write_all(op, [list(values), named])
        position = self._column_position
        if position is None:
            return self._cluster.fragment(0, self.name, op, [list(values), named])
        if position < len(values):
            value = values[position]
        else:
            value = named.get(self.partition_column)
        owner = 0 if value is None else self._cluster.topology.partition_of(value)
        return self._cluster.fragment(owner, self.name, op, [list(values), named])

    def insert(self, *values, **named):
        return self._insert("insert", values, named)

    def upsert(self, *values, **named):
        return self._insert("upsert", values, named)

    def update(self, key, **changes):
        if self.partition_column is not None and self.partition_column in changes:
            raise ConstraintError(f"{self.name}.{self.partition_column} partitions the table: "
                                  f"an update cannot change it (delete and insert instead)")
        return self._keyed("update", key, [key, changes])

    def delete(self, key):
        return self._keyed("delete", key, [key])

    def _keyed(self, op, key, args):
        if self.replicated:
            return self._row(self._write_all(op, args))
        owner = self._owner_of_key(self.primary_key, key)
        if owner is not None:
            return self._row(self._cluster.fragment(owner, self.name, op, args))
        for found in self._cluster.broadcast(self.name, op, args):
            if found is not None:
                return self._row(found)
        return None

    def truncate(self):
        if self.replicated:
            return self._write_all("truncate", [])
        return sum(self._cluster.broadcast(self.name, "truncate", []))

    def scan(self):
        if self.replicated:
            return iter(self._rows(self._read("scan", [])))
        rows = []
        for part in self._cluster.broadcast(self.name, "scan", []):
            rows.extend(part)
        if self._merge is not None:
            rows = self._merged(rows)
        return iter(self._rows(rows))

    def column_array(self, name):
        import numpy
        if self.replicated:
            return numpy.asarray(self._read("column_array", [name]))
        parts = [numpy.asarray(p) for p in self._cluster.broadcast(self.name, "column_array", [name])]
        return numpy.concatenate(parts) if parts else numpy.asarray([])

    def index(self, name):
        name = name.lower()
        if name not in self._index_columns:
            raise KeyError(f"{self.name} has no index named {name!r}")
        return FanoutIndex(self, name, self._index_columns[name])


class FanoutIndex:
    def __init__(self, table: FanoutTable, name: str, columns):
        self.table = table
        self.name = name
        self.columns = columns

    def _owner(self, key):
        return self.table._owner_of_key(self.columns, key)

    def _ask(self, op, key, args):
        table = self.table
        cluster = table._cluster
        if table.replicated:
            return [cluster.fragment(0, table.name, op, args)]
        owner = self._owner(key) if key is not None else None
        if owner is not None:
            return [cluster.fragment(owner, table.name, op, args)]
        return cluster.broadcast(table.name, op, args)

    def __len__(self):
        if self.table._merge is not None:
            return len(self.range())
        return sum(self._ask("index_len", None, [self.name]))

    def get(self, key):
        found = [r for r in self._ask("index_get", key, [self.name, key]) if r is not None]
        if self.table._merge is not None:
            found = self.table._merged(found)
        return self.table._row(found[0]) if found else None

    def find(self, key):
        rows = []
        for part in self._ask("index_find", key, [self.name, key]):
            rows.extend(part)
        if self.table._merge is not None:
            rows = self.table._merged(rows)
        return self.table._rows(rows)

    def range(self, low=None, high=None, **options):
        table = self.table
        merge = table._merge is not None
        limit = options.get("limit")
        asked = dict(options)
        if merge:
            # a partition's first N partial groups are not the first N merged ones
            asked.pop("limit", None)
        parts = self._ask("index_range", None, [self.name, low, high, asked])
        rows = [r for part in parts for r in part]
        if merge:
            rows = table._merged(rows)
        rows = table._rows(rows)
        if len(parts) > 1:
            names = table.column_names
            positions = [names.index(c) for c in self.columns]
            rows.sort(key=lambda r: _Sorter([r[p] for p in positions]),
                      reverse=bool(options.get("reverse")))
            if limit is not None:
                rows = rows[:limit]
        return rows


class FanoutDatabase(types.SimpleNamespace):
    """``self.db`` of a multi-partition procedure."""


def fanout_database(catalog, cluster) -> FanoutDatabase:
    """FanoutTables for every table and view of ``catalog``; ``cluster``
    sends the fragments (``fragment``, ``broadcast``, ``topology``)."""
    store = build_store(catalog)          # empty: for row types and index columns only
    tables = {}
    for name, table in store.tables.items():
        if name in catalog.tables:
            replicated = catalog.tables[name].is_replicated
            partition_column = catalog.tables[name].partition_column
        else:
            view = catalog.views[name]
            source_column = catalog.tables[view.source].partition_column
            replicated = source_column is None
            # A view's rows live with its source's rows; its key routes only
            # when the partitioning column is one of its group-by columns.
            partition_column = None
            if source_column is not None and source_column in view.group_by:
                partition_column = table.column_names[view.group_by.index(source_column)]
        aggregates = None if name in catalog.tables else catalog.views[name].aggregates
        tables[name] = FanoutTable(cluster, table, partition_column, replicated, aggregates)
    return FanoutDatabase(**tables)
