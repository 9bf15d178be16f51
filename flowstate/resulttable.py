"""Result tables: the typed tables a procedure may return.

A leaf module shared by procedures, the server and the client driver. A
procedure returns any msgpack value, or one or several ``ResultTable``s
when the caller wants named, typed columns (VoltDB's VoltTable).

Wire form (version 1), a msgpack map:

    {"columns": [name, ...], "types": [type code, ...], "rows": [[v, ...], ...]}

Type codes are flowstate.types.ColumnType; values are msgpack values,
DECIMAL and TIMESTAMP values as the protocol's ext types 2 and 3
(flowstate.protocol), rows as arrays.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence

from flowstate.types import ColumnType, parse_type_name

__all__ = ["ResultTable"]


class ResultTable:
    """Rows under named, typed columns. Iterating yields tuples."""

    __slots__ = ("columns", "types", "rows")

    def __init__(self, columns: Sequence, rows: Iterable[Sequence] = ()):
        """``columns``: (name, type) pairs, where type is a ColumnType or its
        name (``"BIGINT"``), or the ``columns`` of a Table to copy."""
        names, types = [], []
        for col in columns:
            if hasattr(col, "type") and hasattr(col, "name"):
                name, kind = col.name, col.type
            else:
                name, kind = col
            names.append(str(name).lower())
            types.append(kind if isinstance(kind, ColumnType) else parse_type_name(str(kind)))
        self.columns = tuple(names)
        self.types = tuple(types)
        self.rows = [tuple(r) for r in rows]
        for r in self.rows:
            if len(r) != len(self.columns):
                raise ValueError(f"a result row has {len(r)} values for {len(self.columns)} columns")

    def __len__(self) -> int:
        return len(self.rows)

    def __iter__(self):
        return iter(self.rows)

    def __getitem__(self, i):
        return self.rows[i]

    def __eq__(self, other):
        return (isinstance(other, ResultTable) and self.columns == other.columns
                and self.types == other.types and self.rows == other.rows)

    def __repr__(self):
        return f"<ResultTable {self.columns} {len(self.rows)} rows>"

    def as_dicts(self) -> list[dict]:
        return [dict(zip(self.columns, r)) for r in self.rows]

    def column(self, name: str) -> list:
        i = self.columns.index(name.lower())
        return [r[i] for r in self.rows]

    def format(self) -> str:
        """The table as aligned text, for terminals and logs."""
        cells = [list(self.columns)] + [["NULL" if v is None else str(v) for v in r] for r in self.rows]
        widths = [max(len(row[i]) for row in cells) for i in range(len(self.columns))]
        lines = ["  ".join(c.ljust(w) for c, w in zip(cells[0], widths)),
                 "  ".join("-" * w for w in widths)]
        for row in cells[1:]:
            lines.append("  ".join(c.rjust(w) if t not in (ColumnType.VARCHAR, ColumnType.VARBINARY)
                                   else c.ljust(w) for c, w, t in zip(row, widths, self.types)))
        return "\n".join(lines)
