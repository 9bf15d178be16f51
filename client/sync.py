"""Client: the blocking driver, safe to share between threads.

    with Client("localhost:21212") as client:
        print(client.call("Vote", 5085551234, 3, 2).result)

Built on plain sockets and threads (a reader thread per connection, one
Event per call), so under gevent's monkey patching -- as locust runs --
the threads are greenlets and the sockets cooperative: many greenlets
share one connection with many calls in flight.

Routing, errors, timeouts and reconnection behave as in AsyncClient
(flowstate.client.aio): a call in flight when its connection drops raises
ConnectionLostError; the next call reconnects.
"""

from __future__ import annotations

import socket
import threading
import time

from flowstate.errors import (CallTimeoutError, ConnectionLostError, ProtocolError,
                              UnavailableError)
from flowstate.protocol import ERROR, HELLO, RESPONSE, FrameReader

from flowstate.client.common import (DEFAULT_SERVER, RETRYABLE, Cluster, ClusterConnections,
                                     Response, call_frame, error_for, hello_frame,
                                     new_idempotency_key, retry_delays)

__all__ = ["Client"]


class _Waiter:
    __slots__ = ("event", "response", "error")

    def __init__(self):
        self.event = threading.Event()
        self.response = None
        self.error = None


class _Connection:
    def __init__(self, address, connect_timeout: float):
        self.address = address
        self.sock = socket.create_connection(address, timeout=connect_timeout)
        self.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self.sock.settimeout(None)
        self.write_lock = threading.Lock()
        self.pending: dict[int, tuple] = {}          # request id -> (waiter, started)
        self.pending_lock = threading.Lock()
        self.closed = False
        self.welcome = _Waiter()
        self.thread = threading.Thread(target=self._read, name=f"flowstate-reader-{address[1]}",
                                       daemon=True)
        self.thread.start()

    def send(self, data: bytes) -> None:
        try:
            with self.write_lock:
                # sendall() by hand, to know whether a frame is half written when
                # the sender is interrupted: a greenlet killed or timed out by
                # gevent (as locust stops users), KeyboardInterrupt in a thread.
                # The rest of that frame never follows, so the server would read
                # every later call on this shared connection as part of it: close
                # the connection instead (its calls fail, the next call reconnects).
                sent = 0
                try:
                    while sent < len(data):
                        sent += self.sock.send(data[sent:] if sent else data)
                except BaseException:
                    if sent:
                        self.close()
                    raise
        except OSError as e:
            self.close()
            raise ConnectionLostError(f"the connection to {self.address[0]}:{self.address[1]} "
                                      f"was lost while sending ({e}); the call's outcome is "
                                      f"unknown") from None

    def _read(self) -> None:
        reader = FrameReader(1 << 30)
        error = None
        try:
            while True:
                data = self.sock.recv(1 << 18)
                if not data:
                    break
                now = time.perf_counter()
                for message in reader.feed(data):
                    kind = message[0]
                    if kind == RESPONSE:
                        with self.pending_lock:
                            entry = self.pending.pop(message[1], None)
                        if entry is None:
                            continue
                        waiter, started = entry
                        if message[2] == 0:
                            waiter.response = Response(message[3], message[1], now - started)
                        else:
                            waiter.error = error_for(message[2], message[4])
                        waiter.event.set()
                    elif kind == HELLO:
                        self.welcome.response = message
                        self.welcome.event.set()
                    elif kind == ERROR:
                        self.welcome.error = error_for(message[1], message[2])
                        self.welcome.event.set()
        except (OSError, ValueError) as e:
            error = e
        self.closed = True
        lost = ConnectionLostError(f"the connection to {self.address[0]}:{self.address[1]} was "
                                   f"lost{f' ({error})' if error else ''}; the call's outcome "
                                   f"is unknown")
        with self.pending_lock:
            pending, self.pending = self.pending, {}
        for waiter, _ in pending.values():
            waiter.error = lost
            waiter.event.set()
        if not self.welcome.event.is_set():
            self.welcome.error = lost
            self.welcome.event.set()
        try:
            self.sock.close()
        except OSError:
            pass

    def close(self) -> None:
        if not self.closed:
            self.closed = True
            try:
                self.sock.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass


class Client(ClusterConnections):
    """A blocking connection to a Flowstate server (see the module doc)."""

    def __init__(self, servers=DEFAULT_SERVER, *, name: str = "flowstate-python",
                 timeout: float | None = 30.0, affinity: bool = True,
                 connect_timeout: float = 10.0, retry: bool = False):
        self._configure(servers, name, timeout, affinity, connect_timeout, retry)
        self._lock = threading.Lock()
        self.connect()

    def __enter__(self) -> Client:
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def connect(self) -> None:
        """Connect (or reconnect) and learn the topology."""
        with self._lock:
            if self.connected:
                return
            self._closed = False
            deadline = time.monotonic() + self.connect_timeout
            last_error = None
            while True:
                for address in self.servers:
                    try:
                        conn = _Connection(address, max(0.1, deadline - time.monotonic()))
                    except OSError as e:
                        last_error = e
                        continue
                    conn.send(hello_frame(self.name))
                    if not conn.welcome.event.wait(max(0.1, deadline - time.monotonic())):
                        conn.close()
                        last_error = "no WELCOME"
                        continue
                    if conn.welcome.error is not None:
                        conn.close()
                        if isinstance(conn.welcome.error, ProtocolError):
                            raise conn.welcome.error
                        last_error = conn.welcome.error
                        continue
                    cluster = Cluster(conn.welcome.response[3], address[0])
                    break
                else:
                    if time.monotonic() >= deadline:
                        raise UnavailableError(
                            f"cannot connect to "
                            f"{', '.join(f'{h}:{p}' for h, p in self.servers)}: {last_error}")
                    time.sleep(0.1)
                    continue
                break
            for old in [self.main, *self.direct]:
                if old is not None:
                    old.close()
            self.cluster = cluster
            self.main = conn
            self._max_frame = cluster.limits.get("max_frame_bytes", self._max_frame)
            self.direct = [None] * cluster.partitions
            if self.affinity:
                for i, address in enumerate(cluster.addresses):
                    try:
                        self.direct[i] = _Connection(address, self.connect_timeout)
                    except OSError:
                        self.direct[i] = None

    def close(self) -> None:
        self._closed = True
        for conn in [self.main, *self.direct]:
            if conn is not None:
                conn.close()
        self.main = None
        self.direct = []

    def _reopen(self, partition: int):
        """Reopen here and now (a second at most): this call uses it."""
        with self._lock:
            try:
                conn = _Connection(self.cluster.addresses[partition], 1.0)
            except OSError:
                return None
            self.direct[partition] = conn
            return conn

    def call(self, procedure: str, *params, timeout: float | None = ...,
             idempotency_key=None, retry: bool | None = None) -> Response:
        """Run a procedure; return its Response or raise its error.

        With ``retry`` (default: the client's), the call gets an idempotency
        key (unless given one) and is retried on unavailable, overloaded,
        lost-connection and timed-out attempts until ``timeout`` has passed:
        it runs at most once, and the caller gets its one outcome."""
        if timeout is ...:
            timeout = self.timeout
        if not (self.retry if retry is None else retry):
            return self._call_once(procedure, params, timeout, idempotency_key)
        key = idempotency_key if idempotency_key is not None else new_idempotency_key()
        deadline = None if timeout is None else time.monotonic() + timeout
        delays = retry_delays()
        while True:
            left = None if deadline is None else deadline - time.monotonic()
            try:
                return self._call_once(procedure, params, left, key)
            except RETRYABLE:
                delay = next(delays)
                if deadline is not None and time.monotonic() + delay >= deadline:
                    raise
                time.sleep(delay)

    def _call_once(self, procedure, params, timeout, idempotency_key) -> Response:
        if self._closed:
            raise ConnectionLostError("the client is closed")
        if not self.connected:
            self.connect()
        conn = self._route(procedure, params)
        request_id = next(self.request_ids)
        data = call_frame(request_id, procedure, params,
                          timeout if conn is self.main else None, idempotency_key,
                          self._max_frame)
        waiter = _Waiter()
        with conn.pending_lock:
            if conn.closed:
                raise ConnectionLostError(f"the connection to {conn.address[0]}:"
                                          f"{conn.address[1]} is closed")
            conn.pending[request_id] = (waiter, time.perf_counter())
        try:
            conn.send(data)
            answered = waiter.event.wait(timeout)
        except BaseException:          # a killed greenlet, KeyboardInterrupt, a lost send
            with conn.pending_lock:
                conn.pending.pop(request_id, None)
            raise
        if not answered:
            with conn.pending_lock:
                conn.pending.pop(request_id, None)
            if not waiter.event.is_set():
                raise CallTimeoutError(f"{procedure}: no answer within {timeout:g} s; the "
                                       f"call's outcome is unknown")
        if waiter.error is not None:
            raise waiter.error
        return waiter.response

