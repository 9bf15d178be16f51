"""The catalog: DDL in VoltDB's dialect -> table, index, view and procedure
definitions, and a SchemaError naming the line and statement for every
mistake."""

import decimal
import pathlib
import pickle

import pytest
from hypothesis import HealthCheck, given, settings, strategies as st

from flowstate.errors import SchemaError
from flowstate.server.catalog import (
    Catalog, IndexDef, ProcedureDef, ProcedurePartition, TableDef, ViewDef,
)
from flowstate.types import DEFAULT_VALUE_SIZE, MAX_VALUE_SIZE, Column, ColumnType

VOTER_SCHEMA = pathlib.Path(__file__).parent.parent / "procedures" / "voter" / "schema.sql"


def load(ddl: str) -> Catalog:
    catalog = Catalog()
    catalog.apply(ddl)
    return catalog


def error(ddl: str, catalog: Catalog | None = None) -> str:
    with pytest.raises(SchemaError) as info:
        (catalog or Catalog()).apply(ddl)
    return str(info.value)


def col(catalog: Catalog, table: str, name: str) -> Column:
    return catalog.tables[table].column(name)


# -- the Voter application ----------------------------------------------------

def test_voter_schema_loads():
    c = Catalog.from_file(VOTER_SCHEMA)
    assert list(c.tables) == ["contestants", "area_code_state", "votes"]
    contestants = c.tables["contestants"]
    assert contestants.primary_key == ("contestant_number",)
    assert contestants.is_replicated
    assert contestants.columns == [
        Column("contestant_number", ColumnType.INTEGER, nullable=False),
        Column("contestant_name", ColumnType.VARCHAR, 50, nullable=False),
    ]
    assert c.tables["area_code_state"].columns[0].type == ColumnType.SMALLINT
    votes = c.tables["votes"]
    assert votes.partition_column == "phone_number" and not votes.is_replicated
    assert votes.primary_key is None
    assert [x.name for x in votes.columns] == ["phone_number", "state", "contestant_number"]
    assert c.indexes == {}
    assert c.views["v_votes_by_phone_number"] == ViewDef(
        "v_votes_by_phone_number", "votes", ("phone_number", "num_votes"),
        ("phone_number",), (("COUNT", None),), 33)
    v2 = c.views["v_votes_by_contestant_number_state"]
    assert v2.group_by == ("contestant_number", "state")
    assert v2.column_names == ("contestant_number", "state", "num_votes")
    assert list(c.procedures) == ["initialize", "results", "vote"]
    assert c.procedures["vote"] == ProcedureDef(
        "Vote", "voter.Vote", None, ProcedurePartition("votes", "phone_number", 0), 61)
    assert c.procedures["results"].partition is None
    assert c.procedure_partition_type("VOTE") == ColumnType.BIGINT
    assert c.procedure_partition_type("Initialize") is None
    assert c.tables["votes"].line == 24


def test_catalog_pickles():
    c = Catalog.from_file(VOTER_SCHEMA)
    copy = pickle.loads(pickle.dumps(c))
    assert copy.tables == c.tables and copy.procedures == c.procedures


def test_from_file_names_the_path(tmp_path):
    path = tmp_path / "schema.sql"
    path.write_text("CREATE TABLE t (a INT);\nCREATE TABLE t (b INT);\n")
    with pytest.raises(SchemaError, match=r"schema.sql line 2: CREATE TABLE t: .*already exists"):
        Catalog.from_file(path)
    with pytest.raises(SchemaError, match="cannot read"):
        Catalog.from_file(tmp_path / "missing.sql")


# -- CREATE TABLE: types -------------------------------------------------------

@pytest.mark.parametrize("sql_type, ctype, size", [
    ("TINYINT", ColumnType.TINYINT, 0),
    ("SMALLINT", ColumnType.SMALLINT, 0),
    ("INTEGER", ColumnType.INTEGER, 0),
    ("int", ColumnType.INTEGER, 0),
    ("BIGINT", ColumnType.BIGINT, 0),
    ("FLOAT", ColumnType.FLOAT, 0),
    ("DOUBLE", ColumnType.FLOAT, 0),
    ("REAL", ColumnType.FLOAT, 0),
    ("DECIMAL", ColumnType.DECIMAL, 0),
    ("DECIMAL(38,12)", ColumnType.DECIMAL, 0),
    ("DECIMAL(10)", ColumnType.DECIMAL, 0),
    ("NUMERIC(20, 4)", ColumnType.DECIMAL, 0),
    ("TIMESTAMP", ColumnType.TIMESTAMP, 0),
    ("VARCHAR(40)", ColumnType.VARCHAR, 40),
    ("VARCHAR", ColumnType.VARCHAR, DEFAULT_VALUE_SIZE),
    ("VARBINARY(16)", ColumnType.VARBINARY, 16),
    ("varbinary", ColumnType.VARBINARY, DEFAULT_VALUE_SIZE),
    (f"VARCHAR({MAX_VALUE_SIZE})", ColumnType.VARCHAR, MAX_VALUE_SIZE),
])
def test_column_types(sql_type, ctype, size):
    c = load(f"CREATE TABLE t (x {sql_type});")
    assert col(c, "t", "x") == Column("x", ctype, size)


def test_varchar_bytes():
    c = load("CREATE TABLE t (a VARCHAR(10 BYTES), b VARCHAR(10));")
    assert col(c, "t", "a").size_in_bytes and col(c, "t", "a").size == 10
    assert not col(c, "t", "b").size_in_bytes
    assert col(c, "t", "a").sql_type() == "VARCHAR(10 BYTES)"


@pytest.mark.parametrize("sql_type, message", [
    ("VARCHR(10)", "column 'x': unknown type 'VARCHR'"),
    ("TEXT", "unknown type 'TEXT'"),
    ("GEOGRAPHY", "unknown type 'GEOGRAPHY'"),
    (f"VARCHAR({MAX_VALUE_SIZE + 1})", "VARCHAR size must be an integer from 1"),
    (f"VARBINARY({MAX_VALUE_SIZE + 1})", "VARBINARY size must be"),
    ("VARCHAR(0)", "VARCHAR size must be"),
    ("VARBINARY(4 BYTES)", "unexpected 'BYTES'"),
    ("VARCHAR(4 CHARS)", "unexpected 'CHARS'"),
    ("INT(11)", "INTEGER takes no size"),
    ("TIMESTAMP(3)", "TIMESTAMP takes no size"),
    ("DECIMAL(39,2)", "does not fit Flowstate's DECIMAL(38,12)"),
    ("DECIMAL(38,13)", "DECIMAL(38,12)"),
    ("DECIMAL(38,0)", "26 before it"),
])
def test_bad_column_types(sql_type, message):
    msg = error(f"CREATE TABLE t\n(\n  x {sql_type}\n);")
    assert msg.startswith("schema.sql line 3: CREATE TABLE t: ")
    assert message in msg


# -- CREATE TABLE: constraints and defaults -----------------------------------

def test_null_and_not_null():
    c = load("CREATE TABLE t (a INT NOT NULL, b INT NULL, c INT);")
    assert [x.nullable for x in c.tables["t"].columns] == [False, True, True]
    assert "both NULL and NOT NULL" in error("CREATE TABLE t (a INT NULL NOT NULL);")


def test_primary_key_column_level():
    c = load("CREATE TABLE t (a INT PRIMARY KEY, b INT);")
    assert c.tables["t"].primary_key == ("a",)
    assert not col(c, "t", "a").nullable
    assert c.indexes == {}


def test_primary_key_table_level_makes_columns_not_null():
    c = load("CREATE TABLE t (a INT, b VARCHAR(3), c INT, CONSTRAINT pk PRIMARY KEY (b, a));")
    assert c.tables["t"].primary_key == ("b", "a")
    assert [x.nullable for x in c.tables["t"].columns] == [False, False, True]
    c = load("CREATE TABLE t (a INT, PRIMARY KEY (a));")
    assert c.tables["t"].primary_key == ("a",)


@pytest.mark.parametrize("ddl, message", [
    ("CREATE TABLE t (a INT PRIMARY KEY, b INT, PRIMARY KEY (b));", "more than one PRIMARY KEY"),
    ("CREATE TABLE t (a INT, PRIMARY KEY (z));", "unknown column 'z' in a key"),
    ("CREATE TABLE t (a INT, PRIMARY KEY (a, a));", "listed twice"),
    ("CREATE TABLE t (a INT, UNIQUE (q));", "unknown column 'q'"),
    ("CREATE TABLE t (a INT, b INT, a BIGINT);", "column 'a' is declared twice"),
    ("CREATE TABLE t (a INT CHECK (a > 0));", "unsupported constraint 'CHECK (a > 0)'"),
    ("CREATE TABLE t (a INT, FOREIGN KEY (a) REFERENCES u (a));", "unsupported table constraint"),
    ("CREATE TABLE t (a INT, PRIMARY KEY (a + 1));", "syntax error: Expecting ) near '+'"),
    ("CREATE TABLE t ();", "at least one column"),
    ("CREATE TABLE t AS SELECT 1;", "AS SELECT is not supported"),
    ("CREATE TEMPORARY TABLE t (a INT);", "unsupported statement"),
    ("CREATE TABLE t (a INT) PARTITION BY (a);", "table options are not supported"),
    ("CREATE TABLE s.t (a INT);", "qualified names"),
])
def test_bad_tables(ddl, message):
    msg = error(ddl)
    assert msg.startswith("schema.sql line 1: ")
    assert message in msg


def test_unique_constraints_become_indexes():
    c = load("""
        CREATE TABLE t (
          a INT UNIQUE,
          b INT CONSTRAINT b_is_unique UNIQUE,
          d INT,
          e INT,
          CONSTRAINT de UNIQUE (d, e),
          UNIQUE (e, d)
        );""")
    idx = c.indexes
    assert list(idx) == ["t_a_unique", "b_is_unique", "de", "t_e_d_unique"]
    assert idx["t_a_unique"] == IndexDef("t_a_unique", "t", ("a",), True, True, 3,
                                         assume_unique=False, from_constraint=True)
    assert idx["b_is_unique"].line == 4 and idx["de"].line == 7
    assert idx["de"].columns == ("d", "e") and idx["t_e_d_unique"].columns == ("e", "d")
    assert all(i.ordered and i.unique and i.from_constraint and not i.assume_unique
               for i in idx.values())
    assert [i.name for i in c.indexes_of("T")] == list(idx)


def test_assumeunique_constraints():
    c = load("""
        CREATE TABLE t (
          k INT NOT NULL UNIQUE,
          a INT ASSUMEUNIQUE,
          b INT NOT NULL,
          CONSTRAINT kb UNIQUE (b, k),
          CONSTRAINT ab ASSUMEUNIQUE (a, b),
          assumeunique (b)
        );
        PARTITION TABLE t ON COLUMN k;""")
    kinds = {i.name: (i.unique, i.assume_unique) for i in c.indexes.values()}
    assert kinds == {"t_k_unique": (True, False), "t_a_assumeunique": (True, True),
                     "kb": (True, False), "ab": (True, True),
                     "t_b_assumeunique": (True, True)}
    assert "line 1: CREATE TABLE t: UNIQUE and ASSUMEUNIQUE need a list of columns" in error(
        "CREATE TABLE t (a INT, ASSUMEUNIQUE);")


def test_unique_constraint_names_do_not_collide():
    c = load("CREATE TABLE u (a INT);\nCREATE INDEX t_a_unique ON u (a);\n"
             "CREATE TABLE t (a INT UNIQUE);")
    assert set(c.indexes) == {"t_a_unique", "t_a_unique_2"}
    assert "an index named 'x' already exists" in error(
        "CREATE TABLE t (a INT CONSTRAINT x UNIQUE, b INT CONSTRAINT x UNIQUE);")


@pytest.mark.parametrize("sql_type, default, value", [
    ("TINYINT", "-128", -128),
    ("TINYINT", "127", 127),
    ("SMALLINT", "-32768", -32768),
    ("INTEGER", "2147483647", 2**31 - 1),
    ("BIGINT", "-9223372036854775808", -2**63),
    ("BIGINT", "+5", 5),
    ("INTEGER", "(7)", 7),
    ("FLOAT", "1.5", 1.5),
    ("FLOAT", "-2e3", -2000.0),
    ("FLOAT", "3", 3.0),
    ("DECIMAL", "12.345678901234", decimal.Decimal("12.345678901234")),
    ("DECIMAL", "-7", decimal.Decimal(-7)),
    ("DECIMAL", "99999999999999999999999999.5", decimal.Decimal("99999999999999999999999999.5")),
    ("VARCHAR(5)", "'hello'", "hello"),
    ("VARCHAR(5)", "'it''s'", "it's"),
    ("VARCHAR(2)", "'éé'", "éé"),
    ("VARCHAR(4 BYTES)", "'éé'", "éé"),
    ("VARBINARY(2)", "'0aFF'", b"\x0a\xff"),
    ("TIMESTAMP", "0", 0),
    ("TIMESTAMP", "1700000000000000", 1_700_000_000_000_000),
    ("TIMESTAMP", "'1970-01-02 00:00:00.5'", 86_400_500_000),
    ("TIMESTAMP", "'2000-01-01'", 946_684_800_000_000),
    ("INTEGER", "NULL", None),
])
def test_defaults(sql_type, default, value):
    c = load(f"CREATE TABLE t (x {sql_type} DEFAULT {default});")
    got = col(c, "t", "x").default
    assert got == value and type(got) is type(value)


@pytest.mark.parametrize("decl, message", [
    ("TINYINT DEFAULT 128", "DEFAULT 128 is out of range for TINYINT (-128 to 127)"),
    ("SMALLINT DEFAULT -32769", "out of range for SMALLINT"),
    ("INTEGER DEFAULT 2147483648", "out of range for INTEGER"),
    ("BIGINT DEFAULT 9223372036854775808", "out of range for BIGINT"),
    ("INTEGER DEFAULT 1.5", "DEFAULT 1.5 is not an integer"),
    ("INTEGER DEFAULT '1'", "is not an integer"),
    ("FLOAT DEFAULT 'x'", "not a valid FLOAT"),
    ("FLOAT DEFAULT 1e999", "not a valid FLOAT"),
    ("DECIMAL DEFAULT 0.0000000000001", "does not fit DECIMAL(38,12)"),
    ("DECIMAL DEFAULT 100000000000000000000000000", "does not fit DECIMAL(38,12)"),
    ("DECIMAL DEFAULT 'a'", "is not a number"),
    ("VARCHAR(3) DEFAULT 'abcd'", "longer than VARCHAR(3)"),
    ("VARCHAR(3 BYTES) DEFAULT 'éé'", "longer than VARCHAR(3 BYTES)"),
    ("VARCHAR(3) DEFAULT 12", "must be a quoted string"),
    ("VARBINARY(1) DEFAULT 'abcd'", "longer than VARBINARY(1)"),
    ("VARBINARY(4) DEFAULT 'xyz'", "not a hex string"),
    ("TIMESTAMP DEFAULT 'yesterday'", "not a timestamp"),
    ("TIMESTAMP DEFAULT 1.5", "not an integer"),
    ("TIMESTAMP DEFAULT NOW", "NOW / CURRENT_TIMESTAMP is not supported yet"),
    ("TIMESTAMP DEFAULT NOW()", "not supported yet"),
    ("TIMESTAMP DEFAULT CURRENT_TIMESTAMP", "not supported yet"),
    ("INTEGER DEFAULT 1 + 2", "DEFAULT must be a literal"),
    ("INTEGER NOT NULL DEFAULT NULL", "DEFAULT NULL on a NOT NULL column"),
    ("INTEGER PRIMARY KEY DEFAULT NULL", "DEFAULT NULL on a NOT NULL column"),
])
def test_bad_defaults(decl, message):
    msg = error(f"CREATE TABLE t (\n  ok INT,\n  x {decl}\n);")
    assert msg.startswith("schema.sql line 3: CREATE TABLE t: column 'x': "), msg
    assert message in msg


def test_not_null_column_with_default():
    c = load("CREATE TABLE t (a INT DEFAULT 3 NOT NULL, b VARCHAR(3) NOT NULL DEFAULT 'x');")
    assert col(c, "t", "a") == Column("a", ColumnType.INTEGER, 0, False, 3)
    assert col(c, "t", "b").default == "x" and not col(c, "t", "b").nullable


# -- statements, comments, case -------------------------------------------------

def test_comments_strings_and_multiline_statements():
    c = load("""-- a comment; with a semicolon
/* a block comment;
   over lines */ CREATE TABLE t   -- trailing comment
(
  a VARCHAR(10) DEFAULT 'x;--y/*z*/',  /* inline ; */
  b INT
);

create   table
  U (A int);  CREATE TABLE w (a INT)""")
    assert list(c.tables) == ["t", "u", "w"]
    assert col(c, "t", "a").default == "x;--y/*z*/"
    assert c.tables["t"].line == 3
    assert c.tables["u"].line == 9 and c.tables["u"].columns[0].name == "a"
    assert c.tables["w"].line == 10


def test_names_are_case_insensitive():
    c = load('CREATE TABLE Votes (Phone BIGINT NOT NULL, "State" VARCHAR(2));'
             "PARTITION TABLE VOTES ON COLUMN PHONE;")
    assert c.tables["votes"].partition_column == "phone"
    assert c.tables["votes"].column("STATE") is not None


def test_errors_name_line_and_statement():
    msg = error("CREATE TABLE a (x INT);\n\n\nCREATE TABLE votes (\n  phone INT,\n"
                "  state VARCHR(2)\n);")
    assert msg == ("schema.sql line 6: CREATE TABLE votes: column 'state': unknown type "
                   "'VARCHR'; Flowstate types are TINYINT, SMALLINT, INTEGER, BIGINT, "
                   "FLOAT, DECIMAL, VARCHAR, VARBINARY, TIMESTAMP")


def test_syntax_errors_are_schema_errors_with_the_line():
    msg = error("CREATE TABLE a (x INT);\nCREATE TABLE t (\n  a INT,\n  b INT INT\n);")
    assert msg.startswith("schema.sql line 4: CREATE TABLE t: syntax error"), msg
    msg = error("CREATE TABLE t (a INT NOT NULL")
    assert msg.startswith("schema.sql line 1: CREATE TABLE t: syntax error")
    assert "line 1: CREATE VIEW v: syntax error" in error("CREATE VIEW v AS SELEC a;")


def test_unterminated_strings_and_comments():
    assert error("CREATE TABLE t (a INT);\n/* open") == \
        "schema.sql line 2: unterminated comment"
    assert "line 1: unterminated quoted string" in error("CREATE TABLE t (a VARCHAR DEFAULT 'x);")


@pytest.mark.parametrize("ddl, head", [
    ("ALTER TABLE t ADD COLUMN b INT;", "ALTER TABLE t"),
    ("SELECT * FROM t;", "SELECT"),
    ("CREATE ROLE admin;", "CREATE ROLE"),
    ("CREATE UNIQUE TABLE x (a INT);", "CREATE UNIQUE TABLE x"),
    ("INSERT INTO t VALUES (1);", "INSERT"),
])
def test_unknown_statements(ddl, head):
    msg = error("CREATE TABLE t (a INT);\n" + ddl)
    assert msg.startswith(f"schema.sql line 2: {head}: unsupported statement")


def test_create_stream_is_not_supported_yet():
    msg = error("CREATE STREAM s PARTITION ON COLUMN k (k INT NOT NULL);")
    assert msg == "schema.sql line 1: CREATE STREAM s: CREATE STREAM is not supported yet"


def test_or_replace_is_refused():
    assert "OR REPLACE is not supported" in error("CREATE OR REPLACE VIEW v AS SELECT 1;")


def test_duplicate_names_share_table_and_view_namespace():
    base = "CREATE TABLE t (a INT);\nCREATE VIEW v AS SELECT a, COUNT(*) FROM t GROUP BY a;\n"
    assert "line 3: CREATE TABLE v: a view named 'v' already exists (schema.sql line 2)" \
        in error(base + "CREATE TABLE v (a INT);")
    assert "line 3: CREATE VIEW t: a table named 't' already exists" in error(
        base + "CREATE VIEW t AS SELECT a, COUNT(*) FROM t GROUP BY a;")
    c = load(base + "CREATE TABLE IF NOT EXISTS t (b INT);")
    assert c.tables["t"].columns[0].name == "a"


def test_apply_is_all_or_nothing():
    c = load("CREATE TABLE t (a INT);")
    with pytest.raises(SchemaError):
        c.apply("CREATE TABLE u (a INT);\nDROP TABLE t;\nCREATE TABLE bad (x NOPE);")
    assert list(c.tables) == ["t"]
    c.apply("CREATE TABLE u (a INT);", source="more.sql")
    assert list(c.tables) == ["t", "u"]


# -- indexes --------------------------------------------------------------------

def test_create_index_forms():
    c = load("""
        CREATE TABLE t (a INT NOT NULL, b VARCHAR(8), c INT);
        CREATE INDEX t_ab ON t (a, b);
        CREATE UNIQUE INDEX t_u ON t (c, a);
        CREATE ASSUMEUNIQUE INDEX t_au ON t (c);
        CREATE INDEX t_hash_c ON t (c);
        CREATE INDEX h1 ON t USING HASH (b);
        CREATE UNIQUE INDEX h2 ON t (a) USING HASH;
        CREATE INDEX tree_hash ON t (a) USING TREE;
        CREATE INDEX IF NOT EXISTS t_ab ON t (c);
        PARTITION TABLE t ON COLUMN a;
    """)
    idx = c.indexes
    assert idx["t_ab"] == IndexDef("t_ab", "t", ("a", "b"), False, True, 3)
    assert idx["t_u"].unique and idx["t_u"].ordered and not idx["t_u"].assume_unique
    assert idx["t_au"].unique and idx["t_au"].assume_unique
    assert not idx["t_hash_c"].ordered            # VoltDB's legacy name convention
    assert not idx["h1"].ordered and not idx["h2"].ordered and idx["h2"].unique
    assert idx["tree_hash"].ordered               # an explicit USING wins
    assert not any(i.from_constraint for i in idx.values())


@pytest.mark.parametrize("ddl, message", [
    ("CREATE INDEX i ON nope (a);", "unknown table 'nope'"),
    ("CREATE INDEX i ON t (z);", "table 't' has no column 'z'"),
    ("CREATE INDEX i ON t (a, a);", "listed twice"),
    ("CREATE INDEX i ON t (a + 1);", "indexes on expressions are not supported"),
    ("CREATE INDEX i ON t (a DESC);", "DESC is not supported"),
    ("CREATE INDEX i ON t (a) USING BITMAP;", "unknown index type 'BITMAP'"),
    ("CREATE INDEX i ON v (a);", "indexes on views ('v') are not supported yet"),
    ("CREATE INDEX i ON t (a);\nCREATE INDEX I ON t (b);", "an index named 'i' already exists"),
])
def test_bad_indexes(ddl, message):
    base = ("CREATE TABLE t (a INT, b INT);\n"
            "CREATE VIEW v AS SELECT a, COUNT(*) FROM t GROUP BY a;\n")
    msg = error(base + ddl)
    assert message in msg
    assert msg.startswith(f"schema.sql line {2 + ddl.count(chr(10)) + 1}: CREATE INDEX ")


# -- partitioning ---------------------------------------------------------------

def test_partition_table():
    c = load("CREATE TABLE t (k VARCHAR(20) NOT NULL, v INT);\nPARTITION TABLE t ON COLUMN k;")
    assert c.tables["t"].partition_column == "k"


@pytest.mark.parametrize("ddl, message", [
    ("PARTITION TABLE nope ON COLUMN k;", "unknown table 'nope'"),
    ("PARTITION TABLE t ON COLUMN z;", "table 't' has no column 'z'"),
    ("PARTITION TABLE t ON COLUMN n;", "partition column 'n' must be declared NOT NULL"),
    ("PARTITION TABLE t ON COLUMN f;", "partition column 'f' is FLOAT"),
    ("PARTITION TABLE t ON COLUMN k;\nPARTITION TABLE t ON COLUMN k;", "already partitioned"),
    ("PARTITION TABLE t COLUMN k;", "expected ON, found 'COLUMN'"),
    ("PARTITION TABLE t ON COLUMN k extra;", "unexpected 'extra'"),
    ("PARTITION TABLE t ON COLUMN;", "expected a column name, found the end of the statement"),
])
def test_bad_partition_table(ddl, message):
    msg = error("CREATE TABLE t (k INT NOT NULL, n INT, f FLOAT NOT NULL);\n" + ddl)
    assert message in msg
    assert f"line {1 + ddl.count(chr(10)) + 1}: PARTITION TABLE " in msg


def test_primary_key_must_include_partition_column():
    msg = error("CREATE TABLE t (\n  a INT NOT NULL,\n  b INT NOT NULL,\n  PRIMARY KEY (b)\n);\n"
                "PARTITION TABLE t ON COLUMN a;")
    assert msg.startswith("schema.sql line 6: PARTITION TABLE t: the primary key (b) of "
                          "table 't' (line 1) does not include its partition column 'a'")
    load("CREATE TABLE t (a INT NOT NULL, b INT, PRIMARY KEY (b, a));"
         "PARTITION TABLE t ON COLUMN a;")


def test_unique_indexes_must_include_partition_column_checked_at_the_end():
    base = "CREATE TABLE t (a INT NOT NULL, b INT);\n"
    msg = error(base + "CREATE UNIQUE INDEX ub ON t (b);\nPARTITION TABLE t ON COLUMN a;")
    assert msg.startswith("schema.sql line 2: CREATE UNIQUE INDEX ub: unique index 'ub' (b) "
                          "does not include the partition column 'a'")
    msg = error("CREATE TABLE t (a INT NOT NULL, b INT UNIQUE);\nPARTITION TABLE t ON COLUMN a;")
    assert "line 1: CREATE TABLE t: unique index 't_b_unique'" in msg
    c = load(base + "CREATE UNIQUE INDEX uab ON t (b, a);\n"
             "CREATE ASSUMEUNIQUE INDEX ab ON t (b);\n"
             "PARTITION TABLE t ON COLUMN a;")
    assert set(c.indexes) == {"uab", "ab"}


def test_assumeunique_on_replicated_table_is_refused():
    msg = error("CREATE TABLE t (a INT, b INT);\nCREATE ASSUMEUNIQUE INDEX ab ON t (b);")
    assert msg.startswith("schema.sql line 2: CREATE ASSUMEUNIQUE INDEX ab: ASSUMEUNIQUE "
                          "index 'ab' is on replicated table 't'")
    assert "ASSUMEUNIQUE index 't_b_assumeunique'" in error("CREATE TABLE t (b INT ASSUMEUNIQUE);")


def test_validate_can_be_deferred_across_scripts():
    c = Catalog()
    c.apply("CREATE TABLE t (a INT NOT NULL, b INT UNIQUE);", validate=False)
    c.apply("PARTITION TABLE t ON COLUMN a;", source="two.sql", validate=False)
    with pytest.raises(SchemaError, match=r"^schema.sql line 1: CREATE TABLE t: unique index"):
        c.validate()


# -- procedures -----------------------------------------------------------------

PROC_BASE = "CREATE TABLE votes (phone BIGINT NOT NULL, state VARCHAR(2));\n" \
            "PARTITION TABLE votes ON COLUMN phone;\n"


def test_procedure_forms():
    c = load(PROC_BASE + """
        CREATE PROCEDURE FROM CLASS app.procs.Initialize;
        CREATE PROCEDURE PARTITION ON TABLE votes COLUMN phone FROM CLASS voter.Vote;
        CREATE PROCEDURE PARTITION ON TABLE Votes COLUMN Phone PARAMETER 2 FROM CLASS voter.Two;
        CREATE PROCEDURE FROM CLASS voter.Old;
        PARTITION PROCEDURE Old ON TABLE votes COLUMN phone;
        CREATE PROCEDURE FROM CLASS voter.Older;
        PARTITION PROCEDURE voter.Older ON TABLE votes COLUMN phone PARAMETER 1;
        CREATE PROCEDURE CountState AS SELECT COUNT(*) FROM votes
            WHERE state = ?;
        CREATE PROCEDURE Upsert PARTITION ON TABLE votes COLUMN phone AS
            UPSERT INTO votes VALUES (?, ?);
    """)
    p = c.procedures
    assert list(p) == ["initialize", "vote", "two", "old", "older", "countstate", "upsert"]
    assert p["initialize"] == ProcedureDef("Initialize", "app.procs.Initialize", None, None, 4)
    assert p["vote"].partition == ProcedurePartition("votes", "phone", 0)
    assert p["two"].partition == ProcedurePartition("votes", "phone", 2)
    assert p["old"].partition == ProcedurePartition("votes", "phone", 0)
    assert p["older"].partition.parameter == 1
    assert p["countstate"].sql == "SELECT COUNT(*) FROM votes\n            WHERE state = ?"
    assert p["countstate"].class_path is None and p["countstate"].partition is None
    assert p["upsert"].sql == "UPSERT INTO votes VALUES (?, ?)"
    assert c.procedure_partition_type("upsert") == ColumnType.BIGINT


@pytest.mark.parametrize("ddl, message", [
    ("CREATE PROCEDURE FROM CLASS a.B;\nCREATE PROCEDURE FROM CLASS c.b;",
     "a procedure named 'b' already exists (schema.sql line 3)"),
    ("PARTITION PROCEDURE Nope ON TABLE votes COLUMN phone;", "unknown procedure 'Nope'"),
    ("CREATE PROCEDURE FROM CLASS a.B;\nPARTITION PROCEDURE B ON TABLE votes COLUMN phone;\n"
     "PARTITION PROCEDURE B ON TABLE votes COLUMN phone;", "already partitioned"),
    ("CREATE PROCEDURE X FROM CLASS a.B;", "named after its class; remove 'X'"),
    ("CREATE PROCEDURE AS SELECT 1;", "needs a plain procedure name"),
    ("CREATE PROCEDURE P AS BEGIN;", "AS BEGIN ... END) are not supported"),
    ("CREATE PROCEDURE P AS;", "AS must be followed by a SQL statement"),
    ("CREATE PROCEDURE P;", "expected FROM CLASS or AS, found the end of the statement"),
    ("CREATE PROCEDURE FROM CLASS;", "expected a class name"),
    ("CREATE PROCEDURE PARTITION ON TABLE votes COLUMN phone PARAMETER -1 FROM CLASS a.B;",
     "expected a parameter index"),
    ("CREATE PROCEDURE PARTITION TABLE votes COLUMN phone FROM CLASS a.B;", "expected ON"),
])
def test_bad_procedures(ddl, message):
    msg = error(PROC_BASE + ddl)
    assert message in msg
    last = 3 + ddl.count("\n")
    assert msg.startswith(f"schema.sql line {last}: ")


@pytest.mark.parametrize("ddl, message", [
    ("CREATE PROCEDURE PARTITION ON TABLE nope COLUMN phone FROM CLASS a.B;",
     "procedure B is partitioned on table 'nope', which does not exist"),
    ("CREATE PROCEDURE PARTITION ON TABLE r COLUMN id FROM CLASS a.B;",
     "table 'r', which is not partitioned"),
    ("CREATE PROCEDURE FROM CLASS a.B;\nPARTITION PROCEDURE B ON TABLE votes COLUMN state;",
     "column 'state' is not the partition column of table 'votes' ('phone')"),
])
def test_procedure_partition_is_validated(ddl, message):
    msg = error(PROC_BASE + "CREATE TABLE r (id INT);\n" + ddl)
    assert message in msg
    assert msg.startswith(f"schema.sql line {4 + ddl.count(chr(10))}: ")


def test_procedure_may_precede_partition_table():
    c = load("CREATE TABLE t (k INT NOT NULL);\n"
             "CREATE PROCEDURE PARTITION ON TABLE t COLUMN k FROM CLASS a.P;\n"
             "PARTITION TABLE t ON COLUMN k;")
    assert c.procedure_partition_type("p") == ColumnType.INTEGER


# -- views --------------------------------------------------------------------

VIEW_BASE = ("CREATE TABLE t (g INT NOT NULL, h VARCHAR(4), x INT, y FLOAT, "
             "d DECIMAL, s VARCHAR(10), ts TIMESTAMP);\n")


def test_view_with_column_list_and_all_aggregates():
    c = load(VIEW_BASE + """CREATE VIEW v (a, b, n, sx, miny, maxs, cx, sd) AS
        SELECT h, g, COUNT(*), SUM(x), MIN(y), MAX(s), COUNT(x), SUM(d)
        FROM t GROUP BY g, h;""")
    v = c.views["v"]
    assert v == ViewDef("v", "t", ("a", "b", "n", "sx", "miny", "maxs", "cx", "sd"),
                        ("h", "g"),
                        (("COUNT", None), ("SUM", "x"), ("MIN", "y"), ("MAX", "s"),
                         ("COUNT", "x"), ("SUM", "d")), 2)
    types = [(x.name, x.type, x.nullable) for x in c.view_columns("V")]
    assert types == [
        ("a", ColumnType.VARCHAR, True), ("b", ColumnType.INTEGER, False),
        ("n", ColumnType.BIGINT, False), ("sx", ColumnType.BIGINT, True),
        ("miny", ColumnType.FLOAT, True), ("maxs", ColumnType.VARCHAR, True),
        ("cx", ColumnType.BIGINT, False), ("sd", ColumnType.DECIMAL, True)]
    assert c.view_columns("v")[5].size == 10
    assert [x.name for x in c.views_of("t")] == ["v"]


def test_view_names_from_aliases_or_generated():
    c = load(VIEW_BASE + "CREATE VIEW v AS SELECT t.g AS grp, count(*), sum(x) total, "
             "min(x), MIN(x) FROM t GROUP BY t.g;")
    assert c.views["v"].column_names == ("grp", "count_star", "total", "min_x", "min_x_5")
    c = load(VIEW_BASE + "CREATE VIEW v AS SELECT z.g, COUNT(*) FROM t AS z GROUP BY g;")
    assert c.views["v"].column_names == ("g", "count_star")


def test_view_without_aggregates():
    c = load(VIEW_BASE + "CREATE VIEW v AS SELECT g FROM t GROUP BY g;")
    assert c.views["v"].aggregates == ()


@pytest.mark.parametrize("select, message", [
    ("SELECT g, COUNT(*) FROM t", "a view needs GROUP BY"),
    ("SELECT g, h, COUNT(*) FROM t GROUP BY g", "column 'h' is selected but not in GROUP BY"),
    ("SELECT g, COUNT(*) FROM t GROUP BY g, h", "GROUP BY column 'h' must be selected too"),
    ("SELECT COUNT(*), g FROM t GROUP BY g", "group column 'g' must come before the aggregates"),
    ("SELECT g, AVG(x) FROM t GROUP BY g", "unknown function 'AVG'"),
    ("SELECT g, FOO(x) FROM t GROUP BY g", "unknown function 'FOO'"),
    ("SELECT g, SUM(s) FROM t GROUP BY g", "SUM of non-numeric column 's' (VARCHAR(10))"),
    ("SELECT g, SUM(ts) FROM t GROUP BY g", "SUM of non-numeric column 'ts'"),
    ("SELECT g, COUNT(DISTINCT x) FROM t GROUP BY g", "COUNT(DISTINCT ...) is not supported"),
    ("SELECT g, SUM(x + 1) FROM t GROUP BY g", "the argument of SUM must be a column"),
    ("SELECT g, COUNT() FROM t GROUP BY g", "COUNT takes one column"),
    ("SELECT g, MAX(x, y) FROM t GROUP BY g", "MAX takes one column"),
    ("SELECT g, SUM(zz) FROM t GROUP BY g", "table 't' has no column 'zz'"),
    ("SELECT zz, COUNT(*) FROM t GROUP BY zz", "table 't' has no column 'zz'"),
    ("SELECT g, COUNT(*) FROM nope GROUP BY g", "unknown table 'nope'"),
    ("SELECT g, COUNT(*) FROM w GROUP BY g", "views of views ('w') are not supported"),
    ("SELECT g, COUNT(*) FROM t WHERE x > 1 GROUP BY g", "WHERE is not supported in a view"),
    ("SELECT g, COUNT(*) FROM t GROUP BY g HAVING COUNT(*) > 1", "HAVING is not supported"),
    ("SELECT t.g, COUNT(*) FROM t JOIN u ON t.g = u.g GROUP BY t.g", "JOIN is not supported"),
    ("SELECT g, COUNT(*) FROM t, u GROUP BY g", "JOIN is not supported"),
    ("SELECT g, COUNT(*) FROM t GROUP BY g ORDER BY g", "ORDER BY is not supported"),
    ("SELECT g, COUNT(*) FROM (SELECT g FROM t) GROUP BY g", "FROM exactly one table"),
    ("SELECT g, COUNT(*) FROM t GROUP BY 1", "GROUP BY item must be a column"),
    ("SELECT g, g + 1, COUNT(*) FROM t GROUP BY g", "neither a GROUP BY column nor an aggregate"),
    ("SELECT u.g, COUNT(*) FROM t GROUP BY g", "must be a column of 't'"),
    ("SELECT g, COUNT(*) FROM t GROUP BY g UNION SELECT g, 1 FROM t", "one SELECT"),
    ("SELECT g AS a, COUNT(*) AS a FROM t GROUP BY g", "two view columns have the same name"),
])
def test_bad_views(select, message):
    base = VIEW_BASE + "CREATE VIEW w AS SELECT g, COUNT(*) FROM t GROUP BY g;\n"
    msg = error(base + "CREATE VIEW v\nAS " + select + ";")
    assert message in msg, msg
    assert msg.startswith("schema.sql line 3: CREATE VIEW v: ")


def test_view_column_count_mismatch():
    msg = error(VIEW_BASE + "CREATE VIEW v (a, b, c) AS SELECT g, COUNT(*) FROM t GROUP BY g;")
    assert "line 2: CREATE VIEW v: the view names 3 columns but selects 2" in msg


# -- DROP -----------------------------------------------------------------------

DROP_BASE = """CREATE TABLE t (a INT NOT NULL UNIQUE, b INT);
CREATE INDEX tb ON t (b);
CREATE VIEW v AS SELECT b, COUNT(*) FROM t GROUP BY b;
CREATE TABLE other (a INT);
CREATE PROCEDURE FROM CLASS app.P;
"""


def test_drop_table_with_dependents_needs_cascade():
    msg = error(DROP_BASE + "DROP TABLE t;")
    assert msg == ("schema.sql line 6: DROP TABLE t: table 't' is used by view v, index tb; "
                   "drop them first or use DROP TABLE ... CASCADE")
    c = load(DROP_BASE + "DROP TABLE t CASCADE;")
    assert list(c.tables) == ["other"] and c.views == {} and c.indexes == {}
    c = load(DROP_BASE + "DROP VIEW v;\nDROP INDEX tb;\nDROP TABLE t;")
    assert list(c.tables) == ["other"] and c.indexes == {}   # the UNIQUE index went too
    c.apply("CREATE TABLE t (a INT UNIQUE);")                # and its name is free again
    assert list(c.indexes) == ["t_a_unique"]


def test_drop_forms():
    c = load(DROP_BASE + """
        DROP TABLE IF EXISTS nope;
        DROP TABLE nope IF EXISTS;
        DROP VIEW nope IF EXISTS;
        DROP INDEX IF EXISTS nope;
        DROP PROCEDURE nope IF EXISTS;
        DROP TABLE other IF EXISTS CASCADE;
        DROP PROCEDURE app.P;
    """)
    assert list(c.tables) == ["t"] and c.procedures == {}
    c = load(DROP_BASE + "DROP PROCEDURE p;")
    assert c.procedures == {}


@pytest.mark.parametrize("ddl, message", [
    ("DROP TABLE nope;", "DROP TABLE nope: unknown table 'nope'"),
    ("DROP TABLE v;", "unknown table 'v'; it is a view: use DROP VIEW"),
    ("DROP VIEW t;", "unknown view 't'; it is a table: use DROP TABLE"),
    ("DROP INDEX nope;", "unknown index 'nope'"),
    ("DROP PROCEDURE nope;", "unknown procedure 'nope'"),
    ("DROP INDEX t_a_unique;", "implements a UNIQUE constraint of table 't'"),
    ("DROP VIEW v CASCADE;", "CASCADE only applies to DROP TABLE"),
    ("DROP STREAM s;", "streams are not supported yet"),
    ("DROP ROLE r;", "expected DROP TABLE, VIEW, INDEX or PROCEDURE"),
    ("DROP TABLE t RESTRICT;", "unexpected 'RESTRICT'"),
])
def test_bad_drops(ddl, message):
    msg = error(DROP_BASE + ddl)
    assert msg.startswith("schema.sql line 6: DROP ")
    assert message in msg


def test_drop_table_breaks_partitioned_procedure():
    msg = error(PROC_BASE + "CREATE PROCEDURE PARTITION ON TABLE votes COLUMN phone "
                "FROM CLASS a.Vote;\nDROP TABLE votes;")
    assert "line 3: CREATE PROCEDURE PARTITION ON TABLE votes: procedure Vote is " \
           "partitioned on table 'votes', which does not exist" in msg


def test_dataclass_shapes():
    t = TableDef("t", [], None, None, 1)
    assert t.is_replicated
    assert not TableDef("t", [], None, "a", 1).is_replicated


# -- robustness -------------------------------------------------------------------

_FRAGMENTS = [
    "CREATE", "TABLE", "INDEX", "VIEW", "PROCEDURE", "PARTITION", "DROP", "UNIQUE",
    "ASSUMEUNIQUE", "PRIMARY KEY", "NOT NULL", "NULL", "DEFAULT", "ON", "COLUMN",
    "PARAMETER", "FROM", "CLASS", "AS", "SELECT", "GROUP BY", "COUNT(*)", "SUM(a)",
    "USING HASH", "IF EXISTS", "CASCADE", "CONSTRAINT", "t", "u", "a", "b", "a.b",
    "INT", "VARCHAR(3)", "VARCHAR(2 BYTES)", "DECIMAL(5,2)", "TIMESTAMP", "VARBINARY",
    "(", ")", ",", ";", "'x'", "'0f'", "-1", "1.5", "1e400", "--c\n", "/* c */", "\n",
    "'", '"', "/*", "*", ".", "+",
]


@settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(st.sampled_from(_FRAGMENTS), max_size=30))
def test_any_input_gives_a_catalog_or_a_schema_error(fragments):
    c = Catalog()
    try:
        c.apply(" ".join(fragments))
    except SchemaError as e:
        assert " line " in str(e)


@settings(max_examples=200, deadline=None)
@given(st.text(max_size=80))
def test_any_text_gives_a_catalog_or_a_schema_error(text):
    try:
        Catalog().apply("CREATE TABLE t (a INT);\n" + text)
    except SchemaError:
        pass
