"""One partition, in process: its store, its procedures, its transactions.

A Partition holds the native Store with every table of the application
(partitioned tables hold this partition's rows; replicated tables a full
copy), one instance of every procedure class bound to those tables, and
runs invocations one at a time, each in its own transaction:

    call(name, *params)
      -> find the procedure, check the parameter count (ParameterError)
      -> assign the transaction id and timestamp
      -> store.begin(); procedure.run(*params)
      -> returned: store.commit(); the result goes back to the caller
      -> raised:   store.rollback(); the error goes back to the caller:
                   Abort and schema rule violations as they are,
                   any other exception as a ProcedureError

The server issue puts this behind the network (one process per
partition); the multi-partition coordinator calls into it too. Nothing
here awaits: a transaction runs to completion once started.

Invariants:
1. No transaction is open between calls: every call ends in exactly one
   commit or one rollback.
2. Transaction ids increase by one per call; timestamps strictly increase
   (a clock that goes back is ignored), so both are unique per partition.
"""

from __future__ import annotations

import inspect
import time
import types

from flowstate.errors import FlowstateError, ParameterError, ProcedureError, UnknownProcedureError
from flowstate.native.storage import Store
from flowstate.server.application import Application, load_application, run_parameters

__all__ = ["Partition", "build_store"]


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


class _Bound:
    """A procedure instance with what the partition checks before running it."""

    __slots__ = ("name", "instance", "run", "fewest", "most")

    def __init__(self, name, instance):
        self.name = name
        self.instance = instance
        self.run = instance.run
        self.fewest, self.most = run_parameters(type(instance))


class Partition:
    """Runs an application's procedures serially against its own store."""

    def __init__(self, app: Application | str | None = None, partition_id: int = 0,
                 clock=time.time_ns):
        if not isinstance(app, Application):
            app = load_application(app)
        self.app = app
        self.partition_id = partition_id
        self.store = build_store(app.catalog)
        self.db = types.SimpleNamespace(**self.store.tables)
        self._clock = clock
        self._last_timestamp_us = 0
        self.last_txn_id = 0
        self._procedures: dict[str, _Bound] = {}
        for name, cls in app.procedures.items():
            instance = cls()
            instance.db = self.db
            bound = _Bound(name, instance)
            self._procedures[name] = bound
            self._procedures.setdefault(name.lower(), bound)
        self.calls = 0
        self.aborts = 0

    @property
    def procedure_names(self) -> list[str]:
        return list(self.app.procedures)

    def call(self, name: str, *params):
        """Run one invocation as a transaction; return its result or raise."""
        bound = self._procedures.get(name)
        if bound is None:
            bound = self._procedures.get(name.lower()) if isinstance(name, str) else None
            if bound is None:
                raise UnknownProcedureError(f"there is no procedure {name!r}; the application "
                                            f"has {', '.join(self.procedure_names) or 'none'}")
        n = len(params)
        if n < bound.fewest or n > bound.most:
            raise ParameterError(self._count_message(bound, n))
        proc = bound.instance
        self.last_txn_id = txn_id = self.last_txn_id + 1
        now = self._clock() // 1000
        if now <= self._last_timestamp_us:
            now = self._last_timestamp_us + 1
        self._last_timestamp_us = now
        proc.txn_id = txn_id
        proc.timestamp_us = now
        proc._random = None
        store = self.store
        self.calls += 1
        store.begin()
        try:
            result = bound.run(*params)
        except FlowstateError:
            store.rollback()
            self.aborts += 1
            raise
        except Exception as e:
            store.rollback()
            self.aborts += 1
            raise ProcedureError(f"{bound.name} failed: {type(e).__name__}: {e}") from e
        except BaseException:
            store.rollback()
            raise
        store.commit()
        return result

    def _count_message(self, bound: _Bound, n: int) -> str:
        names = list(inspect.signature(bound.run).parameters)
        if bound.fewest == bound.most:
            want = f"{bound.fewest}"
        elif bound.most == float("inf"):
            want = f"at least {bound.fewest}"
        else:
            want = f"{bound.fewest} to {bound.most}"
        return f"{bound.name} takes {want} parameter(s) ({', '.join(names)}), got {n}"
