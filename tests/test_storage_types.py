"""Column types of the storage engine: what each accepts and gives back,
what it refuses and with which error, DEFAULTs, and that a refused write
leaves no trace."""

import datetime as dt
import math
from decimal import Decimal

import numpy
import pytest

from flowstate.errors import (ConstraintError, NotNullError, TypeMismatchError,
                              ValueOutOfRangeError, ValueTooLongError)
from flowstate.native.storage import Store
from flowstate.types import EPOCH, Column, ColumnType as T, micros_to_timestamp

from storage_fixtures import store_state

UTC = dt.timezone.utc


def one_column_table(column, name="t", indexed=True):
    """Table ``name``(id INTEGER PK, <column>) with an ordered index on it."""
    store = Store()
    table = store.create_table(name, [Column("id", T.INTEGER, nullable=False), column],
                               primary_key=["id"])
    if indexed:
        store.create_index(name, "by_value", [column.name])
    return store, table


# -- accepted values and round trip ------------------------------------------

MAX_DECIMAL = Decimal("9" * 26 + "." + "9" * 12)
MIN_DECIMAL = Decimal("-" + "9" * 26 + "." + "9" * 12)   # (not -MAX_DECIMAL: that rounds to 28 digits)

ROUND_TRIP = [
    (Column("v", T.TINYINT), [-128, -1, 0, 1, 127]),
    (Column("v", T.SMALLINT), [-32768, -129, 128, 32767]),
    (Column("v", T.INTEGER), [-(2**31), -32769, 32768, 2**31 - 1]),
    (Column("v", T.BIGINT), [-(2**63), -(2**31) - 1, 2**31, 2**63 - 1]),
    (Column("v", T.FLOAT), [0.0, -1.25, 1.5e308, -1.5e308, 5e-324, math.inf, -math.inf,
                            0.1 + 0.2]),
    (Column("v", T.DECIMAL), [
        Decimal("0"),
        Decimal("1.5"),
        Decimal("-1.5"),
        Decimal("0.000000000001"),
        Decimal("-0.000000000001"),
        Decimal("12345678901234567890123456.123456789012"),   # 26 + 12 digits
        Decimal("-12345678901234567890123456.123456789012"),
        MAX_DECIMAL,
        MIN_DECIMAL,
        Decimal("100000000000000000000000000") - 1,              # 26 nines, no fraction
    ]),
    (Column("v", T.VARCHAR, 5), ["", "a", "abcde", "héllo", "日本語です", "😀😀😀😀😀",
                                 "a\x00b", "Ünï"]),
    (Column("v", T.VARCHAR, 6, size_in_bytes=True), ["", "abcdef", "ééé", "日本", "😀é"]),
    (Column("v", T.VARCHAR, 1000), ["x" * 1000, "é" * 1000, "long " * 200]),
    (Column("v", T.VARBINARY, 4), [b"", b"\x00", b"\x00\x01\xfe\xff", b"abcd"]),
    (Column("v", T.VARBINARY, 5000), [bytes(range(256)) * 19, b"\x00" * 5000]),
]


@pytest.mark.parametrize("column,values", ROUND_TRIP,
                         ids=[c.sql_type() for c, _ in ROUND_TRIP])
def test_values_round_trip(column, values):
    store, t = one_column_table(column)
    for i, v in enumerate(values):
        t.insert(i, v)
    for i, v in enumerate(values):
        got = t.get(i).v
        assert got == v and type(got) is type(v), (v, got)
    assert len(t) == len(values)
    # also through scan, column_array and the index on the column
    assert sorted((r.id, r.v) for r in t.scan()) == list(enumerate(values))
    assert sorted(t.index("by_value").range(), key=lambda r: r.id) == \
        [t.Row(i, v) for i, v in enumerate(values)]


@pytest.mark.parametrize("column,values", ROUND_TRIP,
                         ids=[c.sql_type() for c, _ in ROUND_TRIP])
def test_values_round_trip_through_update(column, values):
    store, t = one_column_table(column)
    t.insert(0, None)
    for v in values:
        new = t.update(0, v=v)
        assert new.v == v and type(new.v) is type(v)
        got = t.get(0).v
        assert got == v and type(got) is type(v)
    assert t.update(0, v=None).v is None
    assert t.get(0).v is None


def test_float_negative_zero_keeps_its_sign():
    store, t = one_column_table(Column("v", T.FLOAT), indexed=False)
    t.insert(1, -0.0)
    t.insert(2, 0.0)
    assert math.copysign(1.0, t.get(1).v) == -1.0
    assert math.copysign(1.0, t.get(2).v) == 1.0


def test_float_nan_round_trips_or_is_refused():
    # The contract is silent on NaN: PostgreSQL stores it; refusing it (it
    # has no place in an ordered index) is acceptable too, but nothing else.
    store, t = one_column_table(Column("v", T.FLOAT), indexed=False)
    try:
        t.insert(1, math.nan)
    except ValueOutOfRangeError:
        assert len(t) == 0 and t.get(1) is None
    else:
        assert math.isnan(t.get(1).v)


def test_int_into_float_column_is_stored_as_float():
    store, t = one_column_table(Column("v", T.FLOAT), indexed=False)
    t.insert(1, 3)
    got = t.get(1).v
    assert got == 3.0 and type(got) is float


def test_int_into_decimal_column_is_stored_as_decimal():
    store, t = one_column_table(Column("v", T.DECIMAL), indexed=False)
    t.insert(1, -42)
    got = t.get(1).v
    assert got == Decimal(-42) and type(got) is Decimal


def test_decimal_orders_numerically_in_an_ordered_index():
    store, t = one_column_table(Column("v", T.DECIMAL))
    values = [Decimal("-1.000000000001"), Decimal("-1"), Decimal("-0.5"), Decimal("0"),
              Decimal("0.000000000001"), Decimal("2"), Decimal("10.5"), MAX_DECIMAL, MIN_DECIMAL]
    for i, v in enumerate(values):
        t.insert(i, v)
    assert [r.v for r in t.index("by_value").range()] == sorted(values)


def test_varchar_orders_by_code_point_in_an_ordered_index():
    store, t = one_column_table(Column("v", T.VARCHAR, 10))
    values = ["b", "a", "", "ab", "é", "z", "aa", "日", "A", "a\x00"]
    for i, v in enumerate(values):
        t.insert(i, v)
    assert [r.v for r in t.index("by_value").range()] == sorted(values)


def test_signed_integers_order_numerically_in_an_ordered_index():
    store, t = one_column_table(Column("v", T.BIGINT))
    values = [0, -1, 1, 2**63 - 1, -(2**63), 256, -256, 2**31, -(2**31) - 1]
    for i, v in enumerate(values):
        t.insert(i, v)
    assert [r.v for r in t.index("by_value").range()] == sorted(values)


def test_floats_order_numerically_in_an_ordered_index():
    store, t = one_column_table(Column("v", T.FLOAT))
    values = [0.5, -0.5, math.inf, -math.inf, 1e-300, -1e300, 3.0, -3.0, 0.0]
    for i, v in enumerate(values):
        t.insert(i, v)
    assert [r.v for r in t.index("by_value").range()] == sorted(values)


# -- TIMESTAMP ---------------------------------------------------------------

TIMESTAMPS = [
    dt.datetime(2024, 2, 29, 13, 45, 1, 123456, tzinfo=UTC),
    EPOCH,
    dt.datetime(1969, 12, 31, 23, 59, 59, 999999, tzinfo=UTC),
    dt.datetime(1, 1, 1, tzinfo=UTC),
    dt.datetime(9999, 12, 31, 23, 59, 59, 999999, tzinfo=UTC),
]


@pytest.mark.parametrize("value", TIMESTAMPS, ids=str)
def test_timestamp_from_utc_datetime_round_trips(value):
    store, t = one_column_table(Column("v", T.TIMESTAMP))
    t.insert(1, value)
    got = t.get(1).v
    assert isinstance(got, dt.datetime)
    assert got.utcoffset() == dt.timedelta(0)
    assert got == value


def test_timestamp_from_naive_datetime_is_taken_as_utc():
    store, t = one_column_table(Column("v", T.TIMESTAMP))
    t.insert(1, dt.datetime(2020, 5, 17, 8, 30, 0, 5))
    got = t.get(1).v
    assert got.utcoffset() == dt.timedelta(0)
    assert got == dt.datetime(2020, 5, 17, 8, 30, 0, 5, tzinfo=UTC)


def test_timestamp_from_other_timezone_is_returned_in_utc():
    ist = dt.timezone(dt.timedelta(hours=5, minutes=30))
    store, t = one_column_table(Column("v", T.TIMESTAMP))
    t.insert(1, dt.datetime(2020, 5, 17, 8, 30, tzinfo=ist))
    got = t.get(1).v
    assert got.utcoffset() == dt.timedelta(0)
    assert (got.year, got.month, got.day, got.hour, got.minute) == (2020, 5, 17, 3, 0)


@pytest.mark.parametrize("micros", [0, 1, -1, 1_700_000_000_123_456, -62135596800000000,
                                    253402300799999999])
def test_timestamp_from_int_microseconds(micros):
    store, t = one_column_table(Column("v", T.TIMESTAMP))
    t.insert(1, micros)
    got = t.get(1).v
    assert isinstance(got, dt.datetime) and got.utcoffset() == dt.timedelta(0)
    assert got == micros_to_timestamp(micros)


def test_timestamps_order_in_an_ordered_index():
    store, t = one_column_table(Column("v", T.TIMESTAMP))
    for i, v in enumerate(TIMESTAMPS):
        t.insert(i, v)
    assert [r.v for r in t.index("by_value").range()] == sorted(TIMESTAMPS)


# -- NULL ----------------------------------------------------------------------

ALL_TYPES = [Column("v", T.TINYINT), Column("v", T.SMALLINT), Column("v", T.INTEGER),
             Column("v", T.BIGINT), Column("v", T.FLOAT), Column("v", T.DECIMAL),
             Column("v", T.VARCHAR, 8), Column("v", T.VARBINARY, 8), Column("v", T.TIMESTAMP)]
SAMPLE = {T.TINYINT: 5, T.SMALLINT: 5, T.INTEGER: 5, T.BIGINT: 5, T.FLOAT: 5.5,
          T.DECIMAL: Decimal("5.5"), T.VARCHAR: "five", T.VARBINARY: b"five",
          T.TIMESTAMP: EPOCH}


@pytest.mark.parametrize("column", ALL_TYPES, ids=lambda c: c.sql_type())
def test_null_round_trips_and_differs_from_zero_or_empty(column):
    store, t = one_column_table(column)
    t.insert(1, None)
    t.insert(2, SAMPLE[column.type])
    t.insert(id=3)
    assert t.get(1).v is None
    assert t.get(3).v is None
    assert t.get(2).v == SAMPLE[column.type]
    if column.type in (T.VARCHAR, T.VARBINARY):
        empty = "" if column.type == T.VARCHAR else b""
        t.insert(4, empty)
        assert t.get(4).v == empty and t.get(4).v is not None


@pytest.mark.parametrize("column", ALL_TYPES, ids=lambda c: c.sql_type())
def test_null_into_not_null_is_refused(column):
    column = Column("v", column.type, column.size, nullable=False)
    store, t = one_column_table(column)
    t.insert(1, SAMPLE[column.type])
    before = store_state(store)
    with pytest.raises(NotNullError):
        t.insert(2, None)
    with pytest.raises(NotNullError):
        t.insert(id=3)                  # omitted, no DEFAULT
    with pytest.raises(NotNullError):
        t.update(1, v=None)
    assert store_state(store) == before


def test_null_into_primary_key_is_refused():
    store, t = one_column_table(Column("v", T.INTEGER), indexed=False)
    with pytest.raises(NotNullError):
        t.insert(None, 1)
    assert len(t) == 0


# -- refusals --------------------------------------------------------------------

REFUSED = [
    # out of range integers, one past each end
    (Column("v", T.TINYINT), -129, ValueOutOfRangeError),
    (Column("v", T.TINYINT), 128, ValueOutOfRangeError),
    (Column("v", T.SMALLINT), -32769, ValueOutOfRangeError),
    (Column("v", T.SMALLINT), 32768, ValueOutOfRangeError),
    (Column("v", T.INTEGER), -(2**31) - 1, ValueOutOfRangeError),
    (Column("v", T.INTEGER), 2**31, ValueOutOfRangeError),
    (Column("v", T.BIGINT), -(2**63) - 1, ValueOutOfRangeError),
    (Column("v", T.BIGINT), 2**63, ValueOutOfRangeError),
    (Column("v", T.BIGINT), 10**30, ValueOutOfRangeError),
    (Column("v", T.TIMESTAMP), 2**63, ValueOutOfRangeError),
    # DECIMAL(38, 12): 13 fractional digits or 27 integer digits
    (Column("v", T.DECIMAL), Decimal("0.0000000000001"), ValueOutOfRangeError),
    (Column("v", T.DECIMAL), Decimal("-1.1234567890123"), ValueOutOfRangeError),
    (Column("v", T.DECIMAL), Decimal("1" + "0" * 26), ValueOutOfRangeError),
    (Column("v", T.DECIMAL), Decimal("-" + "1" * 27), ValueOutOfRangeError),
    (Column("v", T.DECIMAL), Decimal("1" + "0" * 26 + ".000000000000"), ValueOutOfRangeError),
    (Column("v", T.DECIMAL), 10**26, ValueOutOfRangeError),
    # too long, one over the limit
    (Column("v", T.VARCHAR, 5), "abcdef", ValueTooLongError),
    (Column("v", T.VARCHAR, 5), "éééééé", ValueTooLongError),
    (Column("v", T.VARCHAR, 5), "😀" * 6, ValueTooLongError),
    (Column("v", T.VARCHAR, 4, size_in_bytes=True), "ééa", ValueTooLongError),
    (Column("v", T.VARCHAR, 4, size_in_bytes=True), "abcde", ValueTooLongError),
    (Column("v", T.VARCHAR, 300), "x" * 301, ValueTooLongError),
    (Column("v", T.VARBINARY, 4), b"abcde", ValueTooLongError),
    (Column("v", T.VARBINARY, 300), b"\x00" * 301, ValueTooLongError),
    # wrong Python types
    (Column("v", T.INTEGER), "1", TypeMismatchError),
    (Column("v", T.INTEGER), 1.5, TypeMismatchError),
    (Column("v", T.INTEGER), 2.0, TypeMismatchError),
    (Column("v", T.INTEGER), b"1", TypeMismatchError),
    (Column("v", T.INTEGER), True, TypeMismatchError),
    (Column("v", T.TINYINT), "1", TypeMismatchError),
    (Column("v", T.BIGINT), 1.0, TypeMismatchError),
    (Column("v", T.FLOAT), "1.5", TypeMismatchError),
    (Column("v", T.DECIMAL), "1.5", TypeMismatchError),
    (Column("v", T.VARCHAR, 10), 5, TypeMismatchError),
    (Column("v", T.VARCHAR, 10), b"abc", TypeMismatchError),
    (Column("v", T.VARCHAR, 10), 1.5, TypeMismatchError),
    (Column("v", T.VARBINARY, 10), "abc", TypeMismatchError),
    (Column("v", T.VARBINARY, 10), 5, TypeMismatchError),
    (Column("v", T.TIMESTAMP), "2024-01-01", TypeMismatchError),
    (Column("v", T.TIMESTAMP), 1.5, TypeMismatchError),
]


def _ids(case):
    column, value, error = case
    return f"{column.sql_type()}-{error.__name__}-{value!r:.20}"


@pytest.mark.parametrize("column,value,error", REFUSED, ids=[_ids(c) for c in REFUSED])
def test_refused_insert_raises_and_leaves_no_trace(column, value, error):
    store, t = one_column_table(column)
    t.insert(1, None)
    t.insert(2, SAMPLE[column.type])
    before = store_state(store)
    with pytest.raises(error):
        t.insert(3, value)
    with pytest.raises(error):
        t.insert(id=4, v=value)
    with pytest.raises(error):
        t.upsert(3, value)
    assert store_state(store) == before
    assert t.get(3) is None and t.get(4) is None


@pytest.mark.parametrize("column,value,error", REFUSED, ids=[_ids(c) for c in REFUSED])
def test_refused_update_raises_and_leaves_no_trace(column, value, error):
    store, t = one_column_table(column)
    t.insert(1, None)
    t.insert(2, SAMPLE[column.type])
    before = store_state(store)
    with pytest.raises(error):
        t.update(2, v=value)
    with pytest.raises(error):
        t.update(1, v=value)
    with pytest.raises(error):
        t.upsert(2, value)              # replacing an existing row
    assert store_state(store) == before
    assert t.get(2).v == SAMPLE[column.type]


@pytest.mark.parametrize("value", [Decimal("NaN"), Decimal("Infinity"), Decimal("-Infinity")],
                         ids=str)
def test_decimal_special_values_are_refused(value):
    store, t = one_column_table(Column("v", T.DECIMAL))
    with pytest.raises(ConstraintError):
        t.insert(1, value)
    assert len(t) == 0


def test_wrong_type_in_primary_key_is_refused():
    store, t = one_column_table(Column("v", T.INTEGER))
    with pytest.raises(TypeMismatchError):
        t.insert("1", 5)
    with pytest.raises(ValueOutOfRangeError):
        t.insert(2**31, 5)
    assert len(t) == 0


def test_refused_write_in_a_later_column_leaves_no_partial_row():
    store = Store()
    t = store.create_table("t", [
        Column("id", T.INTEGER, nullable=False),
        Column("name", T.VARCHAR, 3),
        Column("small", T.TINYINT),
        Column("label", T.VARCHAR, 300),
    ], primary_key=["id"])
    store.create_index("t", "by_name", ["name"], unique=True, ordered=False)
    store.create_index("t", "by_label", ["label"])
    t.insert(1, "abc", 1, "first " * 40)
    before = store_state(store)
    with pytest.raises(ValueOutOfRangeError):
        t.insert(2, "xyz", 999, "second")
    with pytest.raises(ValueTooLongError):
        t.insert(3, "xyz", 1, "y" * 301)
    with pytest.raises(ValueOutOfRangeError):
        t.update(1, name="xy", label="changed", small=999)
    with pytest.raises(ValueOutOfRangeError):
        t.update(1, id=7, small=-200)
    with pytest.raises(TypeMismatchError):
        t.update(1, small=2, name=42)
    assert store_state(store) == before
    assert t.get(1) == (1, "abc", 1, "first " * 40)
    assert t.index("by_name").get("xyz") is None
    # the values that were refused did not leave index entries behind
    t.insert(2, "xyz", 2, "second")
    assert t.index("by_name").get("xyz") == (2, "xyz", 2, "second")


def test_unknown_column_name_is_refused():
    store, t = one_column_table(Column("v", T.INTEGER))
    t.insert(1, 1)
    before = store_state(store)
    with pytest.raises(Exception):
        t.insert(id=2, nosuch=1)
    with pytest.raises(Exception):
        t.update(1, nosuch=1)
    assert store_state(store) == before


def test_too_many_positional_values_are_refused():
    store, t = one_column_table(Column("v", T.INTEGER))
    with pytest.raises(Exception):
        t.insert(1, 2, 3)
    assert len(t) == 0


# -- error messages ----------------------------------------------------------------

MESSAGE_CASES = [
    (Column("balance", T.TINYINT), 300, ValueOutOfRangeError),
    (Column("balance", T.INTEGER), "12", TypeMismatchError),
    (Column("balance", T.VARCHAR, 3), "abcd", ValueTooLongError),
    (Column("balance", T.VARBINARY, 3), b"wxyz", ValueTooLongError),
    (Column("balance", T.DECIMAL), Decimal("0.0000000000001"), ValueOutOfRangeError),
]


@pytest.mark.parametrize("column,value,error", MESSAGE_CASES,
                         ids=[_ids(c) for c in MESSAGE_CASES])
def test_error_message_names_table_column_and_value(column, value, error):
    store, t = one_column_table(column, name="accounts")
    with pytest.raises(error) as info:
        t.insert(1, value)
    message = str(info.value).lower()
    assert "accounts" in message
    assert "balance" in message
    shown = {str(value), repr(value)}
    if isinstance(value, bytes):
        shown |= {value.decode(), value.hex()}
    if isinstance(value, Decimal):
        shown.add(format(value, "f"))
    assert any(s.lower() in message for s in shown), message
    assert info.value.message  # the FlowstateError accessor


def test_not_null_message_names_table_and_column():
    store, t = one_column_table(Column("balance", T.INTEGER, nullable=False), name="accounts")
    with pytest.raises(NotNullError) as info:
        t.insert(1, None)
    message = str(info.value).lower()
    assert "accounts" in message and "balance" in message


# -- DEFAULT -----------------------------------------------------------------------

def defaults_table():
    store = Store()
    t = store.create_table("orders", [
        Column("id", T.INTEGER, nullable=False),
        Column("status", T.VARCHAR, 10, default="new"),
        Column("qty", T.SMALLINT, nullable=False, default=1),
        Column("price", T.DECIMAL, default=Decimal("9.99")),
        Column("created", T.TIMESTAMP, default=dt.datetime(2000, 1, 1, tzinfo=UTC)),
        Column("weight", T.FLOAT, default=0.5),
        Column("blob", T.VARBINARY, 4, default=b"\x01"),
        Column("note", T.VARCHAR, 20),
    ], primary_key=["id"])
    store.create_index("orders", "by_status", ["status", "id"])
    return store, t


def test_default_applied_to_omitted_columns():
    store, t = defaults_table()
    t.insert(id=1)
    assert t.get(1) == (1, "new", 1, Decimal("9.99"), dt.datetime(2000, 1, 1, tzinfo=UTC),
                        0.5, b"\x01", None)
    t.insert(id=2, qty=5, note="x")
    assert t.get(2) == (2, "new", 5, Decimal("9.99"), dt.datetime(2000, 1, 1, tzinfo=UTC),
                        0.5, b"\x01", "x")
    assert [r.id for r in t.index("by_status").find("new")] == [1, 2]


def test_default_not_applied_to_explicit_null():
    store, t = defaults_table()
    t.insert(id=1, status=None, price=None)
    row = t.get(1)
    assert row.status is None and row.price is None and row.qty == 1


def test_default_applied_by_upsert_when_inserting():
    store, t = defaults_table()
    assert t.upsert(id=1, note="a") is True
    assert t.get(1).status == "new" and t.get(1).qty == 1


def test_update_does_not_reapply_defaults():
    store, t = defaults_table()
    t.insert(id=1, status="paid", qty=3)
    t.update(1, note="z")
    row = t.get(1)
    assert (row.status, row.qty, row.note) == ("paid", 3, "z")


# -- rows and metadata -----------------------------------------------------------

def test_table_metadata_and_row_class():
    store = Store()
    cols = [Column("ID", T.INTEGER, nullable=False), Column("Num_Votes", T.BIGINT),
            Column("state", T.VARCHAR, 2)]
    t = store.create_table("Contestants", cols, primary_key=["id"])
    assert store.tables["contestants"] is t
    assert t.column_names == ("id", "num_votes", "state")
    assert [(c.type, c.size, c.nullable) for c in t.columns] == \
        [(c.type, c.size, c.nullable) for c in cols]
    assert t.primary_key == ("id",)
    assert t.is_view is False
    assert t.Row._fields == ("id", "num_votes", "state")
    pk = t.indexes["primary_key"]
    assert pk.unique and pk.columns == ("id",) and pk.table is t
    t.insert(7, 12, "CA")
    row = t.get(7)
    assert isinstance(row, t.Row)
    assert row.num_votes == 12 and row[2] == "CA"
    a, b, c = row
    assert (a, b, c) == (7, 12, "CA")
    t.insert(num_votes=1, id=8)
    assert t.get(8) == (8, 1, None)


def test_rows_are_snapshots_not_live_views():
    store, t = one_column_table(Column("v", T.VARCHAR, 20))
    t.insert(1, "before")
    row = t.get(1)
    t.update(1, v="after")
    assert row.v == "before"
    t.delete(1)
    assert row == (1, "before")


# -- column_array types --------------------------------------------------------------

@pytest.mark.parametrize("column,values,dtype", [
    (Column("v", T.TINYINT), [-128, 0, 127], numpy.int64),
    (Column("v", T.BIGINT), [-(2**63), 0, 2**63 - 1], numpy.int64),
    (Column("v", T.FLOAT), [-1.5, 0.0, math.inf], numpy.float64),
    (Column("v", T.DECIMAL), [Decimal("1.5"), Decimal("-2"), None], object),
    (Column("v", T.VARCHAR, 5), ["a", "日本", None], object),
    (Column("v", T.VARBINARY, 5), [b"a", b"", None], object),
    (Column("v", T.TIMESTAMP), [EPOCH, None, dt.datetime(2024, 1, 1, tzinfo=UTC)], object),
    (Column("v", T.INTEGER), [1, None, -3], numpy.float64),
    (Column("v", T.FLOAT), [1.5, None], numpy.float64),
], ids=lambda x: x.sql_type() if isinstance(x, Column) else None)
def test_column_array_dtype_and_values(column, values, dtype):
    store, t = one_column_table(column, indexed=False)
    for i, v in enumerate(values):
        t.insert(i, v)
    arr = t.column_array("v")
    assert arr.dtype == numpy.dtype(dtype)
    ids = t.column_array("id")
    assert ids.dtype == numpy.int64
    by_id = dict(zip(ids.tolist(), arr.tolist()))
    for i, v in enumerate(values):
        got = by_id[i]
        if v is None:
            assert got is None or (isinstance(got, float) and math.isnan(got))
        else:
            assert got == v
