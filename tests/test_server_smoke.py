"""The server end to end: start it, call it, stop it."""

import asyncio

import pytest

from flowstate.client import AsyncClient, Client
from flowstate.errors import ParameterError, UnknownProcedureError

from server_harness import ServerProcess, pid_alive


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    with ServerProcess(tmp_path_factory.mktemp("smoke"), partitions=2) as s:
        yield s


def test_vote_initialize_results(server):
    with Client(server.address) as c:
        assert c.call("@Ping").result == 0
        assert c.call("Initialize", 6).result == 6
        phone = 5085551234
        assert [c.call("Vote", phone, 3, 2).result for _ in range(3)] == [0, 0, 2]
        assert c.call("Vote", phone + 1, 99, 2).result == 1
        results = c.call("Results").result
        assert ("Kelly Clauss", 3, 2) in list(results)


def test_bad_calls_are_answered(server):
    with Client(server.address) as c:
        with pytest.raises(UnknownProcedureError):
            c.call("NoSuchProcedure")
        with pytest.raises(ParameterError, match="takes 3 parameter"):
            c.call("Vote", 1)
        with pytest.raises(ParameterError, match="must be an integer"):
            c.call("Vote", "5085551234", 1, 2)
        assert c.call("@Ping").result == 0


def test_async_client(server):
    async def main():
        async with AsyncClient(server.address) as c:
            await c.call("Initialize", 6)
            return [(await c.call("Vote", 6175550000 + i, 2, 2)).result for i in range(10)]
    assert asyncio.run(main()) == [0] * 10


def test_clean_stop_leaves_no_process(tmp_path):
    s = ServerProcess(tmp_path, partitions=2)
    assert len(s.children) == 3
    assert s.stop() == 0
    assert not any(pid_alive(pid) for pid in s.children.values())
    assert "server stopped" in s.log
