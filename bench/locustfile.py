"""Locust load test: VoltDB's Voter workload against a running Flowstate server.

Start a server, then run locust headless against it (from the repository root):

    flowstate serve --partitions 2 &
    locust -f bench/locustfile.py --headless -u 50 -r 50 -t 30s --host localhost:21212

``--host`` is the server's client port as ``host:port`` (a ``flowstate://``
prefix is accepted, and so is a comma-separated list of servers); without
it, localhost:21212. Drop ``--headless`` for locust's web UI
(http://localhost:8089). Extra options: ``--contestants N`` (default 6)
and ``--max-votes N`` (votes allowed per phone, default 2).

Each user first calls ``Initialize`` (idempotent: a second call changes
nothing and returns the number of contestants already there), then loops
without waiting: ~99% ``Vote`` (phone numbers and contestants from its own
PhoneCallGenerator, seeded differently per user) and ~1% ``Results``.
Every call goes to locust's statistics under the procedure's name, with
its round trip in ms; a call that raises (timeout, lost connection,
overload, an error from the server) is a failure. Vote's own outcomes --
accepted (0), no such contestant (1), over the per-phone limit (2) -- are
all successful calls.

Users do not wait between calls (a closed loop): the load is set by the
number of users, and one locust process runs on one core; for more load,
add ``--processes -1`` (one process per core, each with its own Client).
"""

from __future__ import annotations

import itertools
import os
import threading
import time

from locust import User, constant, events, task

from flowstate.client import Client
from flowstate.client.common import DEFAULT_SERVER
from flowstate.procedures.voter.phonecalls import PhoneCallGenerator

DEFAULT_CONTESTANTS = 6
DEFAULT_MAX_VOTES = 2


@events.init_command_line_parser.add_listener
def _add_arguments(parser):
    parser.add_argument("--contestants", type=int, default=DEFAULT_CONTESTANTS,
                        help="contestants Initialize creates if the server has none "
                             "(default: %(default)s)")
    parser.add_argument("--max-votes", type=int, default=DEFAULT_MAX_VOTES,
                        help="votes allowed per phone number (default: %(default)s)")


def server_address(host: str | None) -> str:
    """locust's --host as the Client wants it: ``host:port[,host:port...]``."""
    if not host or not host.strip():
        return DEFAULT_SERVER
    servers = []
    for part in host.split(","):
        part = part.strip()
        if part.lower().startswith("flowstate://"):
            part = part[len("flowstate://"):]
        part = part.rstrip("/")
        if part:
            servers.append(part)
    return ",".join(servers) or DEFAULT_SERVER


# One Client per locust process, shared by all its users, rather than one
# per user. A Client is safe to share between greenlets and keeps many calls
# in flight on each connection, so N users need one connection per
# partition plus one to the coordinator instead of N times that, and one
# reader greenlet per connection picks up the answers of all the users at
# once (about 16 responses per recv() with 50 users) where per-user clients
# wake one reader, and do one recv(), per answer. Measured with this file
# (2-core machine, 2-partition server, one locust process, alternating 10 s
# runs): the shared Client was ahead in 8 of 9 pairs, by 20-40% at 50-200
# users (200 users: ~5,800 against ~4,200 req/s, mean Vote latency 20 ms
# against 28 ms). Per-user clients also use up server connections (1000 per
# process by default) and a handshake per user at ramp-up. The Client is
# made on first use, not at import, so each process forked by
# ``--processes`` makes its own.
_client: Client | None = None
_client_pid = 0
_client_lock = threading.Lock()      # a gevent lock: locust monkey-patches threading


def shared_client(address: str) -> Client:
    global _client, _client_pid
    client = _client
    if client is not None and _client_pid == os.getpid():
        return client
    with _client_lock:
        if _client is None or _client_pid != os.getpid():
            _client = Client(address)        # connects; raises if the server is unreachable
            _client_pid = os.getpid()
        return _client


@events.test_stop.add_listener
def _close_client(**_kwargs):
    global _client
    with _client_lock:
        if _client is not None and _client_pid == os.getpid():
            _client.close()
        _client = None


_user_numbers = itertools.count()


class VoterUser(User):
    """A phone-in audience: votes, and now and then looks at the results."""

    wait_time = constant(0)

    def on_start(self):
        options = self.environment.parsed_options
        contestants = getattr(options, "contestants", DEFAULT_CONTESTANTS)
        self.max_votes = getattr(options, "max_votes", DEFAULT_MAX_VOTES)
        self.address = server_address(self.host)
        # the server may already hold another number of contestants: vote for those
        result = self.call("Initialize", contestants)
        if isinstance(result, int) and result > 0:
            contestants = result
        seed = f"{os.getpid()}-{next(_user_numbers)}"       # a different stream per user
        self.phone_calls = PhoneCallGenerator(contestants, seed=seed)

    def call(self, procedure: str, *params):
        """Run one call and report it to locust; its result, or None if it failed."""
        start = time.perf_counter()
        result = exception = None
        try:
            result = shared_client(self.address).call(procedure, *params).result
        except Exception as e:          # a failed call, not a broken user: report it and go on
            exception = e
        self.environment.events.request.fire(
            request_type="flowstate", name=procedure,
            response_time=(time.perf_counter() - start) * 1000, response_length=0,
            exception=exception, context={})
        return result

    @task(99)
    def vote(self):
        phone, contestant = self.phone_calls.next_call()
        self.call("Vote", phone, contestant, self.max_votes)

    @task(1)
    def results(self):
        self.call("Results")
