"""AsyncClient: the asyncio driver.

    async with AsyncClient("localhost:21212") as client:
        response = await client.call("Vote", 5085551234, 3, 2)
        print(response.result)

Many calls may be in flight on each connection; answers are matched by
request id. Frames written in one loop turn go out in one write. With
``affinity`` (the default) each single-partition call goes straight to
the partition that owns it.

``call_with_callback`` is the low-overhead form for load generators: no
future per call, the callback runs in the loop with (response, error).

Errors: every failure is a flowstate.errors exception. RejectedError
(never ran: overloaded, unknown procedure, bad parameters), AbortedError
(ran and rolled back), OutcomeUnknownError (ConnectionLostError when the
connection drops with the call in flight, CallTimeoutError when its
timeout passes). After a lost connection the next call reconnects
(the server may have restarted) and learns the topology again.
"""

from __future__ import annotations

import asyncio
import time

from flowstate.errors import (CallTimeoutError, ConnectionLostError, FlowstateError,
                              ProtocolError, UnavailableError)
from flowstate.protocol import ERROR, HELLO, RESPONSE, FrameReader

from flowstate.client.common import (DEFAULT_SERVER, RETRYABLE, Cluster, ClusterConnections,
                                     Response, call_frame, error_for, hello_frame,
                                     new_idempotency_key, retry_delays)

__all__ = ["AsyncClient"]

_perf = time.perf_counter


def _fail(waiter, error: FlowstateError) -> None:
    """Hand ``error`` to a call's future or callback."""
    if isinstance(waiter, asyncio.Future):
        if not waiter.done():
            waiter.set_exception(error)
    else:
        waiter(None, error)


class _Connection(asyncio.Protocol):
    def __init__(self, client: AsyncClient, address):
        self.client = client
        self.address = address
        self.transport = None
        self.reader = FrameReader(1 << 30)
        self.pending: dict[int, list] = {}       # request id -> [future|callback, started, deadline]
        self.out: list[bytes] = []
        self.flush_scheduled = False
        self.closed = False
        self.welcome: asyncio.Future | None = None
        self.slot_waiters: list[asyncio.Future] = []

    def connection_made(self, transport):
        self.transport = transport

    def send(self, data: bytes) -> None:
        self.out.append(data)
        if not self.flush_scheduled:
            self.flush_scheduled = True
            self.client.loop.call_soon(self._flush)

    def _flush(self) -> None:
        self.flush_scheduled = False
        if self.out and not self.closed:
            self.transport.write(b"".join(self.out))
        self.out.clear()

    def data_received(self, data):
        try:
            messages = self.reader.feed(data)
        except ValueError as e:
            self.transport.close()
            self._fail_all(ProtocolError(f"bad frame from {self.address}: {e}"))
            return
        pending = self.pending
        now = _perf()
        for message in messages:
            kind = message[0]
            if kind == RESPONSE:
                entry = pending.pop(message[1], None)
                if entry is None:
                    continue            # timed out already
                waiter = entry[0]
                status = message[2]
                if status == 0:
                    response = Response(message[3], message[1], now - entry[1])
                    if type(waiter) is asyncio.Future or isinstance(waiter, asyncio.Future):
                        if not waiter.done():
                            waiter.set_result(response)
                    else:
                        waiter(response, None)
                else:
                    _fail(waiter, error_for(status, message[4]))
            elif kind == HELLO:
                if self.welcome is not None and not self.welcome.done():
                    self.welcome.set_result(message)
            elif kind == ERROR:
                error = error_for(message[1], message[2])
                if self.welcome is not None and not self.welcome.done():
                    self.welcome.set_exception(error)
                else:
                    self.client.last_connection_error = error
        if self.slot_waiters and len(pending) < self.client.max_inflight:
            waiters, self.slot_waiters = self.slot_waiters, []
            for w in waiters:
                if not w.done():
                    w.set_result(None)

    def connection_lost(self, exc):
        self.closed = True
        self._fail_all(ConnectionLostError(
            f"the connection to {self.address[0]}:{self.address[1]} was lost"
            + (f" ({exc})" if exc else "") + "; the call's outcome is unknown"))
        self.client._connection_lost(self)

    def _fail_all(self, error: FlowstateError) -> None:
        pending, self.pending = self.pending, {}
        for entry in pending.values():
            _fail(entry[0], error)
        if self.welcome is not None and not self.welcome.done():
            self.welcome.set_exception(error)
        for w in self.slot_waiters:
            if not w.done():
                w.set_result(None)
        self.slot_waiters = []

    def expire(self, now: float) -> None:
        expired = [rid for rid, entry in self.pending.items()
                   if entry[2] is not None and entry[2] <= now]
        for rid in expired:
            entry = self.pending.pop(rid)
            _fail(entry[0], CallTimeoutError(
                f"no answer within {entry[3]:g} s; the call's outcome is unknown"))


class AsyncClient(ClusterConnections):
    """An asyncio connection to a Flowstate server (see the module doc)."""

    def __init__(self, servers=DEFAULT_SERVER, *, name: str = "flowstate-python",
                 timeout: float | None = 30.0, affinity: bool = True,
                 connect_timeout: float = 10.0, max_inflight: int | None = None,
                 retry: bool = False):
        self._configure(servers, name, timeout, affinity, connect_timeout, retry)
        self._max_inflight = max_inflight
        self.max_inflight = max_inflight or 10_000
        self.loop: asyncio.AbstractEventLoop | None = None
        self.last_connection_error: FlowstateError | None = None
        self._connecting: asyncio.Future | None = None
        self._sweeper: asyncio.Task | None = None

    # -- connecting -------------------------------------------------------------------

    async def __aenter__(self) -> AsyncClient:
        await self.connect()
        return self

    async def __aexit__(self, *exc) -> None:
        await self.close()

    async def connect(self) -> None:
        """Connect (or reconnect) and learn the topology."""
        self.loop = asyncio.get_running_loop()
        self._closed = False
        if self._connecting is not None:
            await asyncio.shield(self._connecting)
            return
        self._connecting = self.loop.create_future()
        try:
            await self._connect()
            self._connecting.set_result(None)
        except BaseException as e:
            self._connecting.set_exception(e)
            self._connecting.exception()        # retrieved: no "never retrieved" warning
            raise
        finally:
            self._connecting = None
        if self._sweeper is None or self._sweeper.done():
            self._sweeper = self.loop.create_task(self._sweep())

    async def _open(self, address) -> _Connection:
        conn = _Connection(self, address)
        await self.loop.create_connection(lambda: conn, address[0], address[1])
        return conn

    async def _connect(self) -> None:
        deadline = time.monotonic() + self.connect_timeout
        last_error = None
        while True:
            for address in self.servers:
                try:
                    conn = await asyncio.wait_for(self._open(address),
                                                  max(0.1, deadline - time.monotonic()))
                    conn.welcome = self.loop.create_future()
                    conn.send(hello_frame(self.name))
                    welcome = await asyncio.wait_for(conn.welcome,
                                                     max(0.1, deadline - time.monotonic()))
                    cluster = Cluster(welcome[3], address[0])
                    break
                except ProtocolError:
                    raise
                except (OSError, asyncio.TimeoutError, FlowstateError) as e:
                    last_error = e
            else:
                if time.monotonic() >= deadline:
                    raise UnavailableError(
                        f"cannot connect to {', '.join(f'{h}:{p}' for h, p in self.servers)}: "
                        f"{last_error}") from None
                await asyncio.sleep(0.1)
                continue
            break
        self.cluster = cluster
        self.main = conn
        self._max_frame = cluster.limits.get("max_frame_bytes", self._max_frame)
        self.max_inflight = self._max_inflight or cluster.limits.get("max_inflight", 10_000)
        self.direct = [None] * cluster.partitions
        if self.affinity:
            for i, address in enumerate(cluster.addresses):
                try:
                    self.direct[i] = await asyncio.wait_for(self._open(address), self.connect_timeout)
                except (OSError, asyncio.TimeoutError):
                    self.direct[i] = None      # calls go through the main connection

    def _connection_lost(self, conn: _Connection) -> None:
        if conn is self.main:
            self.main = None
        for i, d in enumerate(self.direct):
            if d is conn:
                self.direct[i] = None

    async def close(self) -> None:
        self._closed = True
        if self._sweeper is not None:
            self._sweeper.cancel()
            self._sweeper = None
        for conn in [self.main, *self.direct]:
            if conn is not None and conn.transport is not None:
                conn.transport.close()
        self.main = None
        self.direct = []
        await asyncio.sleep(0)

    async def _sweep(self) -> None:
        while True:
            await asyncio.sleep(0.05)
            now = _perf()
            for conn in [self.main, *self.direct]:
                if conn is not None and conn.pending:
                    conn.expire(now)

    # -- calling ---------------------------------------------------------------

    def _reopen(self, partition: int) -> None:
        """Reopen in the background: this call goes through the main
        connection, later ones directly once it is open."""
        async def reopen():
            try:
                conn = await asyncio.wait_for(self._open(self.cluster.addresses[partition]), 1.0)
            except (OSError, asyncio.TimeoutError):
                return
            if partition < len(self.direct) and self.direct[partition] is None:
                self.direct[partition] = conn
            else:
                conn.transport.close()
        self.loop.create_task(reopen())
        return None

    def _submit(self, conn: _Connection, waiter, procedure, params, timeout, idempotency_key):
        request_id = next(self.request_ids)
        # The server needs the timeout only where calls can wait in a queue
        # (the coordinator's); a partition runs what it reads at once.
        data = call_frame(request_id, procedure, params,
                          timeout if conn is self.main else None, idempotency_key,
                          self._max_frame)
        started = _perf()
        pending = conn.pending
        pending[request_id] = [waiter, started,
                               None if timeout is None else started + timeout, timeout]
        if len(pending) == 1 and not conn.out and not conn.closed:
            conn.transport.write(data)      # alone in flight: no batching to wait for
        else:
            conn.send(data)
        return request_id

    async def call(self, procedure: str, *params, timeout: float | None = ...,
                   idempotency_key=None, retry: bool | None = None) -> Response:
        """Run a procedure; return its Response or raise its error. ``retry``
        as in Client.call: a key, and attempts until ``timeout`` has passed."""
        if timeout is ...:
            timeout = self.timeout
        if not (self.retry if retry is None else retry):
            return await self._call_once(procedure, params, timeout, idempotency_key)
        key = idempotency_key if idempotency_key is not None else new_idempotency_key()
        deadline = None if timeout is None else time.monotonic() + timeout
        delays = retry_delays()
        while True:
            left = None if deadline is None else deadline - time.monotonic()
            try:
                return await self._call_once(procedure, params, left, key)
            except RETRYABLE:
                delay = next(delays)
                if deadline is not None and time.monotonic() + delay >= deadline:
                    raise
                await asyncio.sleep(delay)

    async def _call_once(self, procedure, params, timeout, idempotency_key) -> Response:
        if self._closed:
            raise ConnectionLostError("the client is closed")
        if not self.connected:
            await self.connect()
        conn = self._route(procedure, params)
        while len(conn.pending) >= self.max_inflight:
            waiter = self.loop.create_future()
            conn.slot_waiters.append(waiter)
            await waiter
            if conn.closed:
                raise ConnectionLostError("the connection was lost while waiting to send")
        future = self.loop.create_future()
        self._submit(conn, future, procedure, params, timeout, idempotency_key)
        return await future

    def call_with_callback(self, callback, procedure: str, *params, timeout: float | None = ...,
                           idempotency_key=None) -> None:
        """Send a call now; ``callback(response, error)`` runs on its answer.
        The client must be connected; the caller bounds its calls in flight."""
        if not self.connected:
            raise ConnectionLostError("not connected (call connect() first)")
        if timeout is ...:
            timeout = self.timeout
        self._submit(self._route(procedure, params), callback, procedure, params,
                     timeout, idempotency_key)
