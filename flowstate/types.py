"""Column types: the one definition of what a Flowstate column can hold.

This is a leaf module (it imports nothing from Flowstate) shared by the
catalog, the storage engine, result tables and, later, the wire format.

Each type has a fixed numeric code. The codes are persisted (snapshots,
catalogs) and sent on the wire, so they never change and are never reused.

    code  type        Python value                 stored as
    ----  ----------  ---------------------------  ------------------------------
       1  TINYINT     int  -128 .. 127             1 byte
       2  SMALLINT    int  -32768 .. 32767         2 bytes
       3  INTEGER     int  -2**31 .. 2**31-1       4 bytes
       4  BIGINT      int  -2**63 .. 2**63-1       8 bytes
       5  FLOAT       float (IEEE double)          8 bytes
       6  DECIMAL     decimal.Decimal, 38 digits   16 bytes (int128 scaled by
                      of precision, 12 after the   10**12), as VoltDB does
                      point
       7  VARCHAR(n)  str, at most n characters    UTF-8; inline when short
                      (n bytes with `n BYTES`)
       8  VARBINARY(n) bytes, at most n bytes      inline when short
       9  TIMESTAMP   datetime (UTC) or int        8 bytes: microseconds since
                      microseconds since epoch     1970-01-01 00:00 UTC

Every type admits NULL (Python None) unless the column is NOT NULL.
"""

from __future__ import annotations

import datetime as _dt
import decimal as _decimal
from dataclasses import dataclass
from enum import IntEnum

__all__ = [
    "ColumnType", "Column", "TYPE_NAMES", "INTEGER_RANGES",
    "DECIMAL_PRECISION", "DECIMAL_SCALE", "MAX_VALUE_SIZE", "EPOCH",
    "timestamp_to_micros", "micros_to_timestamp", "parse_type_name",
]


class ColumnType(IntEnum):
    """Fixed type codes. Persisted and sent on the wire: never renumber."""

    TINYINT = 1
    SMALLINT = 2
    INTEGER = 3
    BIGINT = 4
    FLOAT = 5
    DECIMAL = 6
    VARCHAR = 7
    VARBINARY = 8
    TIMESTAMP = 9


TYPE_NAMES = {t: t.name for t in ColumnType}

#: Inclusive value ranges of the integer types.
INTEGER_RANGES = {
    ColumnType.TINYINT: (-(2**7), 2**7 - 1),
    ColumnType.SMALLINT: (-(2**15), 2**15 - 1),
    ColumnType.INTEGER: (-(2**31), 2**31 - 1),
    ColumnType.BIGINT: (-(2**63), 2**63 - 1),
}

#: DECIMAL is fixed-point with 38 significant digits, 12 of them after the
#: decimal point (VoltDB's DECIMAL). Values with more fractional digits are
#: refused rather than silently rounded.
DECIMAL_PRECISION = 38
DECIMAL_SCALE = 12

#: Largest declared size of a VARCHAR or VARBINARY column, in bytes
#: (VoltDB's limit is 1 MiB as well).
MAX_VALUE_SIZE = 1024 * 1024

#: Default declared size of VARCHAR / VARBINARY when DDL gives none.
DEFAULT_VALUE_SIZE = 256

EPOCH = _dt.datetime(1970, 1, 1, tzinfo=_dt.timezone.utc)

_SYNONYMS = {
    "TINYINT": ColumnType.TINYINT,
    "SMALLINT": ColumnType.SMALLINT,
    "INT": ColumnType.INTEGER,
    "INTEGER": ColumnType.INTEGER,
    "BIGINT": ColumnType.BIGINT,
    "FLOAT": ColumnType.FLOAT,
    "DOUBLE": ColumnType.FLOAT,
    "REAL": ColumnType.FLOAT,
    "DECIMAL": ColumnType.DECIMAL,
    "NUMERIC": ColumnType.DECIMAL,
    "VARCHAR": ColumnType.VARCHAR,
    "VARBINARY": ColumnType.VARBINARY,
    "TIMESTAMP": ColumnType.TIMESTAMP,
}


def parse_type_name(name: str) -> ColumnType:
    """Map a SQL type name (any case, common synonyms) to its ColumnType."""
    try:
        return _SYNONYMS[name.upper()]
    except KeyError:
        raise ValueError(f"unknown column type {name!r}; known types: "
                         + ", ".join(t.name for t in ColumnType)) from None


@dataclass(frozen=True)
class Column:
    """One column of a table, view or result table.

    ``size`` is the declared length of VARCHAR (characters, or bytes when
    ``size_in_bytes``) and VARBINARY (bytes); 0 for the other types.
    ``default`` is a Python value already valid for the column, or None.
    """

    name: str
    type: ColumnType
    size: int = 0
    nullable: bool = True
    default: object = None
    size_in_bytes: bool = False

    def sql_type(self) -> str:
        """The column's type as DDL spells it, e.g. ``VARCHAR(2)``."""
        if self.type in (ColumnType.VARCHAR, ColumnType.VARBINARY):
            unit = " BYTES" if self.size_in_bytes and self.type == ColumnType.VARCHAR else ""
            return f"{self.type.name}({self.size}{unit})"
        if self.type == ColumnType.DECIMAL:
            return f"DECIMAL({DECIMAL_PRECISION},{DECIMAL_SCALE})"
        return self.type.name


def timestamp_to_micros(value) -> int:
    """A TIMESTAMP parameter as microseconds since the epoch.

    Accepts an int (already microseconds) or a datetime; a naive datetime is
    taken to be UTC.
    """
    if isinstance(value, int) and not isinstance(value, bool):
        return value
    if isinstance(value, _dt.datetime):
        if value.tzinfo is None:
            value = value.replace(tzinfo=_dt.timezone.utc)
        delta = value - EPOCH
        return (delta.days * 86_400 + delta.seconds) * 1_000_000 + delta.microseconds
    raise TypeError(f"expected a datetime or int microseconds, got {type(value).__name__}")


def micros_to_timestamp(micros: int) -> _dt.datetime:
    """Microseconds since the epoch as a UTC-aware datetime."""
    return EPOCH + _dt.timedelta(microseconds=micros)


# Exact decimal context wide enough for any DECIMAL(38,12) arithmetic.
DECIMAL_CONTEXT = _decimal.Context(prec=80, traps=[_decimal.InvalidOperation])
