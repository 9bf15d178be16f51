"""The in-process partition and the procedure API, with applications
written into temporary folders."""

import datetime as dt

import pytest

from flowstate.errors import (ParameterError, ProcedureError, SchemaError, UniqueViolationError,
                              UnknownProcedureError, UserAbortError, ValueTooLongError)
from flowstate.procedures import ResultTable
from flowstate.server.application import load_application
from flowstate.server.partition import Partition

SCHEMA = """
CREATE TABLE accounts (id BIGINT NOT NULL PRIMARY KEY, owner VARCHAR(20) NOT NULL,
                       balance BIGINT DEFAULT 0 NOT NULL);
PARTITION TABLE accounts ON COLUMN id;
CREATE INDEX accounts_by_owner ON accounts (owner);
CREATE TABLE audit (id BIGINT NOT NULL, at TIMESTAMP NOT NULL, note VARCHAR(40));
PARTITION TABLE audit ON COLUMN id;
CREATE VIEW balance_by_owner (owner, accounts, total) AS
    SELECT owner, COUNT(*), SUM(balance) FROM accounts GROUP BY owner;
CREATE PROCEDURE FROM CLASS bank.Open;
CREATE PROCEDURE FROM CLASS bank.Deposit;
CREATE PROCEDURE FROM CLASS bank.Transfer;
CREATE PROCEDURE FROM CLASS bank.Crash;
CREATE PROCEDURE FROM CLASS bank.Stamp;
CREATE PROCEDURE FROM CLASS bank.Statement;
PARTITION PROCEDURE Deposit ON TABLE accounts COLUMN id;
"""

BANK = '''
from flowstate.procedures import Abort, PartitionOn, Procedure, ResultTable

class Open(Procedure):
    partition = PartitionOn("accounts", "id")
    def run(self, account_id, owner, balance=0):
        self.db.accounts.insert(account_id, owner, balance)
        return account_id

class Deposit(Procedure):
    def run(self, account_id, amount):
        row = self.db.accounts.get(account_id)
        if row is None:
            raise Abort(f"no account {account_id}")
        self.db.accounts.update(account_id, balance=row.balance + amount)
        self.db.audit.insert(account_id, self.now(), f"deposit {amount}")
        return row.balance + amount

class Transfer(Procedure):
    def run(self, source, target, amount):
        accounts = self.db.accounts
        accounts.update(source, balance=accounts.get(source).balance - amount)
        if accounts.get(source).balance < 0:
            raise Abort("insufficient funds")
        accounts.update(target, balance=accounts.get(target).balance + amount)

class Crash(Procedure):
    def run(self, account_id):
        self.db.accounts.delete(account_id)
        return 1 // 0

class Stamp(Procedure):
    def run(self):
        return self.txn_id, self.timestamp_us, self.now(), self.random.random()

class Statement(Procedure):
    def run(self, owner):
        rows = self.db.accounts.index("accounts_by_owner").find(owner)
        return ResultTable(self.db.accounts.columns, rows)
'''


def make_app(tmp_path, schema=SCHEMA, module=BANK, name="bank"):
    (tmp_path / "schema.sql").write_text(schema)
    (tmp_path / f"{name}.py").write_text(module)
    return tmp_path


@pytest.fixture
def bank(tmp_path):
    p = Partition(load_application(make_app(tmp_path)))
    p.call("Open", 1, "ann", 100)
    p.call("Open", 2, "bob", 50)
    return p


def test_calls_commit(bank):
    assert bank.call("Deposit", 1, 25) == 125
    assert bank.db.accounts.get(1).balance == 125
    assert bank.db.balance_by_owner.get("ann") == ("ann", 1, 125)
    note = next(bank.db.audit.scan())
    assert note.id == 1 and note.note == "deposit 25"
    assert note.at.tzinfo is not None


def test_abort_rolls_back_every_change(bank):
    with pytest.raises(UserAbortError, match="insufficient funds"):
        bank.call("Transfer", 2, 1, 80)
    assert bank.db.accounts.get(2).balance == 50
    assert bank.db.balance_by_owner.get("bob").total == 50
    bank.call("Transfer", 2, 1, 30)
    assert (bank.db.accounts.get(1).balance, bank.db.accounts.get(2).balance) == (130, 20)


def test_other_exceptions_roll_back_and_become_procedure_errors(bank):
    with pytest.raises(ProcedureError, match="Crash failed: ZeroDivisionError") as info:
        bank.call("Crash", 1)
    assert isinstance(info.value.__cause__, ZeroDivisionError)
    assert bank.db.accounts.get(1) is not None
    assert bank.db.balance_by_owner.get("ann").accounts == 1
    assert not bank.store.in_transaction


def test_constraint_errors_roll_back_the_transaction(bank):
    with pytest.raises(UniqueViolationError):
        bank.call("Open", 1, "again")
    with pytest.raises(ValueTooLongError, match="accounts.owner"):
        bank.call("Open", 3, "x" * 21)
    assert len(bank.db.accounts) == 2
    assert bank.call("Open", 3, "cy") == 3


def test_unknown_procedure_and_parameter_counts(bank):
    with pytest.raises(UnknownProcedureError, match="no procedure 'Nope'"):
        bank.call("Nope")
    with pytest.raises(ParameterError, match=r"Deposit takes 2 parameter\(s\)"):
        bank.call("Deposit", 1)
    with pytest.raises(ParameterError, match="2 to 3"):
        bank.call("Open", 4)
    assert bank.call("deposit", 1, 1) == 101        # names are case-insensitive


def test_transaction_ids_timestamps_and_random_are_per_transaction(tmp_path):
    clock = iter([5_000_000_000, 4_000_000_000, 9_000_000_000])   # goes back in the middle
    p = Partition(load_application(make_app(tmp_path)), clock=lambda: next(clock))
    first, second, third = p.call("Stamp"), p.call("Stamp"), p.call("Stamp")
    assert (first[0], second[0], third[0]) == (1, 2, 3)
    assert (first[1], second[1], third[1]) == (5_000_000, 5_000_001, 9_000_000)
    assert first[2] == dt.datetime(1970, 1, 1, 0, 0, 5, tzinfo=dt.timezone.utc)
    q = Partition(load_application(make_app(tmp_path)), clock=lambda: 0)
    assert q.call("Stamp")[3] == first[3]          # same transaction id, same random numbers
    assert first[3] != second[3]


def test_result_tables_carry_column_names_and_types(bank):
    result = bank.call("Statement", "ann")
    assert isinstance(result, ResultTable)
    assert result.columns == ("id", "owner", "balance")
    assert [t.name for t in result.types] == ["BIGINT", "VARCHAR", "BIGINT"]
    assert result.as_dicts() == [{"id": 1, "owner": "ann", "balance": 100}]


def test_partitioning_from_class_and_ddl(tmp_path):
    app = load_application(make_app(tmp_path))
    assert app.partitioning["Open"].column == "id"
    assert app.partitioning["Deposit"].parameter == 0
    assert app.partitioning["Transfer"] is None


@pytest.mark.parametrize("module, message", [
    ("", "has no class Open"),
    ("Open = 3", "is not a subclass"),
    ("from flowstate.procedures import Procedure\nclass Open(Procedure):\n    pass",
     "does not define run"),
    ("raise RuntimeError('boom')", "importing bank failed: RuntimeError: boom"),
])
def test_bad_procedure_classes_are_schema_errors(tmp_path, module, message):
    schema = ("CREATE TABLE t (id BIGINT NOT NULL);\n"
              "CREATE PROCEDURE FROM CLASS bank.Open;\n")
    with pytest.raises(SchemaError, match=message):
        load_application(make_app(tmp_path, schema, module))


def test_missing_module_and_schema(tmp_path):
    with pytest.raises(SchemaError, match="no schema.sql"):
        load_application(tmp_path)
    (tmp_path / "schema.sql").write_text("CREATE PROCEDURE FROM CLASS nothere.P;\n")
    with pytest.raises(SchemaError, match="line 1: procedure P: no module 'nothere'"):
        load_application(tmp_path)


def test_class_and_ddl_partitioning_must_agree(tmp_path):
    schema = SCHEMA.replace("PARTITION PROCEDURE Deposit ON TABLE accounts COLUMN id;",
                            "PARTITION PROCEDURE Open ON TABLE audit COLUMN id;")
    with pytest.raises(SchemaError, match="Open.partition says"):
        load_application(make_app(tmp_path, schema))
