"""Procedures of the test bank (see schema.sql).

Single-partition procedures return ``os.getpid()`` where a test needs to
know which partition process ran them (not deterministic, which is fine
for a test application: nothing replays it).
"""

import os
import time

from flowstate.procedures import Abort, PartitionOn, Procedure


# -- single-partition -------------------------------------------------------

class Open(Procedure):
    partition = PartitionOn("accounts", "id")

    def run(self, account_id, owner, balance=0):
        self.db.accounts.insert(account_id, owner, balance, os.getpid())
        return os.getpid()


class Deposit(Procedure):
    def run(self, account_id, amount):
        row = self.db.accounts.get(account_id)
        if row is None:
            raise Abort(f"no account {account_id}")
        self.db.accounts.update(account_id, balance=row.balance + amount)
        return row.balance + amount


class Balance(Procedure):
    partition = PartitionOn("accounts", "id")

    def run(self, account_id):
        row = self.db.accounts.get(account_id)
        return None if row is None else row.balance


class WhereIs(Procedure):
    """Which process runs calls routed by ``account_id``."""
    partition = PartitionOn("accounts", "id")

    def run(self, account_id):
        return os.getpid()


class Census(Procedure):
    """The ids of every account on the partition that owns ``account_id``."""
    partition = PartitionOn("accounts", "id")

    def run(self, account_id):
        return [os.getpid(), sorted(row.id for row in self.db.accounts.scan())]


class Tag(Procedure):
    def run(self, name, value):
        self.db.tags.upsert(name, value, os.getpid())
        return os.getpid()


class TagCensus(Procedure):
    partition = PartitionOn("tags", "name")

    def run(self, name):
        return [os.getpid(), sorted(row.name for row in self.db.tags.scan())]


class ReadSetting(Procedure):
    partition = PartitionOn("accounts", "id")

    def run(self, account_id, name):
        row = self.db.settings.get(name)
        return [os.getpid(), None if row is None else row.value]


class WriteSettingHere(Procedure):
    """A single-partition write of a replicated table: refused."""
    partition = PartitionOn("accounts", "id")

    def run(self, account_id, name, value):
        self.db.settings.upsert(name, value)
        return os.getpid()


# -- multi-partition --------------------------------------------------------

class Transfer(Procedure):
    def run(self, source, target, amount):
        accounts = self.db.accounts
        a, b = accounts.get(source), accounts.get(target)
        if a is None or b is None:
            raise Abort(f"no account {source if a is None else target}")
        if a.balance < amount:
            raise Abort("insufficient funds")
        accounts.update(source, balance=a.balance - amount)
        accounts.update(target, balance=b.balance + amount)
        return [a.balance - amount, b.balance + amount]


class Total(Procedure):
    def run(self):
        return sum(row.balance for row in self.db.accounts.scan())


class Accounts(Procedure):
    """Every account: [id, balance, home pid]."""

    def run(self):
        return sorted([row.id, row.balance, row.home] for row in self.db.accounts.scan())


class AbortAfterWrites(Procedure):
    """Writes on the partitions of ``first`` and ``second`` (and a replicated
    row), then aborts."""

    def run(self, first, second, new_first, new_second):
        accounts = self.db.accounts
        accounts.update(first, balance=accounts.get(first).balance + 1_000_000)
        accounts.update(second, balance=accounts.get(second).balance - 1_000_000)
        accounts.insert(new_first, "ghost", 1, 0)
        accounts.insert(new_second, "ghost", 1, 0)
        accounts.delete(second)
        self.db.settings.upsert("ghost", 1)
        raise Abort("changed my mind")


class CrashAfterWrites(Procedure):
    def run(self, first, second, new_first, new_second):
        accounts = self.db.accounts
        accounts.update(first, balance=accounts.get(first).balance + 1_000_000)
        accounts.insert(new_first, "ghost", 1, 0)
        accounts.insert(new_second, "ghost", 1, 0)
        self.db.settings.upsert("ghost", 1)
        return {}["no such key"]


class OpenPair(Procedure):
    """Opens two accounts in one transaction (the second may already exist)."""

    def run(self, first, second, balance):
        self.db.accounts.insert(first, "pair", balance, 0)
        self.db.settings.upsert("pair", first)
        self.db.accounts.insert(second, "pair", balance, 0)
        return 2


class SetSetting(Procedure):
    def run(self, name, value):
        self.db.settings.upsert(name, value)
        return len(self.db.settings)


class Sleep(Procedure):
    def run(self, seconds):
        time.sleep(seconds)
        return seconds


class Hold(Procedure):
    """Holds every partition until the file ``path`` exists (at most
    ``limit`` seconds): a long multi-partition call the test ends."""

    def run(self, path, limit):
        deadline = time.monotonic() + limit
        while not os.path.exists(path):
            if time.monotonic() > deadline:
                return False
            time.sleep(0.01)
        return True
