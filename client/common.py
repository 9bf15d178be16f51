"""What the blocking and the asyncio drivers share: the Response, the
handshake's cluster view, and routing each call to its owner.

A driver connects to one server address (the coordinator's port or any
partition's), says HELLO and gets WELCOME: the topology (bucket map), the
direct address of every partition and each procedure's partitioning
parameter. With client affinity it then keeps one connection per
partition and sends a single-partition call straight to the partition
that owns its partitioning value (the same hash as the server,
flowstate.routing); everything else goes to the first connection, which
forwards as needed.
"""

from __future__ import annotations

import itertools
import os
import time

from flowstate.errors import (CallTimeoutError, ConnectionLostError, FlowstateError,
                              OverloadedError, ParameterError, ProtocolError, UnavailableError,
                              error_class_for_code)
from flowstate.protocol import (CALL, HELLO, PROTOCOL_VERSION, frame, parse_address)
from flowstate.routing import BUCKETS, Topology, partition_hash

__all__ = ["RETRYABLE", "new_idempotency_key", "retry_delays",
           "Response", "Cluster", "ClusterConnections", "parse_servers", "call_frame", "hello_frame", "error_for",
           "DEFAULT_SERVER"]

DEFAULT_SERVER = "localhost:21212"


class Response:
    """The outcome of a successful call. ``result`` is what the procedure
    returned; ``elapsed`` the round trip in seconds, as the driver saw it."""

    __slots__ = ("result", "status", "request_id", "elapsed")

    def __init__(self, result, request_id: int, elapsed: float, status: int = 0):
        self.result = result
        self.status = status
        self.request_id = request_id
        self.elapsed = elapsed

    def __repr__(self):
        return f"Response(result={self.result!r}, elapsed={self.elapsed * 1e6:.0f}us)"


#: Errors a call with an idempotency key may be retried after: it never ran
#: (unavailable, overloaded) or its outcome is unknown (the key makes the
#: retry return the first outcome instead of running it twice).
RETRYABLE = (UnavailableError, OverloadedError, ConnectionLostError, CallTimeoutError)


def new_idempotency_key() -> bytes:
    return os.urandom(16)


def retry_delays():
    """Backoff between attempts: 10 ms doubling to 500 ms."""
    delay = 0.01
    while True:
        yield delay
        delay = min(delay * 2, 0.5)


def error_for(status: int, message) -> FlowstateError:
    """The exception a non-zero status stands for (flowstate.errors)."""
    return error_class_for_code(status)(message or f"error {status}")


def parse_servers(servers) -> list[tuple[str, int]]:
    """``"host:port,host:port"`` or a list of them -> [(host, port), ...]."""
    if isinstance(servers, str):
        servers = [s for s in servers.split(",") if s.strip()]
    addresses = [parse_address(s, default_host="localhost") if isinstance(s, str) else tuple(s)
                 for s in servers]
    if not addresses:
        raise ValueError("no server address given")
    return addresses


def hello_frame(name: str) -> bytes:
    return frame([HELLO, PROTOCOL_VERSION, name, None])


def call_frame(request_id: int, procedure: str, params, timeout, idempotency_key,
               max_frame_bytes: int) -> bytes:
    options = None
    if timeout is not None or idempotency_key is not None:
        options = {}
        if timeout is not None:
            options["timeout_ms"] = int(timeout * 1000)
        if idempotency_key is not None:
            options["idempotency_key"] = idempotency_key
    try:
        data = frame([CALL, request_id, procedure, list(params), options])
    except TypeError as e:
        raise ParameterError(f"{procedure}: {e}") from None
    if len(data) - 4 > max_frame_bytes:
        raise ParameterError(f"{procedure}: the call is {len(data) - 4} bytes, over the "
                             f"server's frame limit of {max_frame_bytes} bytes")
    return data


class ClusterConnections:
    """What both drivers share: their settings, the cluster they learnt and
    their connections, and the choice of connection for each call."""

    cluster: "Cluster | None" = None
    main = None          # the connection to the address given (calls go here
    direct: list = []    # unless affinity picks a partition's connection)

    def _configure(self, servers, name: str, timeout, affinity: bool,
                   connect_timeout: float, retry: bool) -> None:
        self.servers = parse_servers(servers)
        self.name = name
        self.timeout = timeout
        self.affinity = affinity
        self.connect_timeout = connect_timeout
        self.retry = retry
        self.cluster = None
        self.main = None
        self.direct = []
        self.request_ids = itertools.count(1)
        self._closed = False
        self._max_frame = 1 << 20
        self._reopen_after: dict[int, float] = {}

    def _route(self, procedure, params):
        """The connection for a call: its owner's direct one (affinity),
        else the main one."""
        conn = self.main
        if self.direct:
            owner = self.cluster.owner(procedure, params)
            if owner is not None:
                direct = self.direct[owner]
                if direct is not None and not direct.closed:
                    conn = direct
                elif self.affinity and self._may_reopen(owner):
                    conn = self._reopen(owner) or conn
        return conn

    def _may_reopen(self, partition: int) -> bool:
        """A partition's direct connection is gone (it restarted): try to
        reopen it at most once a second; calls use the main one meanwhile."""
        now = time.monotonic()
        if now < self._reopen_after.get(partition, 0.0):
            return False
        self._reopen_after[partition] = now + 1.0
        return True

    def _reopen(self, partition: int):
        """Reopen a partition's direct connection; return it if it can be
        used for this call, else None (each driver does it its own way)."""
        raise NotImplementedError

    @property
    def topology(self):
        """The routing.Topology learnt at connect, or None."""
        return self.cluster.topology if self.cluster else None

    @property
    def connected(self) -> bool:
        return self.main is not None and not self.main.closed


class Cluster:
    """The cluster as a WELCOME describes it."""

    def __init__(self, info: dict, contacted_host: str):
        try:
            self.info = info
            self.topology = Topology.from_wire(info["topology"])
            self.partitions = info["partitions"]
            self.limits = info["limits"]
            self.app = info["app"]
            self.addresses = [self._reachable(a, contacted_host) for a in info["addresses"]]
            self.coordinator = self._reachable(info["coordinator"], contacted_host)
            self.procedures: dict[str, int | None] = {}
            for name, index in info["procedures"].items():
                self.procedures[name] = index
                self.procedures.setdefault(name.lower(), index)
        except (KeyError, TypeError, ValueError) as e:
            raise ProtocolError(f"the server's WELCOME is not understood: {e}") from None
        self.bucket_map = self.topology.bucket_map

    @staticmethod
    def _reachable(address, contacted_host: str) -> tuple[str, int]:
        host, port = address
        if host in ("0.0.0.0", "::", ""):
            host = contacted_host
        return host, port

    def owner(self, procedure, params) -> int | None:
        """The partition a call should go to, or None (send it anywhere)."""
        index = self.procedures.get(procedure)
        if index is None or len(params) <= index:
            return None
        try:
            return self.bucket_map[partition_hash(params[index]) % BUCKETS]
        except ParameterError:
            return None           # the server answers with the proper error
