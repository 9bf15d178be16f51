"""Procedures of the crash-test bank (see schema.sql).

Every procedure that changes an account returns what it appended to the
ledger, so a caller can check that the answer it got (perhaps to a retry
with the same idempotency key) is the one that was applied:

    Open, Deposit   [entry, balance_after]
    Transfer        [source entry, source balance_after,
                     target entry, target balance_after]

HeldTransfer touches files (a test application: multi-partition
procedures are not replayed, their writes are logged).
"""

import os
import time

from flowstate.procedures import Abort, PartitionOn, Procedure

OPEN, DEPOSIT, TRANSFER_OUT, TRANSFER_IN = 0, 1, 2, 3


def _append(db, account, call_id, kind, amount):
    """Change ``account`` by ``amount`` and log it; return [entry, balance]."""
    entry = account.entries + 1
    balance = account.balance + amount
    db.accounts.update(account.id, balance=balance, entries=entry)
    db.ledger.insert(account.id, entry, call_id, kind, amount, balance)
    return [entry, balance]


def _dump(db):
    return {"accounts": sorted(list(r) for r in db.accounts.scan()),
            "ledger": sorted(list(r) for r in db.ledger.scan()),
            "by_account": sorted(list(r) for r in db.v_ledger_by_account.scan()),
            "by_kind": sorted(list(r) for r in db.v_ledger_by_kind.scan())}


# -- single-partition -------------------------------------------------------

class Open(Procedure):
    partition = PartitionOn("accounts", "id")

    def run(self, account_id, balance, call_id):
        self.db.accounts.insert(account_id, balance, 1)
        self.db.ledger.insert(account_id, 1, call_id, OPEN, balance, balance)
        return [1, balance]


class Deposit(Procedure):
    partition = PartitionOn("accounts", "id")

    def run(self, account_id, amount, call_id):
        account = self.db.accounts.get(account_id)
        if account is None:
            raise Abort(f"no account {account_id}")
        return _append(self.db, account, call_id, DEPOSIT, amount)


class PartitionDump(Procedure):
    """The rows of the partition that owns ``account_id``."""
    partition = PartitionOn("accounts", "id")

    def run(self, account_id):
        return _dump(self.db)


# -- multi-partition --------------------------------------------------------

class Transfer(Procedure):
    def run(self, source, target, amount, call_id):
        accounts = self.db.accounts
        a, b = accounts.get(source), accounts.get(target)
        if a is None or b is None:
            raise Abort(f"no account {source if a is None else target}")
        if a.balance < amount:
            raise Abort(f"insufficient funds: account {source} has {a.balance}, "
                        f"entry {a.entries}")
        return (_append(self.db, a, call_id, TRANSFER_OUT, -amount)
                + _append(self.db, b, call_id, TRANSFER_IN, amount))


class Dump(Procedure):
    """Every row of every partition, in one transaction."""

    def run(self):
        return _dump(self.db)


class HeldTransfer(Procedure):
    """A Transfer that writes the target's half, creates ``folder``/written,
    then waits until ``folder``/release exists (``limit`` seconds at most)
    before it writes the source's half: a moment to kill a process in."""

    def run(self, source, target, amount, call_id, folder, limit):
        accounts = self.db.accounts
        a, b = accounts.get(source), accounts.get(target)
        if a is None or b is None:
            raise Abort(f"no account {source if a is None else target}")
        got = _append(self.db, b, call_id, TRANSFER_IN, amount)
        open(os.path.join(folder, "written"), "w").close()
        deadline = time.monotonic() + limit
        while not os.path.exists(os.path.join(folder, "release")):
            if time.monotonic() > deadline:
                raise Abort("not released in time")
            time.sleep(0.01)
        return _append(self.db, a, call_id, TRANSFER_OUT, -amount) + got
