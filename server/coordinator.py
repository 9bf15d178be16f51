"""The coordinator process: multi-partition transactions, the front door,
and the cluster-wide system procedures.

Its TCP port (21212 by default) accepts any call. Single-partition calls
are forwarded to their owner over a Link (a driver with client affinity
sends them straight to the owner instead). Multi-partition calls go into
a bounded queue (full: OverloadedError) served by one worker thread, so
they run one at a time:

    MP_BEGIN to every partition, wait for all    (each stops running
                                                  anything else)
    run the procedure with self.db = FanoutTables: every statement is a
    fragment sent to the partitions that hold its rows, answered in turn
    returned -> MP_END commit to every partition
    raised   -> MP_END abort: every partition rolls back its part

The worker talks to the partitions over its own blocking Unix-socket
channels (procedure code is synchronous: a statement returns its rows),
and hands each answer back to the event loop thread, which alone writes
to client connections.

Serializability: a multi-partition transaction starts running only once
every partition has stopped, and it is the only one, so each partition's
history is "single-partition calls, then it, then more" and one global
serial order exists.
"""

from __future__ import annotations

import collections
import itertools
import logging
import queue
import socket
import sys
import threading
import time

from flowstate.errors import (AbortedError, ConnectionLostError, ExpiredError, FlowstateError,
                              MalformedMessageError, OverloadedError, ProcedureError,
                              UnavailableError, error_class_for_code)
from flowstate.protocol import (CALL, HELLO, MP_BEGIN, MP_END, MP_FRAGMENT, MP_TAG_BITS, RESPONSE,
                                SNAPSHOT, STATS, FrameReader, frame, options_error, pack,
                                unpack)
from flowstate.routing import Topology
from flowstate.server import sysprocs
from flowstate.server.application import load_application
from flowstate.server.fanout import fanout_database
from flowstate.server.network import (Connection, Node, error_frame, internal_error, node_main,
                                      response_frame)
from flowstate.server.commandlog import DECISION, CommandLog, LogReader, segment_paths
from flowstate.server.files import fsync_directory
from flowstate.server.partition import WRITE_OPS, Bound, cluster_state_hash
from flowstate.server.recovery import COORDINATOR_OWNER, log_directory, recover_coordinator
from flowstate.server.snapshot_folder import describe as describe_snapshots
from flowstate.server.snapshot_folder import (KEEP, complete_snapshots, partition_file, prune,
                                              snapshot_directory, write_manifest)

log = logging.getLogger("flowstate")

#: Put in the multi-partition queue in place of a procedure: take a snapshot.
SNAPSHOT_JOB = object()

__all__ = ["CoordinatorNode", "PartitionChannels", "main"]



class PartitionChannels:
    """The worker's blocking connections to every partition, and the
    ``fragment``/``broadcast`` calls FanoutTables make through them."""

    def __init__(self, paths: list[str], topology: Topology, timeout: float, decide=None):
        self.paths = paths
        self.decide = decide            # txn id -> committed? (for in-doubt partitions)
        self.topology = topology
        self.timeout = timeout
        self.sockets: list[socket.socket | None] = [None] * len(paths)
        self.readers = [FrameReader(1 << 30) for _ in paths]
        self.seq = itertools.count(1)
        self.writes: dict[int, list] = {}      # this transaction's writes, by partition
        self.fragments = 0

    def _socket(self, partition: int) -> socket.socket:
        sock = self.sockets[partition]
        if sock is None:
            deadline = time.monotonic() + self.timeout
            while True:
                sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
                sock.settimeout(self.timeout)
                try:
                    sock.connect(self.paths[partition])
                    break
                except OSError as e:
                    sock.close()
                    if time.monotonic() > deadline:
                        raise UnavailableError(f"partition {partition} is unreachable: {e}") from None
                    time.sleep(0.05)
            self.sockets[partition] = sock
            self.readers[partition] = FrameReader(1 << 30)
            # A partition whose channel dropped inside a transaction waits,
            # held, for its outcome: tell it before anything else.
            self._send(partition, [STATS, next(self.seq)])
            in_doubt = self._receive(partition).get("in_doubt")
            if in_doubt is not None:
                commit = bool(self.decide and self.decide(in_doubt))
                log.warning("partition %d was in doubt about transaction %d: %s", partition,
                            in_doubt, "committed" if commit else "aborted")
                self._send(partition, [MP_END, next(self.seq), commit])
                self._receive(partition)
        return sock

    def reset(self) -> None:
        """Drop every channel (a partition then rolls back what is open)."""
        for i, sock in enumerate(self.sockets):
            if sock is not None:
                sock.close()
            self.sockets[i] = None

    def _send(self, partition: int, message: list) -> None:
        try:
            self._socket(partition).sendall(frame(message))
        except OSError as e:
            self.reset()
            raise UnavailableError(f"lost partition {partition}: {e}") from None

    def _receive(self, partition: int):
        sock = self.sockets[partition]
        reader = self.readers[partition]
        while True:
            try:
                data = sock.recv(1 << 20)
            except OSError as e:
                self.reset()
                raise UnavailableError(f"partition {partition} did not answer: {e}") from None
            if not data:
                self.reset()
                raise UnavailableError(f"partition {partition} closed its channel")
            messages = reader.feed(data)
            if messages:
                # one request at a time per channel: one answer
                _, _, status, result, error = messages[0]
                if status:
                    raise error_class_for_code(status)(error)
                return result

    def request(self, partition: int, message: list):
        self._send(partition, message)
        return self._receive(partition)

    def request_all(self, message: list, succeeded: list | None = None) -> list:
        for partition in range(len(self.paths)):
            self._send(partition, message)
        results, first_error = [], None
        for partition in range(len(self.paths)):
            try:
                results.append(self._receive(partition))
                if succeeded is not None:
                    succeeded.append(partition)
            except FlowstateError as e:
                results.append(None)
                first_error = first_error or e
                if self.sockets[partition] is None:     # the channel is gone
                    raise
        if first_error is not None:
            raise first_error
        return results

    # -- what FanoutTables call ------------------------------------------------

    def begin(self, txn_id: int, timestamp_us: int) -> None:
        """Open a transaction on every partition; start collecting its writes."""
        self.writes = {}
        self.request_all([MP_BEGIN, next(self.seq), txn_id, timestamp_us])

    def fragment(self, partition: int, table: str, op: str, args: list):
        self.fragments += 1
        result = self.request(partition, [MP_FRAGMENT, next(self.seq), table, op, args])
        if op in WRITE_OPS:
            self.writes.setdefault(partition, []).append([table, op, args])
        return result

    def broadcast(self, table: str, op: str, args: list) -> list:
        self.fragments += len(self.paths)
        succeeded = [] if op in WRITE_OPS else None
        try:
            return self.request_all([MP_FRAGMENT, next(self.seq), table, op, args], succeeded)
        finally:
            for partition in succeeded or ():      # a failed statement left no trace there
                self.writes.setdefault(partition, []).append([table, op, args])


class CoordinatorNode(Node):
    role = "coordinator"

    def __init__(self, config: dict):
        super().__init__(config)
        self.app = load_application(config["app"])
        self.topology = Topology(config["partitions"], config.get("bucket_map"))
        self.channels = PartitionChannels(config["channel_paths"], self.topology,
                                          self.limits["fragment_timeout_seconds"],
                                          decide=self._decided)
        self.db = fanout_database(self.app.catalog, self.channels)
        self.procedures: dict[str, Bound] = {}
        for name, cls in self.app.procedures.items():
            instance = cls()
            instance.db = self.db
            bound = Bound(name, instance, self.app.partitioning.get(name), self.app.catalog)
            bound.max_params = self.limits["max_params"]
            self.procedures[name] = bound
            self.procedures.setdefault(name.lower(), bound)
        self.queue: queue.Queue = queue.Queue(maxsize=self.limits["max_queued_mp"])
        self.worker: threading.Thread | None = None
        self.mp_calls = 0
        self.mp_aborts = 0
        self.forwarded = 0
        self.mp_seq = 0                    # the last multi-partition transaction's number
        self.mp_seq_known = False
        self.committed: set[int] = set()     # mp_seq of committed transactions (recent)
        self.last_snapshot = time.monotonic()
        self.snapshot_queued = False
        self.durability = config.get("durability", "off")
        self.command_log: CommandLog | None = None
        self.last_timestamp_us = 0
        self.outcomes: collections.OrderedDict = collections.OrderedDict()
        self.running_mp = 0

    async def start(self) -> None:
        if self.durability != "off":
            data_dir = self.config["data_dir"]
            recovered = recover_coordinator(data_dir)
            self.outcomes.update(recovered["outcomes"])
            self.mp_seq = recovered["last_mp_seq"]
            self.committed.update(recovered["committed"])
            self.command_log = CommandLog(log_directory(data_dir, COORDINATOR_OWNER),
                                          COORDINATOR_OWNER, self.durability,
                                          self.config.get("fsync_interval_ms", 10.0),
                                          self.config.get("segment_bytes", 64 << 20))
            self.command_log.open(self.loop, recovered["tail"], recovered["torn"])
            if self.durability == "async":
                self.loop.call_later(self.command_log.fsync_interval, self._sync_log)
            self.loop.call_later(2.0, self._snapshot_due)
        self.worker = threading.Thread(target=self._work, name="multi-partition", daemon=True)
        self.worker.start()

    def _sync_log(self) -> None:
        """Async durability: fsync the decisions written since the last tick."""
        self.loop.run_in_executor(None, self.command_log.sync_now)
        self.loop.call_later(self.command_log.fsync_interval, self._sync_log)

    def busy(self) -> bool:
        return super().busy() or self.running_mp > 0 or not self.queue.empty()

    async def drain(self) -> None:
        await super().drain()
        self.queue.put(None)

    def welcome_info(self) -> dict:
        return sysprocs.welcome_info(self, process="coordinator")

    # -- calls --------------------------------------------------------------------

    def handle(self, conn: Connection, messages: list) -> None:
        for message in messages:
            kind = message[0]
            if kind == CALL:
                self.guarded(conn, message, self.call)
            elif kind == HELLO:
                self.guarded(conn, message, self.handle_hello)
            else:
                self.guarded(conn, message, self.unknown_kind)

    def call(self, conn: Connection, message: list) -> None:
        out = conn.out
        if len(message) not in (4, 5) or not isinstance(message[1], int) \
                or not isinstance(message[2], str):
            request_id = message[1] if len(message) > 1 and isinstance(message[1], int) else 0
            out.append(error_frame(request_id, MalformedMessageError(
                "a CALL is [1, request_id, procedure name, [params...], options or nil]")))
            return
        request_id, name, params = message[1], message[2], message[3]
        options = message[4] if len(message) == 5 else None
        problem = options_error(options)
        if problem is not None:
            out.append(error_frame(request_id, MalformedMessageError(problem)))
            return
        try:
            if name.startswith("@"):
                self.system_procedure(conn, request_id, name, params)
                return
            bound = self.procedures.get(name) or self.procedures.get(name.lower())
            if bound is None:
                from flowstate.errors import UnknownProcedureError
                raise UnknownProcedureError(
                    f"there is no procedure {name!r}; the application has "
                    f"{', '.join(self.app.procedures) or 'none'}")
            bound.check(params)
            if bound.partition_parameter is not None:
                owner = self.topology.partition_of(params[bound.partition_parameter])
                self.forwarded += 1
                self.link(f"partition {owner}", self.config["unix_paths"][owner]).forward(
                    conn, message)
                return
            if conn.inflight >= self.limits["max_inflight"]:
                raise OverloadedError(f"this connection has {conn.inflight} calls in flight "
                                      f"(limit {self.limits['max_inflight']})")
            timeout_ms = options.get("timeout_ms") if options else None
            deadline = (time.monotonic() + timeout_ms / 1000
                        if isinstance(timeout_ms, (int, float)) and timeout_ms > 0 else None)
            key = options.get("idempotency_key") if options else None
            try:
                self.queue.put_nowait((conn, request_id, bound, params, deadline, key))
            except queue.Full:
                raise OverloadedError(
                    f"{self.queue.qsize()} multi-partition calls are queued (limit "
                    f"{self.limits['max_queued_mp']}); retry later") from None
            conn.inflight += 1
        except FlowstateError as e:
            out.append(error_frame(request_id, e))

    def system_procedure(self, conn: Connection, request_id: int, name: str, params) -> None:
        sysprocs.check_array(name, params)
        if name == "@SystemInformation":
            if params:
                from flowstate.errors import ParameterError
                raise ParameterError(f"{name} takes no parameters, got {len(params)}")
            conn.out.append(response_frame(request_id, sysprocs.system_information(self)))
        elif name == "@SnapshotSave":
            if conn.inflight >= self.limits["max_inflight"]:
                raise OverloadedError("too many calls in flight on this connection")
            try:
                self.queue.put_nowait((conn, request_id, SNAPSHOT_JOB, "requested", None, None))
            except queue.Full:
                raise OverloadedError("the multi-partition queue is full; retry later") from None
            conn.inflight += 1
        elif name == "@SnapshotStatus":
            conn.out.append(response_frame(request_id, {
                "snapshots": describe_snapshots(self.config["data_dir"]),
                "queued": self.snapshot_queued,
                "seconds_since_last": round(time.monotonic() - self.last_snapshot, 3)}))
        elif name == "@StateHash":
            if params:
                from flowstate.errors import ParameterError
                raise ParameterError(f"{name} takes no parameters, got {len(params)}")
            conn.inflight += 1
            self.loop.create_task(self._state_hash(conn, request_id))
        elif name == "@Statistics":
            if params:
                from flowstate.errors import ParameterError
                raise ParameterError(f"{name} takes no parameters, got {len(params)}")
            conn.inflight += 1
            self.loop.create_task(self._statistics(conn, request_id))
        else:
            conn.out.append(response_frame(request_id, sysprocs.local(self, name, params)))

    async def _statistics(self, conn: Connection, request_id: int) -> None:
        import asyncio
        try:
            futures = [self.link(f"partition {i}", path).request([STATS, 0])
                       for i, path in enumerate(self.config["unix_paths"])]
            partitions = []
            for i, answer in enumerate(await asyncio.wait_for(asyncio.gather(*futures),
                                                              self.limits["fragment_timeout_seconds"])):
                status, result, error = answer
                partitions.append(result if status == 0 else {"partition": i, "error": error})
            stats = {"partitions": partitions,
                     "coordinator": {"multi_partition_calls": self.mp_calls,
                                     "multi_partition_aborts": self.mp_aborts,
                                     "forwarded_calls": self.forwarded,
                                     "queue_depth": self.queue.qsize(),
                                     "connections": self.client_count,
                                     "fragments": self.channels.fragments}}
            conn.send(response_frame(request_id, stats))
        except Exception as e:
            error = e if isinstance(e, FlowstateError) else UnavailableError(
                f"statistics could not be gathered: {type(e).__name__} {e}")
            conn.send(error_frame(request_id, error))
        finally:
            conn.inflight -= 1

    async def _state_hash(self, conn: Connection, request_id: int) -> None:
        import asyncio
        try:
            futures = [self.link(f"partition {i}", path).request([STATS, 0, True])
                       for i, path in enumerate(self.config["unix_paths"])]
            answers = await asyncio.wait_for(asyncio.gather(*futures),
                                             self.limits["fragment_timeout_seconds"])
            for i, (status, _, error) in enumerate(answers):
                if status:
                    raise UnavailableError(f"partition {i}: {error}")
            conn.send(response_frame(request_id, cluster_state_hash(
                self.app.catalog, [result["state_hash"] for _, result, _ in answers])))
        except Exception as e:
            error = e if isinstance(e, FlowstateError) else UnavailableError(
                f"the state hash could not be gathered: {type(e).__name__} {e}")
            conn.send(error_frame(request_id, error))
        finally:
            conn.inflight -= 1

    # -- the multi-partition worker --------------------------------------------------

    def _deliver(self, conn: Connection, data: bytes) -> None:
        conn.inflight -= 1
        conn.send(data)

    def _work(self) -> None:
        if self.command_log is not None:
            # Partitions a killed predecessor left in doubt hold every call
            # until a channel tells them the outcome: open the channels now,
            # not at the next multi-partition call (which may never come).
            try:
                for stats in self.channels.request_all([STATS, next(self.channels.seq)]):
                    self.mp_seq = max(self.mp_seq, stats.get("last_mp_seq") or 0)
                self.mp_seq_known = True
            except FlowstateError as e:
                self.channels.reset()
                log.warning("could not reach every partition at start (%s); trying again at "
                            "the first multi-partition call", e.message)
        while True:
            job = self.queue.get()
            if job is None:
                return
            conn, request_id, bound, params, deadline, key = job
            self.running_mp = 1
            try:
                if bound is SNAPSHOT_JOB:
                    data = self._snapshot(request_id, reason=params)
                else:
                    data = self._run(request_id, bound, params, deadline, key)
            except BaseException as e:           # never let the worker die silently
                data = error_frame(request_id, internal_error("the multi-partition worker", e))
            if conn is not None:
                self.loop.call_soon_threadsafe(self._deliver, conn, data)
            self.running_mp = 0

    # -- snapshots ----------------------------------------------------------------

    def _snapshot(self, request_id: int, reason: str) -> bytes:
        """Take a consistent cut (in the worker, as a multi-partition
        transaction: every partition forks at the same point), wait for the
        files, write the manifest, prune old snapshots and log segments."""
        if self.durability == "off":
            return error_frame(request_id, UnavailableError(
                "snapshots need a durable server (--durability sync or async): without a "
                "command log a snapshot could not be recovered consistently"))
        channels = self.channels
        started = time.monotonic()
        data_dir = self.config["data_dir"]
        try:
            if not self.mp_seq_known:
                # as in _run: the partitions may know of later numbers than
                # this log (a cut is one: it must never be given out twice)
                for stats in channels.request_all([STATS, next(channels.seq)]):
                    self.mp_seq = max(self.mp_seq, stats.get("last_mp_seq") or 0)
                self.mp_seq_known = True
            self.mp_seq += 1
            cut = self.mp_seq
            txn_id = (cut << MP_TAG_BITS) | ((1 << MP_TAG_BITS) - 1)
            now = max(time.time_ns() // 1000, self.last_timestamp_us + 1)
            self.last_timestamp_us = now
            directory = snapshot_directory(data_dir, cut)
            directory.mkdir(parents=True, exist_ok=True)
            channels.begin(txn_id, now)
            try:
                forks = [channels.request(i, [SNAPSHOT, next(channels.seq),
                                              str(partition_file(directory, i)), cut])
                         for i in range(len(channels.paths))]
            finally:
                channels.request_all([MP_END, next(channels.seq), True])
            paused_ms = (time.monotonic() - started) * 1000
            deadline = time.monotonic() + self.limits["snapshot_timeout_seconds"]
            while True:
                states = [stats.get("snapshot") or {} for stats in
                          channels.request_all([STATS, next(channels.seq)])]
                failed = [(i, st.get("error")) for i, st in enumerate(states)
                          if st.get("cut") != cut or st.get("state") == "failed"]
                if failed:
                    raise UnavailableError(f"snapshot {cut} failed at partition "
                                           f"{failed[0][0]}: {failed[0][1]}")
                if all(st.get("state") == "done" for st in states):
                    break
                if time.monotonic() > deadline:
                    raise UnavailableError(f"snapshot {cut} did not finish in time")
                time.sleep(0.02)
            summary = {"cut": cut, "path": str(directory), "reason": reason,
                       "created_at": time.time(),
                       "bytes": sum(st["bytes"] for st in states),
                       "rows": sum(st["rows"] for st in states),
                       "seconds": round(time.monotonic() - started, 3),
                       "cut_ms": round(paused_ms, 3),
                       "fork_ms": [f.get("fork_ms") for f in forks],
                       "log_segments": {str(i): st.get("log_segment")
                                        for i, st in enumerate(states)}}
            write_manifest(directory, summary)
            pruned = prune(data_dir, {i: log_directory(data_dir, i)
                                      for i in range(len(channels.paths))})
            oldest_kept = complete_snapshots(data_dir)[:KEEP][-1][0]
            pruned["coordinator_segments"] = self._prune_own_log(oldest_kept)
            summary["pruned"] = pruned
            self.last_snapshot = time.monotonic()
            self.snapshot_queued = False
            log.info("snapshot %d complete (%s): %s bytes, %s rows in %.2f s; deleted %d "
                     "older snapshot(s), %d partition log segment(s) and %d of the "
                     "coordinator's", cut, reason, f"{summary['bytes']:,}",
                     f"{summary['rows']:,}", summary["seconds"], len(pruned["snapshots"]),
                     pruned["segments"], pruned["coordinator_segments"])
            return response_frame(request_id, summary)
        except FlowstateError as e:
            channels.reset()
            self.snapshot_queued = False
            self.last_snapshot = time.monotonic()       # not again at once
            log.error("snapshot failed: %s", e.message)
            return error_frame(request_id, e)
        except OSError as e:
            channels.reset()
            self.snapshot_queued = False
            self.last_snapshot = time.monotonic()
            log.error("snapshot failed: %s", e)
            return error_frame(request_id, UnavailableError(f"the snapshot failed: {e}"))

    def _prune_own_log(self, cut: int) -> int:
        """Delete this log's segments whose decisions are all at or before
        ``cut``, the oldest kept snapshot's: every partition's snapshot
        holds their writes, so no recovery reads them any more. Their
        keyed outcomes that are still remembered are logged again first
        (DECISION records without writes), so that a restart still answers
        retries of those keys. The segment being written stays. Returns
        how many segments were deleted. (On the worker thread, which is
        the only writer of this log.)"""
        command_log = self.command_log
        reader = LogReader(command_log.directory, COORDINATOR_OWNER)
        old = {int(p.stem): p for p in segment_paths(command_log.directory)
               if int(p.stem) < command_log.segment}
        if not old:
            return 0
        deletable = dict.fromkeys(old, True)
        keyed: list = []
        for number, _, payload in reader.records():
            if number >= command_log.segment:
                break
            record = unpack(payload)
            if record[0] == DECISION:
                deletable[number] = deletable[number] and record[1] <= cut
                if record[5] is not None:
                    keyed.append((number, record))
        gone = []
        for number in old:                 # a prefix: later decisions are later in the log
            if not deletable[number]:
                break
            gone.append(number)
        if not gone:
            return 0
        carried = []
        for number, (_, mp_seq, txn_id, timestamp_us, _, key, status, result) in keyed:
            if number <= gone[-1] and key in self.outcomes:
                carried.append(pack([DECISION, mp_seq, txn_id, timestamp_us, {}, key, status,
                                     result]))
        if carried:
            command_log.write_many(carried)
        for number in gone:
            old[number].unlink()
        fsync_directory(command_log.directory)
        return len(gone)

    def _snapshot_due(self) -> None:
        """Every few seconds: queue a snapshot when the interval has passed
        or a partition's log has grown past the limit since the last one."""
        self.loop.call_later(2.0, self._snapshot_due)
        if self.snapshot_queued or self.durability == "off":
            return
        interval = self.config.get("snapshot_interval_s") or 0
        log_limit = self.config.get("snapshot_log_bytes") or 0
        reason = None
        if interval and time.monotonic() - self.last_snapshot >= interval:
            reason = "interval"
        elif log_limit:
            segment = self.config.get("segment_bytes", 64 << 20)
            for i in range(len(self.config["unix_paths"])):
                if len(segment_paths(log_directory(self.config["data_dir"], i))) * segment \
                        > log_limit:
                    reason = "log size"
                    break
        if reason is not None:
            try:
                self.queue.put_nowait((None, 0, SNAPSHOT_JOB, reason, None, None))
                self.snapshot_queued = True
            except queue.Full:
                pass

    def _run(self, request_id: int, bound: Bound, params, deadline, key) -> bytes:
        if deadline is not None and time.monotonic() > deadline:
            return error_frame(request_id, ExpiredError(
                f"{bound.name} waited in the multi-partition queue past its timeout; it did not run"))
        if key is not None and key in self.outcomes:
            return frame([RESPONSE, request_id, *self.outcomes[key]])
        channels = self.channels
        try:
            if self.mp_seq_known is False:
                # a partition may have logged later transactions than this log holds
                # (async durability): continue after the highest
                for stats in channels.request_all([STATS, next(channels.seq)]):
                    self.mp_seq = max(self.mp_seq, stats.get("last_mp_seq") or 0)
                self.mp_seq_known = True
            self.mp_calls += 1
            mp_seq = self.mp_seq + 1
            txn_id = (mp_seq << MP_TAG_BITS) | ((1 << MP_TAG_BITS) - 1)
            now = max(time.time_ns() // 1000, self.last_timestamp_us + 1)
            self.last_timestamp_us = now
            proc = bound.instance
            proc.txn_id, proc.timestamp_us, proc._random = txn_id, now, None
            channels.begin(txn_id, now)
            self.mp_seq = mp_seq
        except FlowstateError as e:
            channels.reset()
            return error_frame(request_id, e if isinstance(e, UnavailableError) else
                               UnavailableError(f"could not start {bound.name}: {e.message}"))
        outcome = None
        try:
            result = bound.run(*params)
            data = response_frame(request_id, result)
        except FlowstateError as e:
            outcome = (e.code, None, e.message)
        except Exception as e:
            error = ProcedureError(f"{bound.name} failed: {type(e).__name__}: {e}")
            outcome = (error.code, None, error.message)
        else:
            if self.command_log is not None and channels.writes:
                # Prepare: every partition must still hold this transaction
                # open. One that died and came back (recovered without these
                # writes) would never apply a logged decision.
                try:
                    for i, stats in enumerate(channels.request_all([STATS, next(channels.seq)])):
                        if stats.get("open_txn") != txn_id:
                            raise UnavailableError(f"partition {i} restarted during {bound.name}")
                except FlowstateError as e:
                    error = UnavailableError(f"{bound.name} was not committed: {e.message}")
                    outcome = (error.code, None, error.message)
                    key = None
            if outcome is None and self.command_log is not None and (
                    channels.writes or key is not None):
                try:
                    self.command_log.write_now(pack([DECISION, mp_seq, txn_id, now,
                                                     channels.writes, key, 0, result]))
                except OSError as e:
                    error = UnavailableError(f"{bound.name} was not committed: the command "
                                             f"log cannot be written ({e})")
                    outcome = (error.code, None, error.message)
                    key = None                      # not an outcome to remember
            if self.command_log is None or outcome is None:
                return self._commit(request_id, bound, key, result, data)
        self.mp_aborts += 1

        try:
            channels.request_all([MP_END, next(channels.seq), False])
        except FlowstateError as e:
            channels.reset()         # each partition rolls back when its channel closes
            log.error("%s: rollback failed at a partition: %s", bound.name, e.message)
        if isinstance(outcome[0], int) and outcome[0] // 100 == AbortedError.code // 100 \
                and key is not None:
            if self.command_log is not None:
                try:
                    self.command_log.write_now(pack([DECISION, mp_seq, txn_id, now, {}, key,
                                                     outcome[0], outcome[2]]))
                except OSError:
                    pass                    # an abort changed nothing; only the key is lost
            self._remember(key, outcome)
        return frame([RESPONSE, request_id, *outcome])

    def _commit(self, request_id, bound, key, result, data) -> bytes:
        self.committed.add(self.mp_seq)
        if len(self.committed) > 10_000:
            self.committed.discard(min(self.committed))
        try:
            self.channels.request_all([MP_END, next(self.channels.seq), True])
        except FlowstateError as e:
            self.channels.reset()
            log.error("%s: commit failed at a partition: %s", bound.name, e.message)
            if self.command_log is None:
                return error_frame(request_id, ConnectionLostError(
                    f"{bound.name}: a partition failed during commit ({e.message}); "
                    f"the outcome is unknown"))
            # the decision is logged: that partition applies it when it recovers
        if key is not None:
            self._remember(key, (0, result, None))
        return data

    def _decided(self, txn_id: int) -> bool:
        """Whether multi-partition transaction ``txn_id`` committed (its
        decision is logged, or, without a log, its commit was sent)."""
        return (txn_id >> MP_TAG_BITS) in self.committed

    def _remember(self, key, outcome) -> None:
        self.outcomes[key] = outcome
        if len(self.outcomes) > self.config.get("idempotency_window", 100_000):
            self.outcomes.popitem(last=False)


def main(argv=None) -> int:
    return node_main(CoordinatorNode, lambda config: "coordinator", argv)


if __name__ == "__main__":
    sys.exit(main())
