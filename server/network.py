"""The network side of every server process: connections, links, the loop.

Each server process (a partition or the coordinator) is one ``Node``: one
thread running a uvloop event loop with

  * a TCP listener for clients (the socket is bound by the supervisor and
    inherited, so ports are known before any child starts);
  * a Unix-socket listener for the other server processes (forwarded calls
    and, on partitions, the coordinator's statement fragments);
  * ``Link``s: lazily opened connections to the other processes' Unix
    sockets, used to forward calls this process does not own.

Reading: ``Connection.data_received`` decodes every complete frame of the
chunk in one pass and hands them to ``Node.handle``; the answers produced
synchronously (all single-partition calls a partition owns) are written
with one ``write`` per chunk. Answers that complete later (forwarded
calls, multi-partition calls) are queued on their connection and flushed
once per loop turn.

Backpressure: a connection whose peer does not read its answers stops
being read (``pause_writing`` pauses reading); a connection with
``max_inflight`` calls outstanding at other processes gets OverloadedError
for new ones; a Link refuses forwards beyond its pending limit the same
way; past ``max_connections`` a new connection gets an ERROR and is closed.
Nothing queues without a bound.

Invariants:
1. Every CALL gets exactly one RESPONSE with its request id, unless its
   connection closes first.
2. Only a frame that cannot be decoded closes a client connection.
"""

from __future__ import annotations

import asyncio
import itertools
import logging
import os
import signal
import socket
import sys
import time

from flowstate.errors import (FlowstateError, FrameTooLargeError, InternalError,
                              MalformedMessageError, OverloadedError, UnavailableError,
                              UnknownMessageKindError, ProtocolVersionError)
from flowstate.protocol import (CALL, ERROR, HELLO, RESPONSE, PROTOCOL_VERSION, FrameReader,
                                FrameTooLarge, frame)

__all__ = ["Node", "Connection", "Link", "setup_logging", "error_frame", "response_frame"]

log = logging.getLogger("flowstate")


def setup_logging(role: str, level: str = "INFO") -> logging.Logger:
    """One line per event on stderr: time, level, process role, message."""
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(logging.Formatter(
        f"%(asctime)s.%(msecs)03d %(levelname)-5s {role}[{os.getpid()}]: %(message)s",
        datefmt="%Y-%m-%dT%H:%M:%S"))
    root = logging.getLogger("flowstate")
    root.handlers[:] = [handler]
    root.setLevel(level.upper())
    root.propagate = False
    return root


def response_frame(request_id, result) -> bytes:
    return frame([RESPONSE, request_id, 0, result, None])


def error_frame(request_id, error: FlowstateError) -> bytes:
    return frame([RESPONSE, request_id, error.code, None, error.message])


class Connection(asyncio.Protocol):
    """One accepted connection: a client's (TCP) or another process's (Unix)."""

    __slots__ = ("node", "transport", "reader", "internal", "out", "held", "inflight",
                 "write_paused", "closed", "peer", "channel")

    def __init__(self, node: Node, internal: bool, channel: bool = False):
        self.node = node
        self.internal = internal or channel
        self.channel = channel            # the coordinator's transaction channel: never held
        self.transport = None
        # the frame limit is for clients: a forwarded call is re-encoded with
        # the link's sequence number as its id, so it may be a few bytes
        # longer than the client's frame, and fragments have no client limit
        self.reader = FrameReader(1 << 30 if internal else node.limits["max_frame_bytes"])
        self.out: list[bytes] = []
        self.held: list | None = None     # messages waiting while the partition is held
        self.inflight = 0                 # calls answered later (forwarded, multi-partition)
        self.write_paused = False
        self.closed = False
        self.peer = None

    def connection_made(self, transport):
        self.transport = transport
        self.peer = transport.get_extra_info("peername")
        node = self.node
        if not self.internal and node.client_count >= node.limits["max_connections"]:
            transport.write(frame([ERROR, OverloadedError.code,
                                   f"too many connections: this process accepts at most "
                                   f"{node.limits['max_connections']}"]))
            transport.close()
            self.closed = True
            log.warning("refused a connection from %s: %d connections open", self.peer,
                        node.client_count)
            return
        node.connections.add(self)
        if not self.internal:
            node.client_count += 1
        if node.holding and not self.channel:
            self.hold()

    def connection_lost(self, exc):
        if self.closed and self not in self.node.connections:
            return
        self.closed = True
        node = self.node
        if self in node.connections:
            node.connections.discard(self)
            if not self.internal:
                node.client_count -= 1
        node.connection_closed(self)

    def data_received(self, data):
        try:
            messages = self.reader.feed(data)
        except FrameTooLarge as e:
            messages = e.messages           # the calls before it are answered as usual
            while e is not None:
                self.transport.write(frame([ERROR, FrameTooLargeError.code, str(e)]))
                log.warning("skipped a frame of %d bytes from %s (limit %d)", e.size, self.peer,
                            e.limit)
                try:
                    messages += self.reader.drain_after_too_large()
                    e = None
                except FrameTooLarge as again:      # another one in the same chunk
                    messages += again.messages
                    e = again
                except ValueError as bad:
                    self.abort(str(bad))
                    return
        except ValueError as e:
            self.abort(str(e))
            return
        if not messages:
            return
        if self.held is not None:
            self.held.extend(messages)
            return
        node = self.node
        if node.holding and not self.channel:
            self.hold()
            self.held.extend(messages)
            return
        node.handle(self, messages)
        if self.out and not self.closed:
            node.answer(self)

    def abort(self, reason: str) -> None:
        """Answer a broken stream with an ERROR and close it."""
        log.warning("closing the connection from %s: %s", self.peer, reason)
        if not self.closed:
            self.transport.write(frame([ERROR, MalformedMessageError.code,
                                        f"{reason}; closing the connection"]))
            self.transport.close()

    def send(self, data: bytes) -> None:
        """Queue an answer produced outside data_received; flushed this turn."""
        if self.closed:
            return
        out = self.out
        out.append(data)
        if len(out) == 1:
            self.node.dirty.append(self)
            if not self.node.flush_scheduled:
                self.node.flush_scheduled = True
                self.node.loop.call_soon(self.node.flush)

    def hold(self) -> None:
        if self.held is None:
            self.held = []
            if not self.write_paused:
                self.transport.pause_reading()

    def release(self) -> None:
        """Handle what arrived while held, then read again."""
        held, self.held = self.held, None
        if held is None or self.closed:
            return
        if held:
            self.node.handle(self, held)
            if self.out:
                self.node.answer(self)
        if not self.write_paused and self.held is None:
            self.transport.resume_reading()

    def pause_writing(self):
        self.write_paused = True
        if self.held is None:
            self.transport.pause_reading()

    def resume_writing(self):
        self.write_paused = False
        if self.held is None and not self.closed:
            self.transport.resume_reading()


class Link(asyncio.Protocol):
    """A connection this process opens to another's Unix socket, to forward
    calls (and internal requests) and route the answers back."""

    def __init__(self, node: Node, path: str, name: str):
        self.node = node
        self.path = path
        self.name = name
        self.transport = None
        self.reader = FrameReader(1 << 30)
        self.pending: dict[int, tuple] = {}      # seq -> (connection, request id) or future
        self.queued: list[bytes] = []            # frames waiting for the connection
        self.seq = itertools.count(1)
        self.connecting = False
        self.flush_scheduled = False

    def forward(self, conn: Connection, message: list) -> None:
        """Send a CALL on; its answer goes back to ``conn`` under its own id."""
        if len(self.pending) >= self.node.limits["max_forwarded"]:
            conn.send(error_frame(message[1], OverloadedError(
                f"{self.name} has {len(self.pending)} forwarded calls waiting; retry later")))
            return
        if conn.inflight >= self.node.limits["max_inflight"]:
            conn.send(error_frame(message[1], OverloadedError(
                f"this connection has {conn.inflight} calls in flight (limit "
                f"{self.node.limits['max_inflight']}); wait for answers before sending more")))
            return
        seq = next(self.seq)
        self.pending[seq] = (conn, message[1])
        conn.inflight += 1
        message[1] = seq
        self._send(frame(message))

    def request(self, message: list) -> asyncio.Future:
        """Send an internal request; the future gets (status, result, error)."""
        seq = next(self.seq)
        future = self.node.loop.create_future()
        self.pending[seq] = future
        message[1] = seq
        self._send(frame(message))
        return future

    def _send(self, data: bytes) -> None:
        self.queued.append(data)
        if self.transport is None:
            if not self.connecting:
                self.connecting = True
                self.node.loop.create_task(self._connect())
        elif not self.flush_scheduled:
            self.flush_scheduled = True
            self.node.loop.call_soon(self._flush)

    def _flush(self) -> None:
        self.flush_scheduled = False
        if self.transport is not None and self.queued:
            self.transport.write(b"".join(self.queued))
            self.queued.clear()

    async def _connect(self) -> None:
        deadline = time.monotonic() + self.node.limits["link_connect_seconds"]
        while True:
            try:
                await self.node.loop.create_unix_connection(lambda: self, self.path)
                break
            except OSError as e:
                if time.monotonic() > deadline:
                    self.connecting = False
                    self._fail_all(UnavailableError(f"{self.name} is unreachable: {e}"))
                    return
                await asyncio.sleep(0.05)
        self.connecting = False
        self._flush()

    def connection_made(self, transport):
        self.transport = transport

    def data_received(self, data):
        try:
            messages = self.reader.feed(data)
        except ValueError as e:
            log.error("bad frame from %s: %s", self.name, e)
            self.transport.close()
            return
        pending = self.pending
        for message in messages:
            if message[0] == ERROR or len(message) < 5:
                # not an answer: an ERROR's element 1 is a status, not a seq
                log.error("unexpected message from %s: %s", self.name, str(message)[:200])
                continue
            entry = pending.pop(message[1], None)
            if entry is None:
                continue
            if type(entry) is tuple:
                conn, request_id = entry
                conn.inflight -= 1
                message[1] = request_id
                conn.send(frame(message))
            elif not entry.done():
                entry.set_result((message[2], message[3], message[4]))

    def connection_lost(self, exc):
        self.transport = None
        self._fail_all(UnavailableError(f"the link to {self.name} closed"), unknown=True)

    def _fail_all(self, error: FlowstateError, unknown: bool = False) -> None:
        from flowstate.errors import ConnectionLostError
        pending, self.pending = self.pending, {}
        self.queued.clear()
        for entry in pending.values():
            err = ConnectionLostError(f"{error.message}; the call's outcome is unknown") \
                if unknown else error
            if type(entry) is tuple:
                conn, request_id = entry
                conn.inflight -= 1
                conn.send(error_frame(request_id, err))
            elif not entry.done():
                entry.set_result((err.code, None, err.message))


class Node:
    """The event loop of one server process; subclasses answer the calls."""

    role = "node"

    def __init__(self, config: dict):
        self.config = config
        self.limits = config["limits"]
        self.loop: asyncio.AbstractEventLoop | None = None
        self.connections: set[Connection] = set()
        self.client_count = 0
        self.dirty: list[Connection] = []
        self.flush_scheduled = False
        self.holding = False
        self.hold_owner: Connection | None = None
        self.links: dict[str, Link] = {}
        self.stopping: asyncio.Event | None = None
        self.servers = []
        self.started = time.time()

    # -- subclasses ---------------------------------------------------------

    def handle(self, conn: Connection, messages: list) -> None:
        raise NotImplementedError

    def connection_closed(self, conn: Connection) -> None:
        pass

    def welcome_info(self) -> dict:
        raise NotImplementedError

    def busy(self) -> bool:
        """Whether calls are still in progress (drain waits for them)."""
        return any(c.inflight for c in self.connections)

    # -- shared message handling -------------------------------------------

    def handle_hello(self, conn: Connection, message: list) -> None:
        version = message[1] if len(message) > 1 else None
        if version != PROTOCOL_VERSION:
            conn.out.append(frame([ERROR, ProtocolVersionError.code,
                                   f"this server speaks protocol version {PROTOCOL_VERSION}, "
                                   f"the client asked for {version!r}"]))
            return
        conn.out.append(frame([HELLO, PROTOCOL_VERSION, self.server_version(),
                               self.welcome_info()]))

    def guarded(self, conn: Connection, message: list, handler) -> None:
        """``handler(conn, message)``, with a bug in it answered, never raised
        (an exception out of data_received drops the connection unanswered):
        a CALL gets a RESPONSE with InternalError under its request id, so a
        process that forwarded it routes the answer back; anything else an
        ERROR."""
        try:
            handler(conn, message)
        except Exception as e:
            error = internal_error(f"handling {str(message)[:80]}", e)
            if message[0] == CALL and len(message) > 1 and type(message[1]) is int:
                conn.out.append(error_frame(message[1], error))
            else:
                conn.out.append(frame([ERROR, error.code, error.message]))

    def unknown_kind(self, conn: Connection, message: list) -> None:
        request_id = message[1] if len(message) > 1 and isinstance(message[1], int) else None
        kind = message[0]
        error = UnknownMessageKindError(f"unknown message kind {kind!r}; a client sends HELLO "
                                        f"({HELLO}) or CALL ({CALL})")
        if request_id is None:
            conn.out.append(frame([ERROR, error.code, error.message]))
        else:
            conn.out.append(error_frame(request_id, error))

    def answer(self, conn: Connection) -> None:
        """Write the answers ``handle`` left in ``conn.out`` (a partition
        in sync durability holds them until the log is on disk)."""
        out = conn.out
        conn.transport.write(out[0] if len(out) == 1 else b"".join(out))
        out.clear()

    @staticmethod
    def server_version() -> str:
        from flowstate import __version__
        return __version__

    def link(self, name: str, path: str) -> Link:
        link = self.links.get(name)
        if link is None:
            link = self.links[name] = Link(self, path, name)
        return link

    def flush(self) -> None:
        self.flush_scheduled = False
        dirty, self.dirty = self.dirty, []
        for conn in dirty:
            out = conn.out
            if out and not conn.closed:
                conn.transport.write(out[0] if len(out) == 1 else b"".join(out))
            out.clear()

    # -- holding (multi-partition transactions) ------------------------------

    def hold_others(self, owner: Connection) -> None:
        """Read nothing but ``owner`` until ``release_others``."""
        self.holding = True
        self.hold_owner = owner
        for conn in self.connections:
            if not conn.channel:
                conn.hold()

    def release_others(self) -> None:
        self.holding = False
        self.hold_owner = None
        for conn in list(self.connections):
            if conn.held is not None:
                conn.release()
                if self.holding:        # a released call began another hold
                    return

    # -- running -----------------------------------------------------------------

    def run(self) -> int:
        # The coordinator's worker thread needs the GIL back after every
        # fragment's round trip (and the async command log's writer after
        # each fsync); with the default 5 ms switch interval a busy loop
        # makes it wait that long each time.
        sys.setswitchinterval(0.0002)
        try:
            import uvloop
            uvloop.install()
        except ImportError:
            log.warning("uvloop is not installed; using asyncio's default loop")
        return asyncio.run(self._main())

    async def _main(self) -> int:
        self.loop = asyncio.get_running_loop()
        self.stopping = asyncio.Event()
        for sig in (signal.SIGTERM, signal.SIGINT):
            self.loop.add_signal_handler(sig, self.stopping.set)
        await self.start()
        listen = socket.socket(fileno=self.config["listen_fd"])
        listen.setblocking(False)
        self.servers.append(await self.loop.create_server(
            lambda: Connection(self, internal=False), sock=listen, backlog=1024))
        path = self.config["unix_path"]
        if os.path.exists(path):
            os.unlink(path)
        self.servers.append(await self.loop.create_unix_server(
            lambda: Connection(self, internal=True), path, backlog=1024))
        channel_path = self.config.get("channel_path")
        if channel_path:
            if os.path.exists(channel_path):
                os.unlink(channel_path)
            self.servers.append(await self.loop.create_unix_server(
                lambda: Connection(self, internal=True, channel=True), channel_path))
        ready_fd = self.config.get("ready_fd")
        if ready_fd is not None:
            os.write(ready_fd, b"ready\n")
            os.close(ready_fd)
        log.info("serving on %s:%d", *listen.getsockname()[:2])
        await self.stopping.wait()
        await self.drain()
        return 0

    async def start(self) -> None:
        """Set up before listening (subclasses)."""

    async def drain(self) -> None:
        """Stop accepting, let in-progress calls finish (a few seconds at
        most), flush every answer and close."""
        log.info("stopping: draining %d connection(s)", len(self.connections))
        for server in self.servers:
            server.close()
        deadline = time.monotonic() + self.limits["drain_seconds"]
        while self.busy() and time.monotonic() < deadline:
            await asyncio.sleep(0.01)
        if self.busy():
            log.warning("stopped with calls still in progress (drain timeout)")
        self.flush()
        for conn in list(self.connections):
            if conn.transport is not None:
                conn.transport.close()
        for link in self.links.values():
            if link.transport is not None:
                link.transport.close()
        await asyncio.sleep(0)
        for key in ("unix_path", "channel_path"):
            try:
                os.unlink(self.config[key])
            except (KeyError, OSError):
                pass
        log.info("stopped")


def internal_error(where: str, e: BaseException) -> InternalError:
    log.exception("internal error in %s", where)
    return InternalError(f"internal error in {where}: {type(e).__name__}: {e}")


def node_main(node_class, role_of, argv=None) -> int:
    """The entry point of a server process: ``argv[1]`` is its JSON
    configuration (from the supervisor); ``role_of(config)`` names it in logs."""
    import json
    config = json.loads((argv or sys.argv)[1])
    setup_logging(role_of(config), config.get("log_level", "INFO"))
    try:
        node = node_class(config)
    except FlowstateError as e:
        log.error("cannot load the application: %s", e)
        return 3
    try:
        return node.run()
    except FlowstateError as e:          # a damaged data folder, found at recovery
        log.error("cannot start: %s", e.message)
        return 4
