"""One partition's executor: its store, its procedures, its transactions.

A Partition holds the native Store with every table of the application
(partitioned tables hold this partition's rows; replicated tables a full
copy), one instance of every procedure class bound to those tables, and
runs invocations one at a time, each in its own transaction:

    call(name, *params)  /  run(bound, params)     (the server's fast path)
      -> find the procedure, check the parameter count and the type of the
         partitioning parameter (ParameterError)
      -> assign the transaction id and timestamp
      -> store.begin(); procedure.run(*params)
      -> returned: store.commit(); the result goes back to the caller
      -> raised:   store.rollback(); the error goes back to the caller:
                   Abort and schema rule violations as they are,
                   any other exception as a ProcedureError

Multi-partition transactions are run by the coordinator, which opens one
here with ``begin_fragments``, sends statement fragments to
``run_fragment`` and ends it with ``end_fragments(commit)``; the server
runs nothing else on this partition in between.

Replicated tables are read-only to single-partition procedures when the
cluster has more than one partition (a write would change one copy only);
the coordinator's fragments write every copy.

Invariants:
1. No transaction is open between calls: every call ends in exactly one
   commit or one rollback.
2. Transaction ids increase by one per transaction; timestamps strictly
   increase (a clock that goes back is ignored), so both are unique per
   partition.
"""

from __future__ import annotations

import collections
import inspect
import logging
import time
import types

import mmh3

from flowstate.errors import (FlowstateError, ParameterError, ProcedureError, ProtocolError,
                              UnavailableError, UnknownProcedureError)
from flowstate.native.storage import Store
from flowstate.protocol import pack
from flowstate.server.application import Application, load_application, run_parameters
from flowstate.server.commandlog import result_digest
from flowstate.server.histogram import LatencyHistogram
from flowstate.types import ColumnType

__all__ = ["Partition", "build_store", "Bound", "FRAGMENT_OPS", "WRITE_OPS",
           "cluster_state_hash"]

_INTEGER_TYPES = (ColumnType.TINYINT, ColumnType.SMALLINT, ColumnType.INTEGER, ColumnType.BIGINT)


def build_store(catalog) -> Store:
    """A Store with the tables, indexes and views of a catalog, empty."""
    store = Store()
    for table in catalog.tables.values():
        store.create_table(table.name, table.columns, table.primary_key)
    for index in catalog.indexes.values():
        store.create_index(index.table, index.name, index.columns,
                           unique=index.unique, ordered=index.ordered)
    for view in catalog.views.values():
        store.create_view(view.name, view.source, view.group_by, view.aggregates,
                          view.column_names)
    return store


class Bound:
    """A procedure with what the server checks before running it.

    ``partition_parameter`` is the index of the routing parameter (None for
    a multi-partition procedure); ``partition_kind`` the Python type that
    parameter must have (int for integer columns, str, bytes).
    """

    __slots__ = ("name", "instance", "run", "fewest", "most", "partition_parameter",
                 "partition_kind", "calls", "aborts", "max_params")

    def __init__(self, name, instance, partitioning, catalog):
        self.name = name
        self.instance = instance
        self.run = instance.run
        self.fewest, self.most = run_parameters(type(instance))
        self.calls = 0
        self.aborts = 0
        self.max_params = 1024
        if partitioning is None:
            self.partition_parameter = None
            self.partition_kind = None
        else:
            self.partition_parameter = partitioning.parameter
            column = catalog.tables[partitioning.table].column(partitioning.column)
            self.partition_kind = (int if column.type in _INTEGER_TYPES else
                                   bytes if column.type == ColumnType.VARBINARY else str)

    @property
    def multi_partition(self) -> bool:
        return self.partition_parameter is None

    def check(self, params) -> None:
        """Raise ParameterError unless ``params`` fit this procedure."""
        if type(params) is not list and type(params) is not tuple:
            raise ParameterError(f"{self.name}: the parameters must be an array, "
                                 f"got {type(params).__name__}")
        n = len(params)
        if n < self.fewest or n > self.most:
            raise ParameterError(self.count_message(n))
        if n > self.max_params:
            raise ParameterError(f"{self.name}: {n} parameters is over the server's limit "
                                 f"of {self.max_params}")
        index = self.partition_parameter
        if index is not None:
            value = params[index]
            kind = self.partition_kind
            if type(value) is not kind and not (kind is bytes and isinstance(value, bytes)):
                if kind is int and isinstance(value, bool) or not isinstance(value, kind):
                    raise ParameterError(
                        f"{self.name}: parameter {index} partitions the call and must be "
                        f"{'an integer' if kind is int else 'a ' + kind.__name__}, "
                        f"got {type(value).__name__} {value!r:.60}")
            if kind is int and not -(1 << 63) <= value < (1 << 63):
                raise ParameterError(f"{self.name}: parameter {index} = {value} is out of "
                                     f"range for BIGINT")

    def count_message(self, n: int) -> str:
        names = list(inspect.signature(self.run).parameters)
        if self.fewest == self.most:
            want = f"{self.fewest}"
        elif self.most == float("inf"):
            want = f"at least {self.fewest}"
        else:
            want = f"{self.fewest} to {self.most}"
        return f"{self.name} takes {want} parameter(s) ({', '.join(names)}), got {n}"

    def describe(self) -> dict:
        return {"name": self.name, "partition_parameter": self.partition_parameter,
                "multi_partition": self.multi_partition,
                "parameters": list(inspect.signature(self.run).parameters),
                "class": f"{type(self.instance).__module__.split('.', 1)[-1]}."
                         f"{type(self.instance).__qualname__}"}


def log_fault(message: str) -> None:
    logging.getLogger("flowstate").error("determinism fault: %s", message)


#: Fragments that change rows (logged for recovery).
WRITE_OPS = frozenset({"insert", "upsert", "update", "delete", "truncate"})

#: Statement fragments the coordinator may send: op -> Table method.
FRAGMENT_OPS = frozenset({"len", "get", "insert", "upsert", "update", "delete", "truncate",
                          "scan", "column_array", "index_get", "index_find", "index_range",
                          "index_len"})


class Partition:
    """Runs an application's procedures serially against its own store."""

    #: How many idempotency keys' outcomes a partition remembers by default
    #: (the oldest are forgotten first; `flowstate serve --idempotency-window`).
    IDEMPOTENCY_MEMORY = 100_000

    def __init__(self, app: Application | str | None = None, partition_id: int = 0,
                 clock=time.time_ns, partitions: int = 1):
        if not isinstance(app, Application):
            app = load_application(app)
        self.app = app
        self.partition_id = partition_id
        self.partitions = partitions
        self.store = build_store(app.catalog)
        self.db = types.SimpleNamespace(**self.store.tables)
        self._clock = clock
        self._last_timestamp_us = 0
        self.last_txn_id = 0
        self.procedures: dict[str, Bound] = {}
        for name, cls in app.procedures.items():
            instance = cls()
            instance.db = self.db
            bound = Bound(name, instance, app.partitioning.get(name), app.catalog)
            self.procedures[name] = bound
            self.procedures.setdefault(name.lower(), bound)
        self.calls = 0
        self.aborts = 0
        self.wrote = False                  # whether the last run() changed anything
        self.refuse_writes: str | None = None   # set while the command log cannot be written
        self.last_mp_seq = 0
        self.determinism_faults = 0
        self.latency = LatencyHistogram()
        self.outcomes: collections.OrderedDict = collections.OrderedDict()
        self.idempotency_window = self.IDEMPOTENCY_MEMORY
        self._replicated = [self.store.tables[t.name] for t in app.catalog.tables.values()
                            if t.is_replicated]
        self._protect_replicated(partitions > 1)

    def _protect_replicated(self, protect: bool) -> None:
        for table in self._replicated:
            table.read_only_reason = (
                f"{table.name} is replicated: only a multi-partition procedure may write it "
                f"(a single-partition one would change one copy)" if protect else None)

    @property
    def procedure_names(self) -> list[str]:
        return list(self.app.procedures)

    def lookup(self, name) -> Bound:
        bound = self.procedures.get(name)
        if bound is None:
            bound = self.procedures.get(name.lower()) if isinstance(name, str) else None
            if bound is None:
                raise UnknownProcedureError(f"there is no procedure {name!r}; the application "
                                            f"has {', '.join(self.procedure_names) or 'none'}")
        return bound

    def call(self, name: str, *params):
        """Run one invocation as a transaction; return its result or raise."""
        bound = self.lookup(name)
        bound.check(params)
        return self.run(bound, params)

    def _next_transaction(self, proc) -> None:
        self.last_txn_id = txn_id = self.last_txn_id + 1
        now = self._clock() // 1000
        if now <= self._last_timestamp_us:
            now = self._last_timestamp_us + 1
        self._last_timestamp_us = now
        proc.txn_id = txn_id
        proc.timestamp_us = now
        proc._random = None

    def run(self, bound: Bound, params):
        """Run a checked invocation as one transaction; return or raise."""
        proc = bound.instance
        self._next_transaction(proc)
        store = self.store
        self.calls += 1
        bound.calls += 1
        started = time.perf_counter_ns()
        store.begin()
        try:
            result = bound.run(*params)
        except FlowstateError:
            store.rollback()
            self.aborts += 1
            bound.aborts += 1
            raise
        except Exception as e:
            store.rollback()
            self.aborts += 1
            bound.aborts += 1
            raise ProcedureError(f"{bound.name} failed: {type(e).__name__}: {e}") from e
        except BaseException:
            store.rollback()
            raise
        self.wrote = wrote = store.undo_size != 0
        if wrote and self.refuse_writes is not None:
            store.rollback()
            raise UnavailableError(self.refuse_writes)
        store.commit()
        self.latency.add(time.perf_counter_ns() - started)
        return result

    # -- replay (recovery) ---------------------------------------------------

    def replay_call(self, record) -> bool:
        """Redo a logged call with its logged transaction id and timestamp;
        False if it did not give the logged result or change the state as
        it did then (a determinism fault)."""
        _, txn_id, timestamp_us, name, params, key, digest = record[:7]
        logged_changes = record[7] if len(record) > 7 else None     # format 1: none
        bound = self.lookup(name)
        proc = bound.instance
        proc.txn_id, proc.timestamp_us, proc._random = txn_id, timestamp_us, None
        self.last_txn_id = max(self.last_txn_id, txn_id)
        self._last_timestamp_us = max(self._last_timestamp_us, timestamp_us)
        store = self.store
        store.begin()
        try:
            result = bound.run(*params)
        except Exception as e:
            store.rollback()
            return self._fault(f"replaying {name} (transaction {txn_id}) raised "
                               f"{type(e).__name__}: {e}; it committed when it first ran",
                               logged_changes)
        store.commit()
        self.calls += 1
        bound.calls += 1
        if key is not None:
            self.remember(key, (0, result, None))
        if digest is not None and result_digest(result) != digest:
            return self._fault(f"replaying {name} (transaction {txn_id}) gave a different "
                               f"result ({result!r:.80}) than when it first ran", logged_changes)
        return self._check_changes(logged_changes, f"replaying {name} (transaction {txn_id})")

    def replay_writes(self, txn_id: int, timestamp_us: int, writes,
                      change_digest: int | None = None) -> bool:
        """Redo a multi-partition transaction's writes here; False if they
        did not leave the logged change digest (a determinism fault)."""
        self.begin_fragments(txn_id, timestamp_us)
        try:
            for table, op, args in writes:
                self.run_fragment(table, op, args)
        except Exception:
            self.end_fragments(False)
            raise
        self.end_fragments(True)
        return self._check_changes(change_digest,
                                   f"replaying multi-partition transaction {txn_id}")

    def _check_changes(self, logged: int | None, what: str) -> bool:
        """Compare the store's running change digest with the logged one."""
        if logged is None or self.store.change_digest == logged:
            return True
        return self._fault(f"{what} changed the rows differently than when it first ran "
                           f"(change digest {self.store.change_digest:016x}, logged "
                           f"{logged:016x})", logged)

    def _fault(self, message: str, logged_changes: int | None) -> bool:
        """Count and log a determinism fault; False. The change digest is
        reset to the logged one, so that one fault is reported once, not
        again at every later record."""
        self.determinism_faults += 1
        log_fault(message)
        if logged_changes is not None:
            self.store.change_digest = logged_changes
        return False

    # -- idempotency ------------------------------------------------------

    def remembered(self, key):
        """The (status, result, message) of an earlier call with ``key``, or None."""
        return self.outcomes.get(key)

    def remember(self, key, outcome) -> None:
        outcomes = self.outcomes
        outcomes[key] = outcome
        if len(outcomes) > self.idempotency_window:
            outcomes.popitem(last=False)

    # -- multi-partition fragments ----------------------------------------

    def begin_fragments(self, txn_id: int, timestamp_us: int) -> None:
        """Open the coordinator's transaction here."""
        if self.store.in_transaction:
            raise ProtocolError("a multi-partition transaction is already open here")
        self.last_txn_id = max(self.last_txn_id, txn_id)
        self._last_timestamp_us = max(self._last_timestamp_us, timestamp_us)
        self.calls += 1
        self._protect_replicated(False)
        self.store.begin()

    def run_fragment(self, table_name: str, op: str, args: list):
        """One statement of the open multi-partition transaction."""
        if op not in FRAGMENT_OPS:
            raise ProtocolError(f"unknown fragment operation {op!r}")
        table = self.store.tables.get(table_name)
        if table is None:
            raise ProtocolError(f"unknown table {table_name!r} in a fragment")
        if op == "len":
            return len(table)
        if op == "get":
            return table.get(args[0])
        if op == "insert":
            return table.insert(*args[0], **args[1])
        if op == "upsert":
            return table.upsert(*args[0], **args[1])
        if op == "update":
            return table.update(args[0], **args[1])
        if op == "delete":
            return table.delete(args[0])
        if op == "truncate":
            return table.truncate()
        if op == "scan":
            return list(table.scan())
        if op == "column_array":
            return table.column_array(args[0]).tolist()
        index = table.index(args[0])
        if op == "index_len":
            return len(index)
        if op == "index_get":
            return index.get(args[1])
        if op == "index_find":
            return index.find(args[1])
        return index.range(args[1], args[2], **args[3])       # index_range

    def end_fragments(self, commit: bool) -> None:
        if self.store.in_transaction:
            if commit:
                self.store.commit()
            else:
                self.store.rollback()
                self.aborts += 1
        self._protect_replicated(self.partitions > 1)

    # -- statistics ---------------------------------------------------------

    def state_hash(self) -> dict:
        """Each table's row count and an order-independent hash of its rows
        (the sum of a 64-bit hash of every row's wire encoding, mod 2**64):
        equal states give equal hashes, whatever the insertion order."""
        tables = {}
        for name, table in sorted(self.store.tables.items()):
            total = 0
            for row in table.scan():
                total += mmh3.hash64(pack(tuple(row)), signed=False)[0]
            tables[name] = {"rows": len(table), "hash": f"{total & 0xFFFFFFFFFFFFFFFF:016x}"}
        return tables

    def statistics(self) -> dict:
        tables = {}
        for name, table in self.store.tables.items():
            tables[name] = {"rows": len(table), "memory_bytes": table.memory_bytes,
                            "view": table.is_view}
        procedures = {b.name: {"calls": b.calls, "aborts": b.aborts}
                      for b in self.procedures.values() if b.calls}
        return {"partition": self.partition_id, "calls": self.calls, "aborts": self.aborts,
                "last_txn_id": self.last_txn_id, "tables": tables, "procedures": procedures,
                "latency": self.latency.to_wire(),
                "idempotency_keys": len(self.outcomes),
                "determinism_faults": self.determinism_faults,
                "change_digest": f"{self.store.change_digest:016x}"}


def cluster_state_hash(catalog, per_partition: list[dict]) -> dict:
    """Combine partitions' ``state_hash()``es: a partitioned table's rows and
    hashes add up; a replicated table is partition 0's copy (every copy
    must agree, or its entry says so). ``total`` hashes all tables."""
    tables = {}
    for name in per_partition[0]:
        if name in catalog.tables:
            replicated = catalog.tables[name].is_replicated
        else:
            replicated = catalog.tables[catalog.views[name].source].is_replicated
        parts = [p[name] for p in per_partition]
        if replicated:
            entry = dict(parts[0])
            if any(p != parts[0] for p in parts):
                entry["copies_differ"] = True
        else:
            entry = {"rows": sum(p["rows"] for p in parts),
                     "hash": f"{sum(int(p['hash'], 16) for p in parts) & (2**64 - 1):016x}"}
        tables[name] = entry
    total = 0
    for name, entry in sorted(tables.items()):
        total = (total * 1_000_003 + int(entry["hash"], 16) + entry["rows"]) & (2**64 - 1)
    return {"tables": tables, "total": f"{total:016x}"}
