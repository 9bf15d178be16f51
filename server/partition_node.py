"""A partition process: one Partition executor behind the network.

The process owns one partition's rows. Its event loop reads every frame a
connection has ready, runs each call it owns to completion right there
(procedures never await), and writes all the answers of that read in one
write. Calls it does not own are forwarded over a Link: single-partition
calls to their owner, multi-partition calls and the cluster-wide system
procedures to the coordinator.

On its Unix socket the coordinator opens multi-partition transactions
(MP_BEGIN), sends statement fragments (MP_FRAGMENT) and ends them
(MP_END). From MP_BEGIN to MP_END the partition reads no other
connection, so nothing else runs here in between; if the coordinator's
connection drops mid-transaction, the transaction is rolled back.

Invariant: a call runs here only if this partition owns its partitioning
value under the topology (or the cluster has one partition).
"""

from __future__ import annotations

import ctypes
import logging
import os
import signal
import sys
import time

from flowstate.errors import (AbortedError, FlowstateError, InternalError, MalformedMessageError,
                              ProtocolError)
from flowstate.protocol import (CALL, HELLO, MP_BEGIN, MP_END, MP_FRAGMENT, MP_TAG_BITS, REPLY,
                                RESPONSE, SNAPSHOT, frame, options_error, pack,
                                unpack)
from flowstate.routing import BUCKETS, Topology, partition_hash
from flowstate.server import sysprocs
from flowstate.server.application import load_application
from flowstate.server.network import (Connection, Node, error_frame, internal_error, node_main,
                                      response_frame)
from flowstate.server.commandlog import CUT as LOG_CUT, MP as LOG_MP
from flowstate.server.commandlog import OUTCOME as LOG_OUTCOME
from flowstate.server.commandlog import CommandLog
from flowstate.server.partition import WRITE_OPS, Partition
from flowstate.server.recovery import log_directory, recover_partition
from flowstate.server.snapshot import write_snapshot

log = logging.getLogger("flowstate")

__all__ = ["PartitionNode", "main"]


class PartitionNode(Node):
    role = "partition"

    def __init__(self, config: dict):
        super().__init__(config)
        self.partition_id = config["partition"]
        app = load_application(config["app"])
        self.partition = Partition(app, self.partition_id, partitions=config["partitions"])
        self.topology = Topology(config["partitions"], config.get("bucket_map"))
        self.procedures = self.partition.procedures
        for bound in self.procedures.values():
            bound.max_params = self.limits["max_params"]
        self.partition.idempotency_window = config.get("idempotency_window",
                                                       Partition.IDEMPOTENCY_MEMORY)
        self.mp_connection: Connection | None = None
        self.mp_txn: tuple[int, int] | None = None
        self.mp_writes: list = []
        self.in_doubt: int | None = None      # txn id whose outcome the coordinator owes us
        self.snapshot: dict | None = None     # the last snapshot started here
        self.durability = config.get("durability", "off")
        self.command_log: CommandLog | None = None

    async def start(self) -> None:
        """Recover from the data folder, then open the command log."""
        if self.durability == "off":
            return
        data_dir = self.config["data_dir"]
        recovered = recover_partition(self.partition, data_dir)
        self.command_log = CommandLog(log_directory(data_dir, self.partition_id),
                                      self.partition_id, self.durability,
                                      self.config.get("fsync_interval_ms", 10.0),
                                      self.config.get("segment_bytes", 64 << 20))
        self.command_log.open(self.loop, recovered["tail"], recovered["torn"])
        for payload in recovered["append"]:
            self.command_log.write_now(payload)
        self.command_log.sync_now()

    def answer(self, conn: Connection) -> None:
        command_log = self.command_log
        # The coordinator's channel waits for the disk in async mode too: a
        # multi-partition transaction's logged writes are computed from this
        # state, so the records before it must not be lost if they are not.
        if command_log is not None and (command_log.must_hold or (
                conn is self.mp_connection and command_log.unwritten)):
            out = conn.out
            command_log.hold(conn, out[0] if len(out) == 1 else b"".join(out))
            out.clear()
        else:
            super().answer(conn)

    def busy(self) -> bool:
        return super().busy() or (self.command_log is not None and self.command_log.busy)

    async def drain(self) -> None:
        await super().drain()
        if self.command_log is not None:
            self.command_log.close()

    # -- clients -------------------------------------------------------------------

    def handle(self, conn: Connection, messages: list) -> None:
        partition = self.partition
        procedures = self.procedures
        out = conn.out
        command_log = self.command_log
        if command_log is not None:
            partition.refuse_writes = command_log.refusal()
        single = self.topology.partitions == 1
        bucket_map = self.topology.bucket_map
        me = self.partition_id
        for message in messages:
            kind = message[0]
            if kind == CALL and len(message) == 5 and type(message[2]) is str and (
                    message[4] is None or type(message[4]) is dict
                    and "idempotency_key" not in message[4]):
                request_id = message[1]
                bound = procedures.get(message[2])
                if bound is None:
                    self.guarded(conn, message, self.slow_call)
                    continue
                params = message[3]
                try:
                    bound.check(params)
                    index = bound.partition_parameter
                    if index is None:
                        self.forward_to_coordinator(conn, message)
                        continue
                    if not single:
                        owner = bucket_map[partition_hash(params[index]) % BUCKETS]
                        if owner != me:
                            self.forward_to_partition(owner, conn, message)
                            continue
                    result = partition.run(bound, params)
                except FlowstateError as e:
                    out.append(error_frame(request_id, e))
                    continue
                if partition.wrote and command_log is not None:
                    proc = bound.instance
                    if not command_log.pending.append_call(
                            proc.txn_id, proc.timestamp_us, bound.name, params, None, result,
                            partition.store.change_digest):
                        command_log.append_call(proc.txn_id, proc.timestamp_us, bound.name,
                                                params, None, result, partition.store.change_digest)
                try:
                    out.append(response_frame(request_id, result))
                except Exception as e:
                    out.append(error_frame(request_id, _unsendable(bound.name, e)))
                continue
            if kind == CALL:
                self.guarded(conn, message, self.slow_call)
            elif kind == HELLO:
                self.guarded(conn, message, self.handle_hello)
            elif conn.internal and type(kind) is int and MP_BEGIN <= kind <= SNAPSHOT:
                self.guarded(conn, message, self.internal)
            else:
                self.guarded(conn, message, self.unknown_kind)

    def slow_call(self, conn: Connection, message: list) -> None:
        """A CALL off the fast path: options, system procedures, bad shapes."""
        out = conn.out
        if len(message) not in (4, 5) or not isinstance(message[1], int):
            request_id = message[1] if len(message) > 1 and isinstance(message[1], int) else 0
            out.append(error_frame(request_id, MalformedMessageError(
                "a CALL is [1, request_id, procedure, [params...], options or nil]")))
            return
        request_id, name, params = message[1], message[2], message[3]
        if not isinstance(name, str):
            out.append(error_frame(request_id, MalformedMessageError(
                f"a procedure name is a string, got {type(name).__name__}")))
            return
        options = message[4] if len(message) == 5 else None
        problem = options_error(options)
        if problem is not None:
            out.append(error_frame(request_id, MalformedMessageError(problem)))
            return
        if isinstance(name, str) and name.startswith("@"):
            try:
                sysprocs.check_array(name, params)
                if name in sysprocs.CLUSTER_WIDE:
                    self.forward_to_coordinator(conn, message)
                    return
                out.append(response_frame(request_id, sysprocs.local(self, name, params)))
            except FlowstateError as e:
                out.append(error_frame(request_id, e))
            return
        partition = self.partition
        try:
            bound = partition.lookup(name)
            bound.check(params)
            index = bound.partition_parameter
            if index is None:
                self.forward_to_coordinator(conn, message)
                return
            if self.topology.partitions > 1:
                owner = self.topology.partition_of(params[index])
                if owner != self.partition_id:
                    self.forward_to_partition(owner, conn, message)
                    return
        except FlowstateError as e:
            out.append(error_frame(request_id, e))
            return
        key = options.get("idempotency_key") if options else None
        if key is not None:
            earlier = partition.remembered(key)
            if earlier is not None:
                out.append(frame([RESPONSE, request_id, *earlier]))
                return
        partition.wrote = False
        try:
            outcome = (0, partition.run(bound, params), None)
        except FlowstateError as e:
            outcome = (e.code, None, e.message)
        if partition.wrote and self.command_log is not None:
            proc = bound.instance
            self.command_log.append_call(proc.txn_id, proc.timestamp_us, bound.name, params, key,
                                         outcome[1], partition.store.change_digest)
        try:
            data = frame([RESPONSE, request_id, *outcome])
        except Exception as e:
            error = _unsendable(bound.name, e)
            outcome = (error.code, None, error.message)
            data = frame([RESPONSE, request_id, *outcome])
        if key is not None and (outcome[0] == 0 or outcome[0] // 100 == AbortedError.code // 100):
            partition.remember(key, outcome)
            if not partition.wrote and self.command_log is not None:
                self.command_log.append(pack([LOG_OUTCOME, key, *outcome]))
        out.append(data)

    def forward_to_coordinator(self, conn: Connection, message: list) -> None:
        self.link("coordinator", self.config["coordinator_unix_path"]).forward(conn, message)

    def forward_to_partition(self, owner: int, conn: Connection, message: list) -> None:
        self.link(f"partition {owner}", self.config["unix_paths"][owner]).forward(conn, message)

    def welcome_info(self) -> dict:
        return sysprocs.welcome_info(self, process=self.partition_id)

    # -- the coordinator -----------------------------------------------------------

    def internal(self, conn: Connection, message: list) -> None:
        kind, seq = message[0], message[1]
        try:
            if kind == MP_FRAGMENT:
                if self.mp_txn is None:
                    raise ProtocolError("no multi-partition transaction is open here (this "
                                        "partition may have restarted since it began)")
                result = self.partition.run_fragment(message[2], message[3], message[4])
                if message[3] in WRITE_OPS:
                    self.mp_writes.append(message[2:5])
            elif kind == MP_BEGIN:
                if self.mp_connection is not None or self.in_doubt is not None:
                    raise ProtocolError("a multi-partition transaction is already open")
                self.partition.begin_fragments(message[2], message[3])
                self.mp_txn = (message[2], message[3])
                self.mp_writes = []
                self.mp_connection = conn
                self.hold_others(conn)
                result = None
            elif kind == MP_END:
                self.end_multi_partition(commit=bool(message[2]))
                result = None
            elif kind == SNAPSHOT:
                result = self.start_snapshot(message[2], message[3])
            else:                                   # STATS [13, seq, with state hash?]
                result = self.statistics()
                if len(message) > 2 and message[2]:
                    result["state_hash"] = self.partition.state_hash()
        except FlowstateError as e:
            conn.out.append(frame([REPLY, seq, e.code, None, e.message]))
            return
        except Exception as e:
            error = internal_error(f"fragment {message[2:4]!r}", e)
            conn.out.append(frame([REPLY, seq, error.code, None, error.message]))
            return
        conn.out.append(frame([REPLY, seq, 0, result, None]))

    # -- snapshots ------------------------------------------------------------------

    def start_snapshot(self, path: str, cut: int) -> dict:
        """Inside the coordinator's cut: mark the log, fork, and let the
        child write the store while this process goes on. Completion shows
        in statistics()["snapshot"]."""
        if self.snapshot is not None and self.snapshot["state"] == "writing":
            raise ProtocolError(f"snapshot {self.snapshot['cut']} is still being written")
        partition = self.partition
        command_log = self.command_log
        meta = {"partition": self.partition_id, "cut": cut,
                "last_txn_id": partition.last_txn_id,
                "last_timestamp_us": partition._last_timestamp_us,
                "change_digest": partition.store.change_digest,
                "outcomes": [[key, list(outcome)] for key, outcome in partition.outcomes.items()],
                "log_segment": None if command_log is None else command_log.segment}
        marker = 0
        if command_log is not None:
            command_log.append(pack([LOG_CUT, cut]))
            marker = command_log.appended
        started = time.perf_counter()
        read_fd, write_fd = os.pipe()
        parent = os.getpid()
        pid = os.fork()
        if pid == 0:                         # the child: write, report, exit
            status = 1
            try:
                os.close(read_fd)
                _die_with_parent(parent)
                if partition.store.in_transaction:
                    partition.store.rollback()      # the cut's own, empty transaction
                written = write_snapshot(partition.store, path, meta)
                os.write(write_fd, pack([0, {k: written[k] for k in ("bytes", "rows", "seconds")}]))
                status = 0
            except BaseException as e:
                try:
                    os.write(write_fd, pack([1, f"{type(e).__name__}: {e}"]))
                except BaseException:
                    pass
            finally:
                os._exit(status)
        os.close(write_fd)
        fork_ms = (time.perf_counter() - started) * 1000
        self.snapshot = {"cut": cut, "state": "writing", "path": path, "pid": pid,
                         "log_segment": meta["log_segment"], "fork_ms": round(fork_ms, 3),
                         "marker": marker, "started": time.time()}
        self.loop.add_reader(read_fd, self._snapshot_written, read_fd, pid)
        log.info("snapshot %d: forked writer %d (the fork took %.1f ms)", cut, pid, fork_ms)
        return {"fork_ms": round(fork_ms, 3), "log_segment": meta["log_segment"]}

    def _snapshot_written(self, read_fd: int, pid: int) -> None:
        data = b""
        try:
            data = os.read(read_fd, 1 << 16)
        finally:
            self.loop.remove_reader(read_fd)
            os.close(read_fd)
            os.waitpid(pid, 0)
        snapshot = self.snapshot
        try:
            status, detail = unpack(data)
        except Exception:
            status, detail = 1, "the snapshot writer died without a word"
        if status:
            snapshot.update(state="failed", error=detail)
            log.error("snapshot %d failed: %s", snapshot["cut"], detail)
            return
        snapshot.update(detail)
        self._snapshot_durable()

    def _snapshot_durable(self) -> None:
        """Done once the CUT record is on disk too (recovery needs it)."""
        snapshot = self.snapshot
        if self.command_log is not None and self.command_log.durable < snapshot["marker"]:
            self.loop.call_later(0.01, self._snapshot_durable)
            return
        snapshot["state"] = "done"
        log.info("snapshot %d written: %s bytes, %s rows in %.2f s", snapshot["cut"],
                 f"{snapshot['bytes']:,}", f"{snapshot['rows']:,}", snapshot["seconds"])

    def end_multi_partition(self, commit: bool) -> None:
        self.mp_connection = None
        self.in_doubt = None
        self.partition.end_fragments(commit)
        if commit and self.mp_txn is not None:
            txn_id, timestamp_us = self.mp_txn
            self.partition.last_mp_seq = txn_id >> MP_TAG_BITS
            if self.mp_writes and self.command_log is not None:
                self.command_log.append(pack([LOG_MP, txn_id >> MP_TAG_BITS, txn_id, timestamp_us,
                                              self.mp_writes, self.partition.store.change_digest]))
        self.mp_txn = None
        self.mp_writes = []
        self.release_others()

    def connection_closed(self, conn: Connection) -> None:
        if conn is not self.mp_connection:
            return
        self.mp_connection = None
        if self.command_log is None:
            log.warning("the coordinator's channel closed inside a multi-partition "
                        "transaction: rolling it back")
            self.end_multi_partition(commit=False)
        else:
            # The coordinator may have logged its decision: wait, held, for
            # it to say (on its next channel) rather than guess.
            self.in_doubt = self.mp_txn[0] if self.mp_txn else None
            log.warning("the coordinator's channel closed inside multi-partition transaction "
                        "%s: holding until the coordinator tells its outcome", self.in_doubt)

    def statistics(self) -> dict:
        stats = self.partition.statistics()
        stats["connections"] = self.client_count
        stats["queue_depth"] = sum(len(c.held or ()) for c in self.connections)
        stats["forwarded_waiting"] = sum(len(link.pending) for link in self.links.values())
        stats["pid"] = __import__("os").getpid()
        stats["last_mp_seq"] = self.partition.last_mp_seq
        stats["in_doubt"] = self.in_doubt
        stats["open_txn"] = None if self.mp_txn is None else self.mp_txn[0]
        stats["snapshot"] = None if self.snapshot is None else {
            k: v for k, v in self.snapshot.items() if k not in ("pid", "marker")}
        stats["command_log"] = (None if self.command_log is None
                                else self.command_log.statistics())
        return stats


def _die_with_parent(parent: int) -> None:
    """In a forked snapshot writer: be killed when the partition dies (the
    death signal is not inherited across fork). An orphaned writer's file
    is never used, and it would go on writing into the snapshot folder
    that the restarted server uses."""
    try:
        ctypes.CDLL("libc.so.6", use_errno=True).prctl(1, signal.SIGKILL)  # PR_SET_PDEATHSIG
    except (OSError, AttributeError):
        return
    if os.getppid() != parent:           # it died before the signal was set
        os._exit(1)


def _unsendable(name: str, e: Exception) -> InternalError:
    return InternalError(f"{name} committed, but its result cannot be sent: {e}")


def main(argv=None) -> int:
    return node_main(PartitionNode, lambda config: f"partition-{config['partition']}", argv)


if __name__ == "__main__":
    sys.exit(main())
