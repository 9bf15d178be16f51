"""The stored-procedure API: what application code subclasses and calls.

A procedure is a class with a ``run`` method. The partition creates one
instance per procedure, binds it to its tables, and calls ``run`` once per
invocation, inside a transaction: when ``run`` returns, the transaction
commits; when it raises, every change it made is undone.

    class Vote(Procedure):
        partition = PartitionOn("votes", "phone_number", parameter=0)

        def run(self, phone_number, contestant_number, max_votes):
            if self.db.contestants.get(contestant_number) is None:
                return ERR_INVALID_CONTESTANT
            ...

What a procedure sees while it runs:
  * ``self.db`` — every table and view of its partition by name
    (``self.db.votes``), with the direct table API of
    flowstate.native.storage (get, insert, update, delete, upsert, index
    lookups and range scans, scans). SQL statements (a later issue)
    compile onto the same calls, so a procedure may mix both.
  * ``self.now()`` — the transaction's timestamp, a UTC datetime; the same
    on replay. ``self.timestamp_us`` is the same as int microseconds.
  * ``self.random`` — a random.Random seeded by the transaction id.
  * ``self.txn_id`` — the transaction id.
  * ``raise Abort("message")`` — roll back, with a message for the caller.

Determinism: the command log replays invocations, not effects, so a
procedure must compute the same thing from the same parameters and state:
use ``now()`` and ``random``, never the wall clock, the OS's randomness,
files or the network.
"""

from __future__ import annotations

import datetime as _dt
import random as _random
from dataclasses import dataclass

from flowstate.errors import UserAbortError
from flowstate.resulttable import ResultTable
from flowstate.types import micros_to_timestamp

__all__ = ["Procedure", "PartitionOn", "Abort", "ResultTable"]

#: Raise ``Abort("why")`` in a procedure to roll back its transaction; the
#: caller receives a UserAbortError carrying the message.
Abort = UserAbortError


@dataclass(frozen=True)
class PartitionOn:
    """Declares a single-partition procedure: it runs on the partition that
    owns ``parameter``'s value of ``table.column``. The DDL's
    ``PARTITION PROCEDURE`` says the same thing; if both are given they
    must agree."""

    table: str
    column: str
    parameter: int = 0


class Procedure:
    """Base class of stored procedures. Override ``run``."""

    #: Set to a PartitionOn for a single-partition procedure; None means the
    #: procedure touches every partition (multi-partition).
    partition: PartitionOn | None = None

    # Set by the partition: the tables, and the current transaction.
    db = None
    txn_id: int = 0
    timestamp_us: int = 0
    _random: _random.Random | None = None

    def run(self, *params):
        raise NotImplementedError(f"{type(self).__name__} must define run()")

    def now(self) -> _dt.datetime:
        """The transaction's timestamp (UTC); identical when the log is replayed."""
        return micros_to_timestamp(self.timestamp_us)

    @property
    def random(self) -> _random.Random:
        """A random generator seeded by the transaction id."""
        rng = self._random
        if rng is None:
            rng = self._random = _random.Random(self.txn_id)
        return rng
