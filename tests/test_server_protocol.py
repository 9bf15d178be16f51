"""Wire protocol v1 against a real server, over raw TCP sockets.

Frames are built here by hand (struct + msgpack), not with the driver or
flowstate.protocol, so these tests check the server against the protocol
as docs/protocol.md describes it. Every bad-input case is tried on the
coordinator's port and on both partitions' direct ports: they must behave
the same.

No timing assertions: waits exist only so a broken server fails a test
instead of hanging it.
"""

from __future__ import annotations

import socket
import struct
import textwrap
import threading
import time

import msgpack
import pytest

from flowstate.routing import Topology

from server_harness import ServerProcess, pid_alive

HELLO, WELCOME, CALL, RESPONSE, ERROR = 0, 0, 1, 2, 3
TIMEOUT = 20.0                   # seconds a socket waits before a test fails
PORTS = ["coordinator", "partition 0", "partition 1"]
TOPOLOGY = Topology(2)


# -- raw frames and connections ---------------------------------------------------

def frame(message) -> bytes:
    """4-byte big-endian length + the msgpack body."""
    return body_frame(msgpack.packb(message))


def body_frame(body: bytes) -> bytes:
    return struct.pack(">I", len(body)) + body


CLOSED = object()


class Raw:
    """One TCP connection speaking frames, with no driver in between."""

    def __init__(self, address):
        self.sock = socket.create_connection(address, timeout=TIMEOUT)
        self.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self.buffer = b""
        self.ids = iter(range(1, 1 << 62))

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()

    def close(self) -> None:
        self.sock.close()

    def send(self, *messages) -> None:
        self.sock.sendall(b"".join(frame(m) for m in messages))

    def send_bytes(self, data: bytes) -> None:
        self.sock.sendall(data)

    def next_frame(self) -> bytes | None:
        """The next whole frame as bytes, or None once the server closed."""
        while True:
            if len(self.buffer) >= 4:
                end = 4 + int.from_bytes(self.buffer[:4], "big")
                if len(self.buffer) >= end:
                    data, self.buffer = self.buffer[:end], self.buffer[end:]
                    return data
            try:
                data = self.sock.recv(1 << 16)
            except ConnectionResetError:
                data = b""
            if not data:
                return None
            self.buffer += data

    def next(self):
        """The next message, or CLOSED once the server closed the connection."""
        data = self.next_frame()
        return CLOSED if data is None else msgpack.unpackb(data[4:], strict_map_key=False)

    def receive(self):
        message = self.next()
        assert message is not CLOSED, "the server closed the connection"
        return message

    def assert_closed(self) -> None:
        message = self.next()
        assert message is CLOSED, f"expected the server to close the connection, got {message!r}"

    def call(self, procedure, *params, options=None) -> list:
        """One CALL, its RESPONSE: [2, id, status, result, error]."""
        request_id = next(self.ids)
        self.send([CALL, request_id, procedure, list(params), options])
        response = self.receive()
        assert response[:2] == [RESPONSE, request_id], response
        return response

    def ping(self) -> None:
        assert self.call("@Ping")[2:] == [0, 0, None]


class Served:
    """A running server and the cluster its WELCOME describes."""

    def __init__(self, process: ServerProcess):
        self.process = process
        with Raw((process.host, process.port)) as c:
            c.send([HELLO, 1, "test_server_protocol", None])
            welcome = c.receive()
        assert welcome[:2] == [WELCOME, 1], welcome
        self.info = welcome[3]

    def at(self, where: str) -> tuple[str, int]:
        if where == "coordinator":
            return tuple(self.info["coordinator"])
        return tuple(self.info["addresses"][int(where.split()[1])])

    def connect(self, where: str) -> Raw:
        return Raw(self.at(where))

    def assert_up(self) -> None:
        assert self.process.process.poll() is None, self.process.log
        assert all(pid_alive(pid) for pid in self.process.children.values()), self.process.log
        for where in PORTS:
            with self.connect(where) as c:
                c.ping()

    def assert_no_internal_errors(self) -> None:
        log = self.process.log
        assert "Traceback" not in log and "internal error" not in log, log


def owned_by(partition: int, start: int) -> int:
    """The first phone number >= start that partition owns."""
    return next(n for n in range(start, start + 1000) if TOPOLOGY.partition_of(n) == partition)


@pytest.fixture(scope="module")
def voter(tmp_path_factory):
    """The default Voter application on 2 partitions, default limits."""
    with ServerProcess(tmp_path_factory.mktemp("protocol"), partitions=2) as s:
        served = Served(s)
        with served.connect("coordinator") as c:
            assert c.call("Initialize", 6)[2:] == [0, 6, None]
        yield served
        served.assert_no_internal_errors()


@pytest.fixture(scope="module")
def limited(tmp_path_factory):
    """Voter with a 4096-byte frame limit and 5 connections per process."""
    with ServerProcess(tmp_path_factory.mktemp("limited"), partitions=2,
                       extra=["--max-frame-bytes", "4096", "--max-connections", "5"]) as s:
        served = Served(s)
        yield served
        served.assert_no_internal_errors()


FAULTY_SCHEMA = """
CREATE TABLE items (id BIGINT NOT NULL PRIMARY KEY, note VARCHAR(40) NOT NULL);
PARTITION TABLE items ON COLUMN id;
CREATE PROCEDURE FROM CLASS faulty.Put;
CREATE PROCEDURE FROM CLASS faulty.Get;
CREATE PROCEDURE FROM CLASS faulty.Crash;
CREATE PROCEDURE FROM CLASS faulty.Refuse;
CREATE PROCEDURE FROM CLASS faulty.CrashEverywhere;
CREATE PROCEDURE FROM CLASS faulty.RefuseEverywhere;
PARTITION PROCEDURE Put ON TABLE items COLUMN id;
"""

FAULTY_MODULE = '''
from flowstate.procedures import Abort, PartitionOn, Procedure

class Put(Procedure):
    def run(self, item_id, note):
        self.db.items.insert(item_id, note)
        return item_id

class Get(Procedure):
    partition = PartitionOn("items", "id")
    def run(self, item_id):
        row = self.db.items.get(item_id)
        return None if row is None else row.note

class Crash(Procedure):
    """Writes, then fails with a Python exception (single-partition)."""
    partition = PartitionOn("items", "id")
    def run(self, item_id):
        self.db.items.insert(item_id, "doomed")
        return {}["no such key"]

class Refuse(Procedure):
    """Writes, then aborts (single-partition)."""
    partition = PartitionOn("items", "id")
    def run(self, item_id):
        self.db.items.insert(item_id, "refused")
        raise Abort(f"item {item_id} is refused")

class CrashEverywhere(Procedure):
    """Multi-partition: writes two rows, then fails."""
    def run(self, first, second):
        self.db.items.insert(first, "doomed")
        self.db.items.insert(second, "doomed")
        raise ValueError("boom")

class RefuseEverywhere(Procedure):
    """Multi-partition: writes two rows, then aborts."""
    def run(self, first, second):
        self.db.items.insert(first, "refused")
        self.db.items.insert(second, "refused")
        raise Abort("refused everywhere")
'''


@pytest.fixture(scope="module")
def faulty(tmp_path_factory):
    """A tiny application whose procedures fail on purpose."""
    app = tmp_path_factory.mktemp("faulty_app")
    (app / "schema.sql").write_text(FAULTY_SCHEMA)
    (app / "faulty.py").write_text(textwrap.dedent(FAULTY_MODULE))
    with ServerProcess(tmp_path_factory.mktemp("faulty"), app=app, partitions=2) as s:
        served = Served(s)
        yield served
        served.assert_no_internal_errors()


# -- the handshake ---------------------------------------------------------------------

@pytest.mark.parametrize("where", PORTS)
def test_welcome_describes_the_cluster(voter, where):
    with voter.connect(where) as c:
        c.send([HELLO, 1, "raw", None])
        kind, version, server_version, info = c.receive()
    assert (kind, version) == (WELCOME, 1)
    assert isinstance(server_version, str) and server_version
    assert info["app"] == "voter"
    assert info["partitions"] == 2
    assert info["topology"] == {"hash_version": 1, "buckets": 16384, "partitions": 2,
                                "bucket_map": TOPOLOGY.bucket_map}
    assert info["addresses"] == voter.info["addresses"] and len(info["addresses"]) == 2
    assert info["coordinator"] == list(voter.at("coordinator"))
    assert info["process"] == ("coordinator" if where == "coordinator" else int(where[-1]))
    assert info["procedures"] == {"Initialize": None, "Results": None, "Vote": 0}
    assert info["limits"] == {"max_frame_bytes": 1 << 20, "max_params": 1024,
                              "max_inflight": 10_000}


@pytest.mark.parametrize("where", PORTS)
def test_wrong_protocol_version_gets_error_104_and_the_connection_stays(voter, where):
    with voter.connect(where) as c:
        c.send([HELLO, 2, "from the future", None])
        kind, status, message = c.receive()
        assert (kind, status) == (ERROR, 104)
        assert "version 1" in message
        c.send([HELLO])                              # no version at all
        assert c.receive()[:2] == [ERROR, 104]
        c.send([HELLO, 1, "raw", None])              # a right one still works
        assert c.receive()[:2] == [WELCOME, 1]
        c.ping()


@pytest.mark.parametrize("where", PORTS)
def test_calls_need_no_hello_and_are_pipelined(voter, where):
    phones = [owned_by(p, 7_000_000_000 + 1000 * PORTS.index(where)) for p in (0, 1)]
    with voter.connect(where) as c:
        c.send(*[[CALL, 100 + i, "Vote", [phone, 2, 5], None] for i, phone in enumerate(phones)],
               [CALL, 102, "@Ping", [], None])
        answers = {m[1]: m for m in (c.receive() for _ in range(3))}   # any order
    assert answers == {100: [RESPONSE, 100, 0, 0, None], 101: [RESPONSE, 101, 0, 0, None],
                       102: [RESPONSE, 102, 0, 0, None]}


@pytest.mark.parametrize("where", PORTS)
def test_a_frame_trickling_in_byte_by_byte(voter, where):
    with voter.connect(where) as c:
        for byte in frame([CALL, 5, "@Ping", [], None]):
            c.send_bytes(bytes([byte]))
        assert c.receive() == [RESPONSE, 5, 0, 0, None]


# the exchanges of docs/protocol.md section 6, byte for byte: (sent, answer)
WORKED_EXAMPLE = [
    ("00 00 00 11 95 01 01 aa 49 6e 69 74 69 61 6c 69 7a 65 91 06 c0",
     "00 00 00 06 95 02 01 00 06 c0"),
    ("00 00 00 15 95 01 02 a4 56 6f 74 65 93 cf 00 00 00 01 2f 1f 5a 82 03 02 c0",
     "00 00 00 06 95 02 02 00 00 c0"),
    ("00 00 00 13 95 01 03 a4 56 6f 74 65 91 cf 00 00 00 01 2f 1f 5a 82 c0",
     "00 00 00 5f 95 02 03 cc ca c0 d9 57" + b"Vote takes 3 parameter(s) (phone_number, "
     b"contestant_number, max_votes_per_phone), got 1".hex()),
    ("00 00 00 3d 95 01 04 a4 56 6f 74 65 93 cf 00 00 00 01 2f 1f 5a 82 03 02 82 aa 74 69 6d 65"
     "6f 75 74 5f 6d 73 cd 13 88 af 69 64 65 6d 70 6f 74 65 6e 63 79 5f 6b 65 79 a9 76 6f 74 65"
     "2d 30 30 30 31", "00 00 00 06 95 02 04 00 00 c0"),
    ("00 00 00 3d 95 01 05 a4 56 6f 74 65 93 cf 00 00 00 01 2f 1f 5a 82 03 02 82 aa 74 69 6d 65"
     "6f 75 74 5f 6d 73 cd 13 88 af 69 64 65 6d 70 6f 74 65 6e 63 79 5f 6b 65 79 a9 76 6f 74 65"
     "2d 30 30 30 31", "00 00 00 06 95 02 05 00 00 c0"),
    ("00 00 00 0c 94 00 02 a7 65 78 61 6d 70 6c 65 c0",
     "00 00 00 42 93 03 68 d9 3d" + b"this server speaks protocol version 1, "
     b"the client asked for 2".hex()),
    ("00 00 00 03 92 07 08",
     "00 00 00 43 95 02 08 67 c0 d9 3c" + b"unknown message kind 7; a client sends HELLO (0) "
     b"or CALL (1)".hex()),
    ("00 00 00 0b 95 01 09 a5 40 50 69 6e 67 90 c0", "00 00 00 06 95 02 09 00 00 c0"),
]


def test_the_worked_example_of_the_docs(voter):
    """docs/protocol.md, section 6, replayed byte for byte (5085551234 votes
    nowhere else in this module; the voter fixture ran Initialize(6))."""
    with voter.connect("coordinator") as c:
        hello = bytes.fromhex("00 00 00 0c 94 00 01 a7 65 78 61 6d 70 6c 65 c0")
        assert hello == frame([HELLO, 1, "example", None])
        c.send_bytes(hello)
        welcome = c.next_frame()
        assert welcome[4:7] == bytes.fromhex("94 00 01")         # [WELCOME, 1, ...
        for sent, answer in WORKED_EXAMPLE:
            c.send_bytes(bytes.fromhex(sent))
            assert c.next_frame().hex(" ") == bytes.fromhex(answer).hex(" ")


# -- bodies that are not a message: ERROR, then the connection closes --------------------

BAD_BODIES = {
    "reserved byte 0xc1": b"\xc1",
    "truncated array": b"\x93\x01",
    "two objects": msgpack.packb([CALL, 1, "@Ping", [], None]) + b"\x01",
    "empty body": b"",
    "bad Decimal ext": msgpack.packb([CALL, 1, "Vote", [msgpack.ExtType(2, b"1.2.3"), 1, 1],
                                      None]),
    "short datetime ext": msgpack.packb([CALL, 1, "Vote", [msgpack.ExtType(3, b"ab"), 1, 1],
                                         None]),
    "an int": msgpack.packb(5),
    "a string": msgpack.packb("hello"),
    "nil": msgpack.packb(None),
    "a map": msgpack.packb({"kind": 1}),
    "an empty array": msgpack.packb([]),
}


@pytest.mark.parametrize("where", PORTS)
@pytest.mark.parametrize("bad", list(BAD_BODIES))
def test_a_body_that_is_not_a_message_closes_only_its_connection(voter, where, bad):
    with voter.connect(where) as bystander, voter.connect(where) as c:
        bystander.ping()
        c.send_bytes(body_frame(BAD_BODIES[bad]))
        kind, status, message = c.receive()
        assert (kind, status) == (ERROR, 101)
        assert "closing the connection" in message
        c.assert_closed()
        bystander.ping()                             # the other connection is untouched
        phone = owned_by(PORTS.index(where) % 2, 7_100_000_000)
        assert bystander.call("Vote", phone, 1, 1000)[2] == 0
    voter.assert_up()


# -- message kinds -------------------------------------------------------------------------

@pytest.mark.parametrize("where", PORTS)
def test_unknown_kind_with_and_without_a_request_id(voter, where):
    with voter.connect(where) as c:
        c.send([7, 42, "what"])
        assert c.receive()[:4] == [RESPONSE, 42, 103, None]
        c.send([7])
        assert c.receive()[:2] == [ERROR, 103]
        c.send(["hello", "x"])
        assert c.receive()[:2] == [ERROR, 103]
        c.ping()


@pytest.mark.parametrize("where", PORTS)
@pytest.mark.parametrize("kind, message", [
    (10, [10, 9, 1 << 20, 1_700_000_000_000_000]),   # MP_BEGIN: would hold the partition
    (11, [11, 9, "votes", "truncate", []]),           # MP_FRAGMENT
    (12, [12, 9, True]),                              # MP_END
    (13, [13, 9]),                                    # STATS
    (19, [19, 9, 0, None, None]),                     # REPLY
])
def test_internal_kinds_are_refused_on_client_ports(voter, where, kind, message):
    with voter.connect(where) as c, voter.connect(where) as other:
        c.send(message)
        response = c.receive()
        assert response[:4] == [RESPONSE, 9, 103, None]
        assert f"unknown message kind {kind}" in response[4]
        c.send([kind])                                # no request id: an ERROR
        assert c.receive()[:2] == [ERROR, 103]
        c.ping()
        other.ping()                                  # nothing is held


# -- calls the server rejects ----------------------------------------------------------------

@pytest.mark.parametrize("where", PORTS)
def test_rejected_calls(voter, where):
    with voter.connect(where) as c:
        status, result, error = c.call("NoSuchProcedure", 1)[2:]
        assert (status, result) == (201, None) and "NoSuchProcedure" in error
        assert c.call("@NoSuchSystemProcedure")[2] == 201

        status, _, error = c.call("Vote", 5085551234)[2:]
        assert status == 202 and "takes 3 parameter" in error
        assert c.call("Vote", 5085551234, 1, 2, 3)[2] == 202
        assert c.call("@Ping", 1)[2] == 202

        for wrong in ["5085551234", 5085551234.0, True, None, b"\x01", 1 << 63]:
            status, _, error = c.call("Vote", wrong, 1, 2)[2:]
            assert status == 202, (wrong, error)
            assert "parameter 0" in error

        c.send([CALL, 7, "Vote", 5085551234, None])          # parameters not an array
        assert c.receive()[:3] == [RESPONSE, 7, 202]
        c.send([CALL, 8, "@Ping", 5, None])
        assert c.receive()[:3] == [RESPONSE, 8, 202]
        c.ping()


@pytest.mark.parametrize("where", PORTS)
def test_malformed_calls_get_101_under_their_request_id(voter, where):
    with voter.connect(where) as c:
        for name in [17, None, b"Vote", ["Vote"]]:           # procedure name not a string
            c.send([CALL, 11, name, [5085551234, 1, 2], None])
            assert c.receive()[:4] == [RESPONSE, 11, 101, None]
        c.send([CALL, 12, "@Ping", [], 5])                   # options not a map
        assert c.receive()[:3] == [RESPONSE, 12, 101]
        c.send([CALL, 13])                                   # too short
        assert c.receive()[:3] == [RESPONSE, 13, 101]
        c.send([CALL, 14, "@Ping", [], None, "extra"])       # too long
        assert c.receive()[:3] == [RESPONSE, 14, 101]
        c.send([CALL, "fourteen", "@Ping", [], None])        # request id not an integer
        assert c.receive()[:3] == [RESPONSE, 0, 101]
        c.send([CALL, 15, "@Ping", []])                      # options may be left out
        assert c.receive() == [RESPONSE, 15, 0, 0, None]
        c.ping()


@pytest.mark.parametrize("where", PORTS)
def test_bad_idempotency_keys_are_answered(voter, where):
    """Also through forwarding: the coordinator forwards Vote to its owner,
    and a partition port forwards half of these to the other partition."""
    with voter.connect(where) as c:
        for partition in (0, 1):
            phone = owned_by(partition, 7_200_000_000)
            for key in [[1, 2], {"a": 1}, 12, "k" * 129, b"k" * 129]:
                status, _, error = c.call("Vote", phone, 1, 2, options={"idempotency_key": key})[2:]
                assert status == 101 and "idempotency_key" in error, (key, error)
            ok = c.call("Vote", phone, 1, 2, options={"idempotency_key": "k" * 128})
            assert ok[2] == 0
        c.ping()


# -- frames over the limit ---------------------------------------------------------------------

def oversized_call(request_id: int) -> bytes:
    return frame([CALL, request_id, "Vote", [5085551234, "x" * 5000, 2], None])


@pytest.mark.parametrize("where", PORTS)
def test_a_frame_over_the_limit_is_skipped_and_the_connection_stays(limited, where):
    assert limited.info["limits"]["max_frame_bytes"] == 4096
    with limited.connect(where) as c:
        c.send_bytes(oversized_call(1))
        kind, status, message = c.receive()
        assert (kind, status) == (ERROR, 102)
        assert "over the limit of 4096 bytes" in message
        assert c.call("Vote", owned_by(1, 7_300_000_000), 1, 2)[2] == 0   # same connection
        c.ping()


@pytest.mark.parametrize("where", PORTS)
def test_frames_around_oversized_ones_in_one_write_are_answered(limited, where):
    with limited.connect(where) as c:
        c.send_bytes(frame([CALL, 1, "@Ping", [], None]) + oversized_call(2)
                     + frame([CALL, 3, "@Ping", [], None]) + oversized_call(4) + oversized_call(5)
                     + frame([CALL, 6, "@Ping", [], None]))
        messages = [c.receive() for _ in range(6)]
        errors = [m for m in messages if m[0] == ERROR]
        responses = sorted((m for m in messages if m[0] == RESPONSE), key=lambda m: m[1])
        assert [e[1] for e in errors] == [102, 102, 102]
        assert responses == [[RESPONSE, i, 0, 0, None] for i in (1, 3, 6)]
        c.ping()


@pytest.mark.parametrize("where", PORTS)
def test_an_oversized_frame_arriving_in_pieces(limited, where):
    data = frame([CALL, 1, "Vote", [5085551234, "y" * 50_000, 2], None]) \
        + frame([CALL, 2, "@Ping", [], None])
    with limited.connect(where) as c:
        for start in range(0, len(data), 7_000):
            c.send_bytes(data[start:start + 7_000])
        assert c.receive()[:2] == [ERROR, 102]
        assert c.receive() == [RESPONSE, 2, 0, 0, None]


@pytest.mark.parametrize("where", PORTS)
def test_the_frame_limit_is_inclusive(limited, where):
    def ping_frame(request_id, body_size):
        # @Ping with one padding parameter: answered 202, so we see it was read
        overhead = len(msgpack.packb([CALL, request_id, "@Ping", ["p" * 1000], None])) - 1000
        body = msgpack.packb([CALL, request_id, "@Ping", ["p" * (body_size - overhead)], None])
        assert len(body) == body_size
        return body_frame(body)

    with limited.connect(where) as c:
        c.send_bytes(ping_frame(1, 4096))
        assert c.receive()[:3] == [RESPONSE, 1, 202]
        c.send_bytes(ping_frame(2, 4097))
        assert c.receive()[:2] == [ERROR, 102]
        c.ping()


@pytest.mark.parametrize("where", PORTS)
def test_a_call_at_the_limit_is_forwarded(limited, where):
    """A forwarded call travels under the link's sequence number instead
    of the client's request id, so it can grow past the client limit by a
    few bytes: the server's own hops must still carry it."""
    phone = owned_by(1 if where == "partition 0" else 0, 7_600_000_000)    # not owned here
    with limited.connect(where) as c:
        c.send(*[[CALL, i, "Vote", [phone, 1, 2], None] for i in range(300)])  # seq > 255
        assert sorted(c.receive()[1] for _ in range(300)) == list(range(300))
        overhead = len(msgpack.packb([CALL, 0, "Vote", [phone, "p" * 1000, 2], None])) - 1000
        body = msgpack.packb([CALL, 0, "Vote", [phone, "p" * (4096 - overhead), 2], None])
        assert len(body) == 4096
        c.send_bytes(body_frame(body))
        response = c.receive()                  # "p..." is no contestant number: 311
        assert response[:3] == [RESPONSE, 0, 311], response


# -- too many connections --------------------------------------------------------------------------

def fill_up(served: Served, where: str, limit: int) -> tuple[list[Raw], Raw]:
    """Exactly ``limit`` accepted connections and the refused next one.
    Connections of earlier tests may take a moment to be closed at the
    server, so start over until the first ``limit`` are all accepted."""
    deadline = time.monotonic() + TIMEOUT
    while True:
        accepted, refused = [], None
        for _ in range(limit + 1):
            c = served.connect(where)
            c.send([CALL, 1, "@Ping", [], None])
            answer = c.next()
            if answer == [RESPONSE, 1, 0, 0, None]:
                accepted.append(c)
                continue
            refused = (c, answer)
            break
        if len(accepted) == limit and refused is not None:
            return accepted, refused
        for c in accepted + ([refused[0]] if refused else []):
            c.close()
        assert time.monotonic() < deadline, f"{len(accepted)} accepted, then {refused}"
        time.sleep(0.1)


@pytest.mark.parametrize("where", PORTS)
def test_too_many_connections(limited, where):
    accepted, (c, answer) = fill_up(limited, where, 5)
    try:
        assert answer is not CLOSED, "refused without an ERROR"
        kind, status, message = answer
        assert (kind, status) == (ERROR, 203)
        assert "too many connections" in message
        c.assert_closed()
        for other in accepted:                       # the others are unaffected
            other.ping()
        accepted.pop().close()                       # a freed slot is given again
        deadline = time.monotonic() + TIMEOUT
        while True:
            with limited.connect(where) as again:
                again.send([CALL, 1, "@Ping", [], None])
                if again.next() == [RESPONSE, 1, 0, 0, None]:
                    break
            assert time.monotonic() < deadline
            time.sleep(0.05)
    finally:
        c.close()
        for other in accepted:
            other.close()


# -- procedures that fail ---------------------------------------------------------------------------

@pytest.mark.parametrize("where", PORTS)
def test_a_procedure_that_raises_is_320_and_rolled_back(faulty, where):
    base = 1000 * (PORTS.index(where) + 1)
    with faulty.connect(where) as c:
        for item in (owned_by(0, base), owned_by(1, base)):
            status, result, error = c.call("Crash", item)[2:]
            assert (status, result) == (320, None)
            assert "Crash failed: KeyError" in error
            assert c.call("Get", item)[2:] == [0, None, None]
        first, second = owned_by(0, base + 100), owned_by(1, base + 100)
        status, _, error = c.call("CrashEverywhere", first, second)[2:]
        assert status == 320 and "ValueError: boom" in error
        assert c.call("Get", first)[3] is None and c.call("Get", second)[3] is None
        c.ping()


@pytest.mark.parametrize("where", PORTS)
def test_a_procedure_that_aborts_is_301_and_rolled_back(faulty, where):
    base = 10_000 * (PORTS.index(where) + 1)
    with faulty.connect(where) as c:
        for item in (owned_by(0, base), owned_by(1, base)):
            assert c.call("Refuse", item)[2:] == [301, None, f"item {item} is refused"]
            assert c.call("Get", item)[2:] == [0, None, None]
        first, second = owned_by(0, base + 100), owned_by(1, base + 100)
        assert c.call("RefuseEverywhere", first, second)[2:] == [301, None, "refused everywhere"]
        assert c.call("Get", first)[3] is None and c.call("Get", second)[3] is None
        assert c.call("Put", first, "kept")[2:] == [0, first, None]     # nothing left behind
        assert c.call("Get", first)[2:] == [0, "kept", None]


@pytest.mark.parametrize("where", PORTS)
def test_an_idempotent_retry_gets_the_first_outcome(faulty, where):
    base = 100_000 * (PORTS.index(where) + 1)
    with faulty.connect(where) as c:
        for item in (owned_by(0, base), owned_by(1, base)):
            options = {"idempotency_key": f"put-{item}".encode()}
            assert c.call("Put", item, "once", options=options)[2:] == [0, item, None]
            assert c.call("Put", item, "twice", options=options)[2:] == [0, item, None]
            assert c.call("Put", item, "again")[2] == 315                  # no key: it runs
            assert c.call("Get", item)[3] == "once"


# -- backpressure --------------------------------------------------------------------------------------

def rss_mb(pid: int) -> float:
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    raise AssertionError(f"no VmRSS for pid {pid}")


def partition_stats(served: Served, partition: int) -> dict:
    with served.connect("coordinator") as c:
        status, result, error = c.call("@Statistics")[2:]
    assert status == 0, error
    return result["partitions"][partition]


def test_a_connection_that_does_not_read_is_not_read(voter):
    """Flood a partition's direct port with Vote calls and never read the
    answers: the partition must stop reading that connection (so the
    flood stalls in the kernel's buffers) instead of buffering answers
    without a bound; other connections are served meanwhile."""
    calls, batch = 3_000_000, 20_000         # far more than the socket buffers hold
    pid = voter.process.children["partition 0"]
    phone = owned_by(0, 7_400_000_000)       # owned here: the partition's fast path
    chunk = b"".join(frame([CALL, i, "Vote", [phone, 1, 2], None]) for i in range(batch))
    flood = socket.create_connection(voter.at("partition 0"), timeout=None)
    sent = [0]
    failure = []

    def send_all():
        try:
            for _ in range(calls // batch):
                flood.sendall(chunk)
                sent[0] += batch
        except OSError as e:                  # the test closed the socket
            failure.append(e)

    connections_before = partition_stats(voter, 0)["connections"]
    rss_before = rss_mb(pid)
    sender = threading.Thread(target=send_all, name="flood", daemon=True)
    sender.start()
    try:
        # wait until the flood stops making progress (or all of it went through)
        deadline = time.monotonic() + 60
        last, unchanged = -1, 0
        while sender.is_alive() and unchanged < 10 and time.monotonic() < deadline:
            time.sleep(0.2)
            unchanged = unchanged + 1 if sent[0] == last else 0
            last = sent[0]
        assert sender.is_alive(), (
            f"the partition read all {calls:,} calls although none of their answers "
            f"was read")
        assert sent[0] < calls
        assert rss_mb(pid) - rss_before < 100, (rss_before, rss_mb(pid))

        # the partition still serves everyone else
        with voter.connect("partition 0") as other, voter.connect("coordinator") as front:
            other.ping()
            front.ping()
            assert other.call("Vote", owned_by(0, 7_500_000_000), 2, 2)[2] == 0
            assert front.call("Vote", owned_by(0, 7_500_001_000), 2, 2)[2] == 0
        processed = partition_stats(voter, 0)["calls"]
        assert processed < calls
        assert rss_mb(pid) - rss_before < 100, (rss_before, rss_mb(pid))
    finally:
        try:
            flood.shutdown(socket.SHUT_RDWR)
        except OSError:
            pass
        flood.close()
        sender.join(TIMEOUT)
    assert not sender.is_alive()

    # the partition lets go of the closed connection and carries on
    deadline = time.monotonic() + TIMEOUT
    while partition_stats(voter, 0)["connections"] > connections_before:
        assert time.monotonic() < deadline, "the flooding connection was never dropped"
        time.sleep(0.1)
    with voter.connect("partition 0") as c:
        c.ping()
    voter.assert_up()
