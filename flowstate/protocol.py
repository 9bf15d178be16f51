"""The wire protocol, version 1: framing, message kinds, value encoding.

One module shared by the server processes and the client driver, so the
two cannot disagree. docs/protocol.md is the reader's version of this
docstring, with examples; this is the definition.

Frame
-----
    offset  size  field
    0       4     N, unsigned big-endian: the length of the body
    4       N     body: exactly one msgpack array (the message)

A frame whose N exceeds the receiver's ``max_frame_bytes`` is answered
with an ERROR message and its body is skipped (the connection stays up;
the frames around it are handled as usual); a body that is not exactly
one valid, non-empty msgpack array (ext payloads included) closes the
connection after an ERROR message. Integers in messages are msgpack
ints, strings UTF-8.

Messages (element 0 of the array is the kind)
---------------------------------------------
client -> server
    [0 HELLO,    protocol_version, client_name, credentials or nil]
    [1 CALL,     request_id, procedure, [param, ...], options or nil]
        options: map, all keys optional:
            "timeout_ms"       the caller gives up after this; a multi-
                               partition call still queued at the
                               coordinator when it expires is dropped unrun
                               (rejected, code 205); single-partition calls
                               run when read and ignore it
            "idempotency_key"  str or bin (<= 128 bytes, else code 101): a
                               retry with the same key gets the first
                               call's outcome (success or 3xx)
        A CALL of the wrong shape is answered with status 101 under its
        request id (0 if that is not an integer).
server -> client
    [0 WELCOME,  protocol_version, server_version, info]
        info: map with "app", "partitions", "topology" (routing.Topology
        wire form), "addresses" ([[host, port], ...] of each partition's
        direct port, by partition id), "coordinator" ([host, port]),
        "process" ("coordinator" or the partition id answering),
        "procedures" ({name: partition parameter index or nil}),
        "limits" ({"max_frame_bytes", "max_params", "max_inflight"})
    [2 RESPONSE, request_id, status, result, error_message or nil]
        status 0 is success; anything else is a flowstate.errors code and
        result is nil. Responses may arrive out of order.
    [3 ERROR,    status, error_message]
        about the connection, not a call: a frame over the limit (102), a
        body that is not msgpack or not a non-empty array (101, then the
        server closes), a version it does not speak (104), a message of an
        unknown kind with no integer request id (103), too many
        connections (203, then the server closes).

Internal kinds (10..19) are spoken only on the server's Unix sockets
between its own processes; on a client port they get status 103.

Values
------
Parameters and results are msgpack values; these types travel as ext
types (payload in brackets):
    ext 1  ResultTable   [packed map {"columns", "types", "rows"}]
    ext 2  Decimal       [its str(), ASCII]
    ext 3  datetime      [int64 big-endian microseconds since the epoch, UTC]
Tuples arrive as lists.
"""

from __future__ import annotations

import datetime as _dt
import decimal as _decimal
import struct
import threading

import msgpack

from flowstate.resulttable import ResultTable
from flowstate.types import micros_to_timestamp, timestamp_to_micros

__all__ = [
    "PROTOCOL_VERSION", "HELLO", "WELCOME", "CALL", "RESPONSE", "ERROR",
    "MP_BEGIN", "MP_FRAGMENT", "MP_END", "STATS", "REPLY",
    "DEFAULT_PORT", "DEFAULT_MAX_FRAME_BYTES", "DEFAULT_MAX_PARAMS", "DEFAULT_MAX_INFLIGHT",
    "DEFAULT_MAX_CONNECTIONS", "MAX_IDEMPOTENCY_KEY_BYTES", "frame", "pack", "new_packer", "unpack",
    "FrameReader", "parse_address", "options_error",
]

PROTOCOL_VERSION = 1
DEFAULT_PORT = 21212

# message kinds (element 0)
HELLO = 0
WELCOME = 0
CALL = 1
RESPONSE = 2
ERROR = 3
# internal kinds, server processes only
MP_BEGIN = 10        # [10, seq, txn_id, timestamp_us]
MP_FRAGMENT = 11     # [11, seq, table, op, args]
MP_END = 12          # [12, seq, commit: bool]
STATS = 13           # [13, seq, with the state hash?]
SNAPSHOT = 14        # [14, seq, path, cut]: fork and write the store (inside a cut)
REPLY = 19           # [19, seq, status, result, error_message]

#: A multi-partition transaction id is (global sequence << MP_TAG_BITS) | the
#: all-ones tag, so it never equals a partition's own transaction ids.
MP_TAG_BITS = 10

DEFAULT_MAX_FRAME_BYTES = 1 << 20
DEFAULT_MAX_PARAMS = 1024
DEFAULT_MAX_INFLIGHT = 10_000       # calls in flight per connection
DEFAULT_MAX_CONNECTIONS = 1000      # per process
MAX_IDEMPOTENCY_KEY_BYTES = 128

_EXT_TABLE, _EXT_DECIMAL, _EXT_DATETIME = 1, 2, 3
_LENGTH = struct.Struct(">I")
_MICROS = struct.Struct(">q")


def _default(value):
    if isinstance(value, ResultTable):
        wire = {"columns": list(value.columns), "types": [int(t) for t in value.types],
                "rows": value.rows}
        return msgpack.ExtType(_EXT_TABLE, msgpack.packb(wire, default=_default))
    if isinstance(value, _decimal.Decimal):
        return msgpack.ExtType(_EXT_DECIMAL, str(value).encode("ascii"))
    if isinstance(value, _dt.datetime):
        return msgpack.ExtType(_EXT_DATETIME, _MICROS.pack(timestamp_to_micros(value)))
    if isinstance(value, (set, frozenset)):
        return list(value)
    if hasattr(value, "tolist"):        # numpy arrays and scalars
        return value.tolist()
    raise TypeError(f"cannot send a {type(value).__name__} over the wire: {value!r:.80}")


def _ext_hook(code, data):
    if code == _EXT_TABLE:
        wire = msgpack.unpackb(data, ext_hook=_ext_hook)
        table = ResultTable.__new__(ResultTable)
        from flowstate.types import ColumnType
        table.columns = tuple(wire["columns"])
        table.types = tuple(ColumnType(t) for t in wire["types"])
        table.rows = [tuple(r) for r in wire["rows"]]
        return table
    if code == _EXT_DECIMAL:
        return _decimal.Decimal(data.decode("ascii"))
    if code == _EXT_DATETIME:
        return micros_to_timestamp(_MICROS.unpack(data)[0])
    return msgpack.ExtType(code, data)


# A Packer per thread: msgpack.packb builds a new one per call, which costs
# as much as packing a small message.
_local = threading.local()


def _packer() -> msgpack.Packer:
    packer = _local.packer = msgpack.Packer(default=_default)
    return packer


def new_packer() -> msgpack.Packer:
    """A Packer with this module's value encoding, for one thread's use."""
    return msgpack.Packer(default=_default)


def pack(message) -> bytes:
    """The msgpack body of a message (no length prefix)."""
    try:
        return _local.packer.pack(message)
    except AttributeError:
        return _packer().pack(message)


def frame(message) -> bytes:
    """One whole frame: length prefix + msgpack body."""
    try:
        body = _local.packer.pack(message)
    except AttributeError:
        body = _packer().pack(message)
    return len(body).to_bytes(4, "big") + body


def unpack(body):
    return msgpack.unpackb(body, ext_hook=_ext_hook, strict_map_key=False)


def options_error(options) -> str | None:
    """Why a CALL's options (element 4) are not acceptable, or None."""
    if options is None:
        return None
    if type(options) is not dict:
        return "a CALL's options must be a map or nil"
    key = options.get("idempotency_key")
    if key is not None:
        if type(key) is str:
            size = len(key.encode("utf-8"))
        elif type(key) is bytes:
            size = len(key)
        else:
            return f"an idempotency_key must be a str or bin, got {type(key).__name__}"
        if size > MAX_IDEMPOTENCY_KEY_BYTES:
            return (f"an idempotency_key is at most {MAX_IDEMPOTENCY_KEY_BYTES} bytes, "
                    f"got {size}")
    return None


class FrameTooLarge(Exception):
    """A frame announced more bytes than the receiver accepts."""

    def __init__(self, size: int, limit: int, messages: list | None = None):
        super().__init__(f"a frame of {size} bytes is over the limit of {limit} bytes")
        self.size = size
        self.limit = limit
        #: the messages completed before the oversized frame in the same feed
        self.messages = messages if messages is not None else []


class FrameReader:
    """Splits a byte stream into decoded messages.

    ``feed(data)`` returns the list of messages completed by ``data``.
    A frame over the limit raises FrameTooLarge once (carrying, in
    ``messages``, those completed before it); its body is then skipped as
    it arrives and reading goes on after it. A body that is
    not valid msgpack raises ValueError: the stream cannot be trusted any
    more and the caller closes it.
    """

    __slots__ = ("buffer", "max_frame_bytes", "skip")

    def __init__(self, max_frame_bytes: int = DEFAULT_MAX_FRAME_BYTES):
        self.buffer = b""
        self.max_frame_bytes = max_frame_bytes
        self.skip = 0

    def feed(self, data: bytes) -> list:
        if self.skip:
            if len(data) <= self.skip:
                self.skip -= len(data)
                return []
            data = data[self.skip:]
            self.skip = 0
        buf = self.buffer + data if self.buffer else data
        messages = []
        pos = 0
        end_of_data = len(buf)
        limit = self.max_frame_bytes
        unpackb = msgpack.unpackb
        length_at = _LENGTH.unpack_from
        while end_of_data - pos >= 4:
            size = length_at(buf, pos)[0]
            end = pos + 4 + size
            if size > limit:
                if end <= end_of_data:
                    self.buffer = buf[end:]
                else:
                    self.skip = end - end_of_data
                    self.buffer = b""
                raise FrameTooLarge(size, limit, messages)
            if end > end_of_data:
                break
            try:
                message = unpackb(buf[pos + 4:end], ext_hook=_ext_hook, strict_map_key=False)
            except Exception as e:
                raise ValueError(f"the frame body is not valid msgpack ({e})") from None
            if type(message) is not list or not message:
                raise ValueError("a message must be a non-empty msgpack array")
            messages.append(message)
            pos = end
        self.buffer = buf[pos:] if pos < end_of_data else b""
        return messages

    def drain_after_too_large(self) -> list:
        """The messages already buffered after an oversized frame."""
        data, self.buffer = self.buffer, b""
        return self.feed(data) if data else []


def parse_address(text: str, default_host: str = "127.0.0.1",
                  default_port: int = DEFAULT_PORT) -> tuple[str, int]:
    """``host:port``, ``host`` or ``:port`` (IPv6 as ``[::1]:port``)."""
    text = text.strip()
    if not text:
        return default_host, default_port
    if text.startswith("["):
        host, _, rest = text[1:].partition("]")
        port = rest[1:] if rest.startswith(":") else ""
    elif text.count(":") == 1:
        host, port = text.split(":")
    else:
        host, port = text, ""
    try:
        port_number = int(port) if port else default_port
    except ValueError:
        raise ValueError(f"bad address {text!r}: the port must be a number") from None
    if not 0 < port_number < 65536:
        raise ValueError(f"bad address {text!r}: port out of range")
    return host or default_host, port_number
