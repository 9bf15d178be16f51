"""The catalog: the tables, indexes, views and procedures of an application.

An application's ``schema.sql`` (DDL in VoltDB's dialect) goes in, frozen
dataclasses come out; the catalog knows nothing about storage:

    schema.sql --Catalog.apply()--> TableDef / IndexDef / ViewDef / ProcedureDef
        --> each partition builds its native tables, indexes and views from them
        --> the router reads how each procedure is partitioned

It is picklable data (no parser objects are kept), so the coordinator can
hand it to the partitions as it is.

Invariants, true after every successful ``apply()``:

1. The keys of ``tables``, ``views``, ``indexes`` and ``procedures`` are
   lower-case names. Tables and views share one namespace; indexes and
   procedures each have their own.
2. Every ``Column.default`` is None or a value valid for its column: right
   Python type, inside the type's range, within the declared length.
3. Primary-key columns and partition columns are NOT NULL.
4. A partitioned table's primary key and UNIQUE indexes include its
   partition column, because uniqueness is only enforced inside one
   partition. ASSUMEUNIQUE indexes are exempt (the application vouches for
   global uniqueness) and are refused on replicated tables, as in VoltDB.
5. A partitioned procedure names a partitioned table and its partition column.
6. Every index and view refers to an existing table and existing columns.

``apply()`` is all-or-nothing: when it raises SchemaError the catalog is as
it was before. Every SchemaError message reads
``<source> line <n>: <first words of the statement>: <what is wrong>``.

DDL accepted (keywords in any case; ``--`` and ``/* */`` comments; each
statement ends with ``;``)::

    CREATE TABLE [IF NOT EXISTS] t ( column-def | table-constraint [, ...] )
      column-def  name type [NOT NULL | NULL] [DEFAULT literal] [PRIMARY KEY]
                  [[CONSTRAINT c] UNIQUE | ASSUMEUNIQUE]
      type        TINYINT | SMALLINT | INT[EGER] | BIGINT | FLOAT | DOUBLE | REAL
                  | DECIMAL[(p[,s])] | NUMERIC[(p[,s])] | TIMESTAMP
                  | VARCHAR[(n [BYTES])] | VARBINARY[(n)]
      table-constraint  [CONSTRAINT c] PRIMARY KEY | UNIQUE | ASSUMEUNIQUE (col, ...)
    CREATE [UNIQUE | ASSUMEUNIQUE] INDEX [IF NOT EXISTS] i ON t [USING HASH | TREE]
           (col, ...) [USING HASH | TREE]
    CREATE VIEW [IF NOT EXISTS] v [(name, ...)] AS
           SELECT g, ..., agg, ... FROM t GROUP BY g, ...
      agg         COUNT(*) | COUNT(col) | SUM(col) | MIN(col) | MAX(col)
    CREATE PROCEDURE [partition-clause] FROM CLASS package.Class
    CREATE PROCEDURE name [partition-clause] AS one-sql-statement
      partition-clause  PARTITION ON TABLE t COLUMN c [PARAMETER n]
    PARTITION TABLE t ON COLUMN c
    PARTITION PROCEDURE name ON TABLE t COLUMN c [PARAMETER n]
    DROP TABLE | VIEW | INDEX | PROCEDURE name [IF EXISTS] [CASCADE]

Choices worth knowing:

* DECIMAL is always DECIMAL(38,12). A declared (p,s) is accepted when every
  value it admits fits that (p <= 38, s <= 12, p - s <= 26) and is then
  forgotten; anything wider is refused rather than silently narrowed.
* DEFAULT takes a literal. VARBINARY defaults are hex strings (VoltDB's
  convention); TIMESTAMP defaults are int microseconds since the epoch or a
  'YYYY-MM-DD[ HH:MM:SS[.ffffff]]' string taken as UTC. DEFAULT NOW and
  CURRENT_TIMESTAMP are refused for now: a default must be a value, and the
  transaction's timestamp is not one until the executor fills it in.
* An index is ordered (a tree, with range scans) unless it is declared
  USING HASH or, by VoltDB's legacy convention, its name contains "hash".
  Indexes made by UNIQUE / ASSUMEUNIQUE constraints are ordered; they live
  and die with their table.
* A partition column must be NOT NULL and an integer, VARCHAR or VARBINARY
  column: the values the router can hash, as in VoltDB.
* Names are lower-cased, quoted ones too (quotes only escape reserved
  words). Procedure names keep their declared case because clients call
  them by it (``Vote``), but they are looked up case-insensitively.
* A view's ``group_by`` lists its group columns in select-list order, so
  ``column_names[i]`` names ``group_by[i]`` and the aggregates follow.
"""

from __future__ import annotations

import dataclasses
import datetime as _dt
import decimal
import os
import re
from dataclasses import dataclass

import sqlglot
from sqlglot import exp
from sqlglot.errors import ParseError, SqlglotError

from flowstate.errors import SchemaError
from flowstate.types import (
    DECIMAL_CONTEXT, DECIMAL_PRECISION, DECIMAL_SCALE, DEFAULT_VALUE_SIZE,
    INTEGER_RANGES, MAX_VALUE_SIZE, Column, ColumnType, parse_type_name,
    timestamp_to_micros,
)

__all__ = ["Catalog", "TableDef", "IndexDef", "ViewDef", "ProcedureDef",
           "ProcedurePartition"]


# -- definitions ------------------------------------------------------------

@dataclass(frozen=True)
class TableDef:
    """A table. ``line`` is where its CREATE TABLE starts."""

    name: str
    columns: list[Column]
    primary_key: tuple[str, ...] | None
    partition_column: str | None
    line: int

    @property
    def is_replicated(self) -> bool:
        return self.partition_column is None

    def column(self, name: str) -> Column | None:
        """The column called ``name`` (any case), or None."""
        name = name.lower()
        return next((c for c in self.columns if c.name == name), None)


@dataclass(frozen=True)
class IndexDef:
    """A secondary index. The primary key is not one (see TableDef).

    ``from_constraint`` marks indexes made by a table's UNIQUE or
    ASSUMEUNIQUE constraint: they are dropped with the table and cannot be
    dropped alone. ``assume_unique`` indexes are unique per partition and
    exempt from the partition-column rule.
    """

    name: str
    table: str
    columns: tuple[str, ...]
    unique: bool
    ordered: bool
    line: int
    assume_unique: bool = False
    from_constraint: bool = False


@dataclass(frozen=True)
class ViewDef:
    """A materialized view: group columns of one table, then aggregates.

    ``aggregates`` holds (function, source column) pairs with the function
    upper-case; COUNT(*) is ("COUNT", None).
    """

    name: str
    source: str
    column_names: tuple[str, ...]
    group_by: tuple[str, ...]
    aggregates: tuple[tuple[str, str | None], ...]
    line: int


@dataclass(frozen=True)
class ProcedurePartition:
    """A procedure runs on the partition owning ``parameter``'s value of
    ``table.column``."""

    table: str
    column: str
    parameter: int = 0


@dataclass(frozen=True)
class ProcedureDef:
    """A procedure: a class (``class_path``) or one SQL statement (``sql``)."""

    name: str
    class_path: str | None
    sql: str | None
    partition: ProcedurePartition | None
    line: int


# -- reading a script into statements ----------------------------------------

_TOKEN_RE = re.compile(r"""
    (?P<space>\s+)
  | (?P<comment>--[^\n]*|/\*.*?\*/)
  | (?P<string>'(?:[^']|'')*')
  | (?P<quoted>"(?:[^"]|"")*")
  | (?P<number>(?:\d+\.?\d*|\.\d+)(?:[eE][+-]?\d+)?)
  | (?P<word>[A-Za-z_][A-Za-z0-9_$]*)
  | (?P<unterminated>/\*|'|")
  | (?P<punct>.)
""", re.VERBOSE | re.DOTALL)


@dataclass(frozen=True)
class _Token:
    kind: str      # word, quoted, string, number or punct
    text: str      # as written
    start: int     # offsets into the script
    end: int
    line: int

    @property
    def upper(self) -> str:
        return self.text.upper() if self.kind == "word" else ""

    @property
    def name(self) -> str:
        """The token as an identifier: unquoted and lower-cased."""
        if self.kind == "quoted":
            return self.text[1:-1].replace('""', '"').lower()
        return self.text.lower()


# Words that make up a statement's kind; the head of a statement is these
# plus the first name after them, e.g. "CREATE TABLE votes".
_HEAD_KEYWORDS = {
    "CREATE", "DROP", "PARTITION", "ALTER", "UNIQUE", "ASSUMEUNIQUE", "INDEX",
    "TABLE", "VIEW", "PROCEDURE", "STREAM", "IF", "NOT", "EXISTS", "OR",
    "REPLACE", "ON", "FROM", "CLASS", "TEMPORARY",
}


class _Statement:
    """One statement of a script, located for error messages."""

    def __init__(self, script: str, tokens: list[_Token], source: str):
        self.script = script
        self.tokens = tokens
        self.source = source
        self.line = tokens[0].line
        self.text = script[tokens[0].start:tokens[-1].end]
        self.head = _head(tokens)

    def error(self, message: str, line: int | None = None) -> SchemaError:
        return SchemaError(f"{self.source} line {line or self.line}: "
                           f"{self.head}: {message}")

    def node_line(self, node: exp.Expression | None) -> int:
        """The script line of a parsed node, if sqlglot recorded it."""
        meta = node.meta if node is not None else {}
        rel = meta.get("line") if meta else None
        return self.line + rel - 1 if rel else self.line

    def rewritten(self, replace: dict[int, str]) -> str:
        """The text with tokens (by index) replaced, padded to the token's
        width so that sqlglot's lines and columns still match the script."""
        base = self.tokens[0].start
        out = list(self.text)
        for i, new in replace.items():
            tok = self.tokens[i]
            width = tok.end - tok.start
            assert len(new) <= width
            out[tok.start - base:tok.end - base] = new.ljust(width)
        return "".join(out)


def _head(tokens: list[_Token]) -> str:
    words = []
    for i, tok in enumerate(tokens[:8]):
        if tok.upper in _HEAD_KEYWORDS:
            words.append(tok.upper)
            continue
        name = tok.text
        rest = tokens[i + 1:]
        while len(rest) >= 2 and rest[0].text == "." and rest[1].kind in ("word", "quoted"):
            name += "." + rest[1].text
            rest = rest[2:]
        words.append(name)
        break
    return " ".join(words)


def _split_statements(script: str, source: str = "schema.sql") -> list[_Statement]:
    """Tokenize a DDL script and cut it into statements at each ``;``."""
    statements, current, line = [], [], 1
    for m in _TOKEN_RE.finditer(script):
        kind, text = m.lastgroup, m.group()
        if kind == "unterminated":
            what = "comment" if text == "/*" else "quoted string"
            raise SchemaError(f"{source} line {line}: unterminated {what}")
        if kind not in ("space", "comment"):
            if kind == "punct" and text == ";":
                if current:
                    statements.append(_Statement(script, current, source))
                current = []
            else:
                current.append(_Token(kind, text, m.start(), m.end(), line))
        line += text.count("\n")
    if current:
        statements.append(_Statement(script, current, source))
    return statements


class _Cursor:
    """Reads a VoltDB-only statement (PARTITION, CREATE PROCEDURE, DROP)."""

    def __init__(self, st: _Statement, start: int = 0):
        self.st, self.i = st, start

    def peek(self) -> _Token | None:
        return self.st.tokens[self.i] if self.i < len(self.st.tokens) else None

    def _found(self) -> str:
        tok = self.peek()
        return f"found {tok.text!r}" if tok else "found the end of the statement"

    def accept(self, *words: str) -> bool:
        """Consume ``words`` if the statement continues with them."""
        toks = self.st.tokens[self.i:self.i + len(words)]
        if [t.upper for t in toks] == list(words):
            self.i += len(words)
            return True
        return False

    def expect(self, *words: str) -> None:
        for word in words:
            if not self.accept(word):
                raise self.st.error(f"expected {word}, {self._found()}")

    def _take(self, kinds: tuple[str, ...], what: str) -> _Token:
        tok = self.peek()
        if tok is None or tok.kind not in kinds or (kinds == ("number",)
                                                     and not tok.text.isdigit()):
            raise self.st.error(f"expected {what}, {self._found()}")
        self.i += 1
        return tok

    def name(self, what: str) -> str:
        return self._take(("word", "quoted"), what).name

    def integer(self, what: str) -> int:
        return int(self._take(("number",), what).text)

    def dotted(self, what: str) -> str:
        """A dotted name such as a Python class path, case kept."""
        parts = [self._take(("word",), what).text]
        while self.accept_punct("."):
            parts.append(self._take(("word",), what).text)
        return ".".join(parts)

    def accept_punct(self, char: str) -> bool:
        if self.peek() is not None and self.peek().text == char:
            self.i += 1
            return True
        return False

    def end(self) -> None:
        if self.peek() is not None:
            raise self.st.error(f"unexpected {self.peek().text!r}")


# -- column types and defaults -----------------------------------------------

_SIZED = (ColumnType.VARCHAR, ColumnType.VARBINARY)
_PARTITIONABLE = (*INTEGER_RANGES, *_SIZED)
_NUMERIC = (*INTEGER_RANGES, ColumnType.FLOAT, ColumnType.DECIMAL)
_DECIMAL_LIMIT = decimal.Decimal(10) ** (DECIMAL_PRECISION - DECIMAL_SCALE)
_DECIMAL_QUANTUM = decimal.Decimal(1).scaleb(-DECIMAL_SCALE)


def _column_type(st: _Statement, col: str, dtype: exp.DataType, line: int):
    """(ColumnType, size, size_in_bytes) of a parsed column type."""
    def fail(msg):
        return st.error(f"column {col!r}: {msg}", line)

    if dtype.this == exp.DataType.Type.USERDEFINED:
        spelled = str(dtype.args.get("kind") or "?").upper()
    else:
        spelled = dtype.this.name
    try:
        ctype = parse_type_name(spelled)
    except ValueError:
        raise fail(f"unknown type {spelled!r}; Flowstate types are "
                   + ", ".join(t.name for t in ColumnType)) from None
    params = dtype.expressions
    if ctype in _SIZED:
        if len(params) > 1:
            raise fail(f"{ctype.name} takes one size")
        if not params:
            return ctype, DEFAULT_VALUE_SIZE, False
        unit = params[0].args.get("expression")
        in_bytes = unit is not None
        if in_bytes and (ctype != ColumnType.VARCHAR or unit.name.upper() != "BYTES"):
            raise fail(f"unexpected {unit.name!r} in the size of {ctype.name}")
        size = _int_param(params[0])
        if size is None or not 1 <= size <= MAX_VALUE_SIZE:
            raise fail(f"{ctype.name} size must be an integer from 1 to {MAX_VALUE_SIZE}")
        return ctype, size, in_bytes
    if ctype == ColumnType.DECIMAL and params:
        p = _int_param(params[0])
        s = _int_param(params[1]) if len(params) == 2 else 0
        if len(params) > 2 or p is None or s is None or not (
                1 <= p <= DECIMAL_PRECISION and 0 <= s <= min(p, DECIMAL_SCALE)
                and p - s <= DECIMAL_PRECISION - DECIMAL_SCALE):
            raise fail(f"DECIMAL({', '.join(x.sql() for x in params)}) does not fit "
                       f"Flowstate's DECIMAL({DECIMAL_PRECISION},{DECIMAL_SCALE}): at most "
                       f"{DECIMAL_SCALE} digits after the point and "
                       f"{DECIMAL_PRECISION - DECIMAL_SCALE} before it")
    elif params:
        raise fail(f"{ctype.name} takes no size or precision")
    return ctype, 0, False


def _int_param(param: exp.Expression) -> int | None:
    value = param.this if isinstance(param, exp.DataTypeParam) else param
    if isinstance(value, exp.Literal) and not value.is_string and value.this.isdigit():
        return int(value.this)
    return None


def _default_value(col: Column, node: exp.Expression):
    """The Python value of a DEFAULT clause; ValueError says what is wrong."""
    while isinstance(node, exp.Paren):
        node = node.this
    if isinstance(node, exp.Null):
        if not col.nullable:
            raise ValueError("DEFAULT NULL on a NOT NULL column")
        return None
    if isinstance(node, (exp.CurrentTimestamp, exp.Anonymous, exp.Column)) and (
            isinstance(node, exp.CurrentTimestamp) or node.name.upper() == "NOW"):
        raise ValueError("DEFAULT NOW / CURRENT_TIMESTAMP is not supported yet; "
                         "set the column from the procedure's transaction timestamp")
    number = None
    if isinstance(node, exp.Neg) and isinstance(node.this, exp.Literal) \
            and not node.this.is_string:
        number = "-" + node.this.this
    elif isinstance(node, exp.Literal) and not node.is_string:
        number = node.this
    string = node.this if isinstance(node, exp.Literal) and node.is_string else None
    if number is None and string is None:
        raise ValueError(f"DEFAULT must be a literal, not {node.sql()!r}")
    shown = number if number is not None else repr(string)
    t = col.type
    if t in INTEGER_RANGES or (t == ColumnType.TIMESTAMP and number is not None):
        if number is None or not re.fullmatch(r"-?\d+", number):
            raise ValueError(f"DEFAULT {shown} is not an integer")
        lo, hi = INTEGER_RANGES.get(t, INTEGER_RANGES[ColumnType.BIGINT])
        if not lo <= int(number) <= hi:
            raise ValueError(f"DEFAULT {shown} is out of range for {t.name} ({lo} to {hi})")
        return int(number)
    if t == ColumnType.FLOAT:
        if number is None or float(number) in (float("inf"), float("-inf")):
            raise ValueError(f"DEFAULT {shown} is not a valid FLOAT")
        return float(number)
    if t == ColumnType.DECIMAL:
        if number is None:
            raise ValueError(f"DEFAULT {shown} is not a number")
        value = decimal.Decimal(number)
        if abs(value) >= _DECIMAL_LIMIT or value != value.quantize(
                _DECIMAL_QUANTUM, context=DECIMAL_CONTEXT):
            raise ValueError(f"DEFAULT {shown} does not fit DECIMAL"
                             f"({DECIMAL_PRECISION},{DECIMAL_SCALE})")
        return value
    if string is None:
        raise ValueError(f"DEFAULT of a {t.name} column must be a quoted string, not {shown}")
    if t == ColumnType.VARCHAR:
        length = len(string.encode()) if col.size_in_bytes else len(string)
        if length > col.size:
            raise ValueError(f"DEFAULT {shown} is longer than {col.sql_type()}")
        return string
    if t == ColumnType.VARBINARY:
        try:
            value = bytes.fromhex(string)
        except ValueError:
            raise ValueError(f"DEFAULT {shown} is not a hex string") from None
        if len(value) > col.size:
            raise ValueError(f"DEFAULT {shown} is longer than {col.sql_type()}")
        return value
    try:  # TIMESTAMP given as a string
        return timestamp_to_micros(_dt.datetime.fromisoformat(string))
    except ValueError:
        raise ValueError(f"DEFAULT {shown} is not a timestamp "
                         "('YYYY-MM-DD HH:MM:SS.ffffff')") from None


# -- the catalog -------------------------------------------------------------

@dataclass(frozen=True)
class _Origin:
    """Where a definition was declared, for errors found by validate()."""

    source: str
    line: int
    head: str

    def error(self, message: str) -> SchemaError:
        return SchemaError(f"{self.source} line {self.line}: {self.head}: {message}")


class Catalog:
    """Tables, indexes, views and procedures of one application."""

    def __init__(self):
        self.tables: dict[str, TableDef] = {}
        self.indexes: dict[str, IndexDef] = {}
        self.views: dict[str, ViewDef] = {}
        self.procedures: dict[str, ProcedureDef] = {}
        # (kind, name) -> where it was declared; kinds are table, index,
        # view, procedure, and "partition" / "procedure partition" for the
        # statements that partition a table or a procedure.
        self._origins: dict[tuple[str, str], _Origin] = {}

    @classmethod
    def from_file(cls, path) -> Catalog:
        """A validated catalog of the DDL script at ``path``."""
        try:
            with open(path, encoding="utf-8") as f:
                text = f.read()
        except (OSError, UnicodeDecodeError) as e:
            raise SchemaError(f"{os.fspath(path)}: cannot read the schema: {e}") from None
        catalog = cls()
        catalog.apply(text, source=os.fspath(path))
        return catalog

    def apply(self, ddl_text: str, source: str = "schema.sql", *,
              validate: bool = True) -> None:
        """Run a DDL script against the catalog, all or nothing.

        With ``validate`` (the default) the cross-statement rules are
        checked at the end, so one script may partition a table after
        creating its indexes. Pass False only to build a schema from
        several scripts, and call validate() after the last.
        """
        saved = (dict(self.tables), dict(self.indexes), dict(self.views),
                 dict(self.procedures), dict(self._origins))
        try:
            for st in _split_statements(ddl_text, source):
                self._execute(st)
            if validate:
                self.validate()
        except BaseException:
            (self.tables, self.indexes, self.views, self.procedures,
             self._origins) = saved
            raise

    # -- lookups ------------------------------------------------------------

    def indexes_of(self, table: str) -> list[IndexDef]:
        return [i for i in self.indexes.values() if i.table == table.lower()]

    def views_of(self, table: str) -> list[ViewDef]:
        return [v for v in self.views.values() if v.source == table.lower()]

    def procedure_partition_type(self, name: str) -> ColumnType | None:
        """The type of the value that routes procedure ``name`` (any case),
        or None when it is not partitioned (runs on all partitions)."""
        proc = self.procedures[name.lower()]
        if proc.partition is None:
            return None
        return self.tables[proc.partition.table].column(proc.partition.column).type

    def view_columns(self, name: str) -> list[Column]:
        """The columns of view ``name``, typed as VoltDB types them: group
        columns as in the table, COUNT as BIGINT NOT NULL, SUM of integers
        as BIGINT, MIN/MAX as their column."""
        view = self.views[name.lower()]
        table = self.tables[view.source]
        columns = [dataclasses.replace(table.column(g), name=n, default=None)
                   for n, g in zip(view.column_names, view.group_by)]
        for n, (func, arg) in zip(view.column_names[len(view.group_by):],
                                  view.aggregates):
            if func == "COUNT":
                columns.append(Column(n, ColumnType.BIGINT, nullable=False))
                continue
            src = table.column(arg)
            ctype = ColumnType.BIGINT if func == "SUM" and src.type in INTEGER_RANGES \
                else src.type
            columns.append(Column(n, ctype, src.size if ctype == src.type else 0,
                                  size_in_bytes=src.size_in_bytes))
        return columns

    # -- cross-statement rules ----------------------------------------------

    def validate(self) -> None:
        """Check the rules that span statements (invariants 4 and 5)."""
        for table in self.tables.values():
            pcol, pk = table.partition_column, table.primary_key
            if pcol is not None and pk is not None and pcol not in pk:
                raise self._origins["partition", table.name].error(
                    f"the primary key ({', '.join(pk)}) of table {table.name!r} (line "
                    f"{table.line}) does not include its partition column {pcol!r}; "
                    "uniqueness is only enforced within a partition")
        for index in self.indexes.values():
            table = self.tables[index.table]
            where = self._origins["index", index.name]
            if index.assume_unique and table.is_replicated:
                raise where.error(
                    f"ASSUMEUNIQUE index {index.name!r} is on replicated table "
                    f"{table.name!r}; use UNIQUE (ASSUMEUNIQUE is for partitioned tables)")
            if (index.unique and not index.assume_unique and not table.is_replicated
                    and table.partition_column not in index.columns):
                raise where.error(
                    f"unique index {index.name!r} ({', '.join(index.columns)}) does not "
                    f"include the partition column {table.partition_column!r} of table "
                    f"{table.name!r}; add it, or declare the index ASSUMEUNIQUE")
        for key, proc in self.procedures.items():
            part = proc.partition
            if part is None:
                continue
            where = self._origins["procedure partition", key]
            table = self.tables.get(part.table)
            if table is None or table.is_replicated:
                why = "does not exist" if table is None else "is not partitioned"
                raise where.error(f"procedure {proc.name} is partitioned on table "
                                  f"{part.table!r}, which {why}")
            if part.column != table.partition_column:
                raise where.error(f"column {part.column!r} is not the partition column "
                                  f"of table {part.table!r} ({table.partition_column!r})")

    # -- statements ---------------------------------------------------------

    def _execute(self, st: _Statement) -> None:
        words = [t.upper for t in st.tokens[:3]]
        if words[1:] in (["UNIQUE", "INDEX"], ["ASSUMEUNIQUE", "INDEX"]):
            del words[1]
        handler = {
            ("CREATE", "TABLE"): self._create_table,
            ("CREATE", "INDEX"): self._create_index,
            ("CREATE", "VIEW"): self._create_view,
            ("CREATE", "PROCEDURE"): self._create_procedure,
            ("PARTITION", "TABLE"): self._partition_table,
            ("PARTITION", "PROCEDURE"): self._partition_procedure,
        }.get(tuple(words[:2]))
        if handler is not None:
            return handler(st)
        if words[0] == "DROP":
            return self._drop(st)
        if words[:2] == ["CREATE", "STREAM"]:
            raise st.error("CREATE STREAM is not supported yet")
        if words[:2] == ["CREATE", "OR"]:
            raise st.error("CREATE OR REPLACE is not supported; DROP, then CREATE")
        raise st.error("unsupported statement; Flowstate's DDL is CREATE TABLE, CREATE "
                       "[UNIQUE | ASSUMEUNIQUE] INDEX, CREATE VIEW, CREATE PROCEDURE, "
                       "PARTITION TABLE, PARTITION PROCEDURE and DROP")

    def _parse(self, st: _Statement, text: str) -> exp.Expression:
        """Parse with sqlglot, turning its errors into SchemaErrors."""
        try:
            tree = sqlglot.parse_one(text)
        except ParseError as e:
            info = e.errors[0] if e.errors else {}
            line = st.line + info.get("line", 1) - 1
            near = info.get("highlight")
            msg = info.get("description") or str(e)
            raise st.error(f"syntax error: {msg}" + (f" near {near!r}" if near else ""),
                           line) from None
        except SqlglotError as e:
            raise st.error(f"syntax error: {e}") from None
        if not isinstance(tree, exp.Create):
            raise st.error("syntax error: statement not understood")
        return tree

    def _relation_name(self, st: _Statement, table: exp.Expression) -> str:
        if not isinstance(table, exp.Table) or not table.name:
            raise st.error("expected a table name")
        if table.args.get("db") or table.args.get("catalog"):
            raise st.error("qualified names (schema.table) are not supported")
        return table.name.lower()

    def _check_new_relation(self, st: _Statement, name: str) -> None:
        if name in self.tables or name in self.views:
            kind = "table" if name in self.tables else "view"
            where = self._origins[kind, name]
            raise st.error(f"a {kind} named {name!r} already exists "
                           f"({where.source} line {where.line})")

    def _create_table(self, st: _Statement) -> None:
        # sqlglot does not know ASSUMEUNIQUE: it reads UNIQUE in its place,
        # and we remember which UNIQUEs (by position) were ASSUMEUNIQUE.
        replace, assumed, uniques = {}, set(), 0
        for i, tok in enumerate(st.tokens):
            if tok.upper in ("UNIQUE", "ASSUMEUNIQUE"):
                if tok.upper == "ASSUMEUNIQUE":
                    replace[i] = "UNIQUE"
                    assumed.add(uniques)
                uniques += 1
        tree = self._parse(st, st.rewritten(replace))
        schema = tree.this
        if tree.args.get("expression") is not None or not isinstance(schema, exp.Schema):
            raise st.error("CREATE TABLE ... AS SELECT is not supported; "
                           "declare the columns")
        if tree.args.get("properties") or tree.args.get("replace"):
            raise st.error("table options are not supported")
        name = self._relation_name(st, schema.this)
        if tree.args.get("exists") and name in self.tables:
            return
        self._check_new_relation(st, name)

        columns: dict[str, Column] = {}
        defaults: dict[str, tuple[exp.Expression, int]] = {}
        primary_key = None
        unique_sets = []   # (columns, constraint name, assume unique, line)

        def add_unique(cols, cons_name, line):
            # UNIQUEs are met in source order, the order `assumed` counts in.
            unique_sets.append((cols, cons_name, len(unique_sets) in assumed, line))

        def set_primary_key(cols, line):
            nonlocal primary_key
            if primary_key is not None:
                raise st.error("more than one PRIMARY KEY", line)
            primary_key = cols

        for item in schema.expressions:
            line = st.node_line(item.find(exp.Identifier))
            if isinstance(item, exp.ColumnDef):
                cname = item.name.lower()
                if cname in columns:
                    raise st.error(f"column {cname!r} is declared twice", line)
                if item.args.get("kind") is None:
                    raise st.error(f"column {cname!r} has no type", line)
                ctype, size, in_bytes = _column_type(st, cname, item.args["kind"], line)
                nullable = None
                for cons in item.constraints:
                    kind = cons.args.get("kind")
                    if isinstance(kind, exp.NotNullColumnConstraint):
                        allow = bool(kind.args.get("allow_null"))
                        if nullable is not None and nullable != allow:
                            raise st.error(f"column {cname!r} is both NULL and NOT NULL",
                                           line)
                        nullable = allow
                    elif isinstance(kind, exp.PrimaryKeyColumnConstraint):
                        set_primary_key((cname,), line)
                    elif isinstance(kind, exp.UniqueColumnConstraint):
                        add_unique((cname,), cons.name.lower() or None, line)
                    elif isinstance(kind, exp.DefaultColumnConstraint):
                        defaults[cname] = (kind.this, line)
                    else:
                        raise st.error(f"column {cname!r}: unsupported constraint "
                                       f"{cons.sql()!r}", line)
                columns[cname] = Column(cname, ctype, size, nullable is not False,
                                        None, in_bytes)
                continue
            named = isinstance(item, exp.Constraint)
            cons_name = (item.name.lower() or None) if named else None
            for part in item.expressions if named else [item]:
                if isinstance(part, exp.PrimaryKey):
                    set_primary_key(self._column_list(st, part.expressions), line)
                elif isinstance(part, exp.UniqueColumnConstraint):
                    if part.this is None:
                        raise st.error("UNIQUE and ASSUMEUNIQUE need a list of columns", line)
                    add_unique(self._column_list(st, part.this.expressions), cons_name, line)
                else:
                    raise st.error(f"unsupported table constraint {part.sql()!r}", line)
        if not columns:
            raise st.error("a table needs at least one column")
        if assumed and len(unique_sets) != uniques:
            raise st.error("could not place ASSUMEUNIQUE; write it after a column's "
                           "type or as ASSUMEUNIQUE (column, ...)")
        for cols, line in [(primary_key or (), st.line)] + [(u[0], u[3]) for u in unique_sets]:
            unknown = [c for c in cols if c not in columns]
            if unknown:
                raise st.error(f"unknown column {unknown[0]!r} in a key", line)
            if len(set(cols)) != len(cols):
                raise st.error(f"a column is listed twice in key ({', '.join(cols)})", line)

        final = []
        for cname, col in columns.items():
            if primary_key and cname in primary_key:
                col = dataclasses.replace(col, nullable=False)
            if cname in defaults:   # after NOT NULL is settled: DEFAULT NULL needs it
                node, line = defaults[cname]
                try:
                    col = dataclasses.replace(col, default=_default_value(col, node))
                except ValueError as e:
                    raise st.error(f"column {cname!r}: {e}", line) from None
            final.append(col)

        self.tables[name] = TableDef(name, final, primary_key, None, st.line)
        self._origins["table", name] = _Origin(st.source, st.line, st.head)
        for cols, iname, assume, line in unique_sets:
            if iname is None:
                iname = base = f"{name}_{'_'.join(cols)}_{'assume' * assume}unique"
                n = 1
                while iname in self.indexes:
                    n += 1
                    iname = f"{base}_{n}"
            if iname in self.indexes:
                raise st.error(f"an index named {iname!r} already exists", line)
            self.indexes[iname] = IndexDef(iname, name, cols, True, True, line,
                                           assume_unique=assume, from_constraint=True)
            self._origins["index", iname] = _Origin(st.source, line, st.head)

    def _column_list(self, st: _Statement, items) -> tuple[str, ...]:
        names = []
        for item in items:
            if isinstance(item, exp.Ordered):
                if item.args.get("desc"):
                    raise st.error("DESC is not supported in index columns")
                item = item.this
            if not isinstance(item, (exp.Identifier, exp.Column)) or (
                    isinstance(item, exp.Column) and item.table):
                raise st.error(f"expected a column name, found {item.sql()!r}; "
                               "indexes on expressions are not supported")
            names.append(item.name.lower())
        return tuple(names)

    def _create_index(self, st: _Statement) -> None:
        # sqlglot knows neither ASSUMEUNIQUE nor a trailing USING clause:
        # read UNIQUE for the one and strip the other.
        replace, using = {}, None
        assume = st.tokens[1].upper == "ASSUMEUNIQUE"
        if assume:
            replace[1] = "UNIQUE"
        toks = st.tokens
        if len(toks) > 3 and toks[-2].upper == "USING" and toks[-3].text == ")":
            using = toks[-1].upper
            replace[len(toks) - 2] = replace[len(toks) - 1] = ""
        tree = self._parse(st, st.rewritten(replace))
        index = tree.this
        if not isinstance(index, exp.Index) or not index.name:
            raise st.error("expected CREATE INDEX name ON table (column, ...)")
        name = index.name.lower()
        if tree.args.get("exists") and name in self.indexes:
            return
        params = index.args.get("params")
        if params is not None and params.args.get("using") is not None:
            using = params.args["using"].name.upper()
        if using not in (None, "HASH", "TREE", "BTREE"):
            raise st.error(f"unknown index type {using!r}; use HASH or TREE")
        if params is None or not params.args.get("columns"):
            raise st.error("an index needs a list of columns")
        cols = self._column_list(st, params.args["columns"])
        table_name = self._relation_name(st, index.args.get("table"))
        table = self.tables.get(table_name)
        if table is None:
            if table_name in self.views:
                raise st.error(f"indexes on views ({table_name!r}) are not supported yet")
            raise st.error(f"unknown table {table_name!r}")
        for c in cols:
            if table.column(c) is None:
                raise st.error(f"table {table_name!r} has no column {c!r}")
        if len(set(cols)) != len(cols):
            raise st.error("a column is listed twice")
        if name in self.indexes:
            raise st.error(f"an index named {name!r} already exists")
        ordered = using in ("TREE", "BTREE") or (using is None and "hash" not in name)
        unique = bool(tree.args.get("unique"))
        self.indexes[name] = IndexDef(name, table_name, cols, unique, ordered, st.line,
                                      assume_unique=assume)
        self._origins["index", name] = _Origin(st.source, st.line, st.head)

    def _create_view(self, st: _Statement) -> None:
        tree = self._parse(st, st.text)
        target, select = tree.this, tree.args.get("expression")
        declared = None
        if isinstance(target, exp.Schema):
            declared = tuple(e.name.lower() for e in target.expressions)
            target = target.this
        name = self._relation_name(st, target)
        if tree.args.get("exists") and (name in self.views or name in self.tables):
            return
        self._check_new_relation(st, name)
        if not isinstance(select, exp.Select):
            raise st.error("a view must be one SELECT ... FROM table GROUP BY ...")
        for clause in ("where", "joins", "having", "order", "limit", "offset",
                       "distinct", "with"):
            if select.args.get(clause):
                words = {"joins": "JOIN", "order": "ORDER BY"}.get(clause, clause.upper())
                raise st.error(f"{words} is not supported in a view; views are "
                               "SELECT group columns, aggregates FROM one table GROUP BY")
        source = select.args.get("from_") or select.args.get("from")
        if source is None or not isinstance(source.this, exp.Table):
            raise st.error("a view selects FROM exactly one table")
        source_name = self._relation_name(st, source.this)
        table = self.tables.get(source_name)
        if table is None:
            if source_name in self.views:
                raise st.error(f"views of views ({source_name!r}) are not supported")
            raise st.error(f"unknown table {source_name!r}")
        qualifiers = {source_name, (source.this.alias or source_name).lower()}

        def column_of(node: exp.Expression, what: str) -> str:
            if not isinstance(node, exp.Column) or (node.table and
                                                    node.table.lower() not in qualifiers):
                raise st.error(f"{what} must be a column of {source_name!r}, "
                               f"not {node.sql()!r}")
            cname = node.name.lower()
            if table.column(cname) is None:
                raise st.error(f"table {source_name!r} has no column {cname!r}")
            return cname

        group = select.args.get("group")
        if group is None or not group.expressions:
            raise st.error("a view needs GROUP BY (views are grouped aggregates)")
        group_cols = [column_of(g, "GROUP BY item") for g in group.expressions]
        if len(set(group_cols)) != len(group_cols):
            raise st.error("a column is listed twice in GROUP BY")

        names, group_by, aggregates, generated = [], [], [], set()
        for item in select.expressions:
            alias = item.alias.lower() if isinstance(item, exp.Alias) else None
            node = item.this if isinstance(item, exp.Alias) else item
            if isinstance(node, exp.Column):
                cname = column_of(node, "select item")
                if cname not in group_cols:
                    raise st.error(f"column {cname!r} is selected but not in GROUP BY")
                if aggregates:
                    raise st.error(f"group column {cname!r} must come before the aggregates")
                group_by.append(cname)
                names.append(alias or cname)
                continue
            func, arg = self._aggregate(st, node, column_of)
            if func == "SUM" and table.column(arg).type not in _NUMERIC:
                raise st.error(f"SUM of non-numeric column {arg!r} "
                               f"({table.column(arg).sql_type()})")
            aggregates.append((func, arg))
            if alias is None:
                generated.add(len(names))
            names.append(alias or f"{func.lower()}_{arg or 'star'}")
        missing = [g for g in group_cols if g not in group_by]
        if missing:
            raise st.error(f"GROUP BY column {missing[0]!r} must be selected too")
        if declared is not None:
            if len(declared) != len(names):
                raise st.error(f"the view names {len(declared)} columns but selects "
                               f"{len(names)}")
            names = list(declared)
        else:   # a generated name that collides takes its position as suffix
            names = [f"{n}_{i + 1}" if i in generated and names.count(n) > 1
                     and names.index(n) != i else n for i, n in enumerate(names)]
        if len(set(names)) != len(names):
            raise st.error("two view columns have the same name")
        self.views[name] = ViewDef(name, source_name, tuple(names), tuple(group_by),
                                   tuple(aggregates), st.line)
        self._origins["view", name] = _Origin(st.source, st.line, st.head)

    def _aggregate(self, st, node, column_of) -> tuple[str, str | None]:
        funcs = {exp.Count: "COUNT", exp.Sum: "SUM", exp.Min: "MIN", exp.Max: "MAX"}
        func = funcs.get(type(node))
        if func is None:
            if isinstance(node, exp.Func):
                fname = node.name if isinstance(node, exp.Anonymous) else node.sql_name()
                raise st.error(f"unknown function {fname.upper()!r} in a view; views "
                               "support COUNT, SUM, MIN and MAX")
            raise st.error(f"select item {node.sql()!r} is neither a GROUP BY column "
                           "nor an aggregate")
        arg = node.this
        if func == "COUNT" and isinstance(arg, exp.Star):
            return func, None
        if arg is None or node.expressions:
            raise st.error(f"{func} takes one column")
        if isinstance(arg, exp.Distinct):
            raise st.error(f"{func}(DISTINCT ...) is not supported in a view")
        return func, column_of(arg, f"the argument of {func}")

    def _create_procedure(self, st: _Statement) -> None:
        cur = _Cursor(st, 2)
        name = None
        tok = cur.peek()
        if tok is not None and tok.upper not in ("PARTITION", "FROM", "AS"):
            name = cur.dotted("a procedure name")
        partition = self._partition_clause(cur) if cur.accept("PARTITION") else None
        class_path = sql = None
        if cur.accept("FROM", "CLASS"):
            if name is not None:
                raise st.error(f"a procedure FROM CLASS is named after its class; "
                               f"remove {name!r}")
            class_path = cur.dotted("a class name (package.Class)")
            cur.end()
            name = class_path.rsplit(".", 1)[-1]
        elif cur.accept("AS"):
            if name is None or "." in name:
                raise st.error("CREATE PROCEDURE ... AS needs a plain procedure name")
            body = st.tokens[cur.i:]
            if not body:
                raise st.error("AS must be followed by a SQL statement")
            if body[0].upper == "BEGIN":
                raise st.error("multi-statement procedures (AS BEGIN ... END) are not "
                               "supported; write a procedure class")
            sql = st.script[body[0].start:body[-1].end]
        else:
            raise st.error(f"expected FROM CLASS or AS, {cur._found()}")
        key = name.lower()
        if key in self.procedures:
            where = self._origins["procedure", key]
            raise st.error(f"a procedure named {name!r} already exists "
                           f"({where.source} line {where.line})")
        self.procedures[key] = ProcedureDef(name, class_path, sql, partition, st.line)
        self._origins["procedure", key] = _Origin(st.source, st.line, st.head)
        if partition is not None:
            self._origins["procedure partition", key] = self._origins["procedure", key]

    def _partition_clause(self, cur: _Cursor) -> ProcedurePartition:
        """``[PARTITION] ON TABLE t COLUMN c [PARAMETER n]``."""
        cur.expect("ON", "TABLE")
        table = cur.name("a table name")
        cur.expect("COLUMN")
        column = cur.name("a column name")
        parameter = cur.integer("a parameter index (0, 1, ...)") \
            if cur.accept("PARAMETER") else 0
        return ProcedurePartition(table, column, parameter)

    def _partition_procedure(self, st: _Statement) -> None:
        cur = _Cursor(st, 2)
        name = cur.dotted("a procedure name")
        key = name.rsplit(".", 1)[-1].lower()
        partition = self._partition_clause(cur)
        cur.end()
        proc = self.procedures.get(key)
        if proc is None:
            raise st.error(f"unknown procedure {name!r}; declare it first with "
                           "CREATE PROCEDURE")
        if proc.partition is not None:
            raise st.error(f"procedure {proc.name} is already partitioned")
        self.procedures[key] = dataclasses.replace(proc, partition=partition)
        self._origins["procedure partition", key] = _Origin(st.source, st.line, st.head)

    def _partition_table(self, st: _Statement) -> None:
        cur = _Cursor(st, 2)
        name = cur.name("a table name")
        cur.expect("ON", "COLUMN")
        column = cur.name("a column name")
        cur.end()
        table = self.tables.get(name)
        if table is None:
            if name in self.views:
                raise st.error(f"{name!r} is a view; a view is partitioned like its table")
            raise st.error(f"unknown table {name!r}")
        if table.partition_column is not None:
            raise st.error(f"table {name!r} is already partitioned on "
                           f"{table.partition_column!r}")
        col = table.column(column)
        if col is None:
            raise st.error(f"table {name!r} has no column {column!r}")
        if col.nullable:
            raise st.error(f"partition column {column!r} must be declared NOT NULL")
        if col.type not in _PARTITIONABLE:
            raise st.error(f"partition column {column!r} is {col.sql_type()}; it must be "
                           "an integer, VARCHAR or VARBINARY column")
        self.tables[name] = dataclasses.replace(table, partition_column=column)
        self._origins["partition", name] = _Origin(st.source, st.line, st.head)

    def _drop(self, st: _Statement) -> None:
        cur = _Cursor(st, 1)
        tok = cur.peek()
        kind = tok.upper if tok is not None else ""
        if kind == "STREAM":
            raise st.error("streams are not supported yet")
        if kind not in ("TABLE", "VIEW", "INDEX", "PROCEDURE"):
            raise st.error("expected DROP TABLE, VIEW, INDEX or PROCEDURE")
        cur.i += 1
        if_exists = cur.accept("IF", "EXISTS")
        name = cur.dotted("a procedure name") if kind == "PROCEDURE" \
            else cur.name(f"a {kind.lower()} name")
        if_exists = cur.accept("IF", "EXISTS") or if_exists
        cascade = cur.accept("CASCADE")
        cur.end()
        if cascade and kind != "TABLE":
            raise st.error("CASCADE only applies to DROP TABLE")
        key = (name.rsplit(".", 1)[-1] if kind == "PROCEDURE" else name).lower()
        if key not in self._registry(kind.lower()):
            if if_exists:
                return
            other = {"TABLE": "view", "VIEW": "table"}.get(kind)
            hint = f"; it is a {other}: use DROP {other.upper()}" \
                if other and key in self._registry(other) else ""
            raise st.error(f"unknown {kind.lower()} {name!r}{hint}")
        if kind == "TABLE":
            views = [v.name for v in self.views_of(key)]
            indexes = [i.name for i in self.indexes_of(key) if not i.from_constraint]
            if (views or indexes) and not cascade:
                used = [f"view {v}" for v in views] + [f"index {i}" for i in indexes]
                raise st.error(f"table {key!r} is used by {', '.join(used)}; drop them "
                               "first or use DROP TABLE ... CASCADE")
            for v in views:
                self._forget("view", v)
            for index in self.indexes_of(key):
                self._forget("index", index.name)
            self._origins.pop(("partition", key), None)
        elif kind == "INDEX" and self.indexes[key].from_constraint:
            raise st.error(f"index {key!r} implements a UNIQUE constraint of table "
                           f"{self.indexes[key].table!r}; it goes with the table")
        self._forget(kind.lower(), key)

    def _registry(self, kind: str) -> dict:
        return {"table": self.tables, "view": self.views, "index": self.indexes,
                "procedure": self.procedures}[kind]

    def _forget(self, kind: str, key: str) -> None:
        self._registry(kind).pop(key)
        self._origins.pop((kind, key), None)
        if kind == "procedure":
            self._origins.pop(("procedure partition", key), None)
