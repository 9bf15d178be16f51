"""The Voter benchmark client (flowstate.voterbench) against a real server.

Checks what the figures say, never how fast: calls were made, none
failed, the outcome counts add up, and the votes the server's Results
gained are exactly the votes the benchmark's calls were told were
accepted.
"""

import json
import subprocess
import sys

import pytest

from flowstate import voterbench
from flowstate.client import Client

from server_harness import ServerProcess


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    with ServerProcess(tmp_path_factory.mktemp("voterbench"), partitions=2) as s:
        yield s


def results_total(address) -> int:
    with Client(address) as c:
        return sum(row[2] for row in c.call("Results").result)


def check_figures(f: dict, connections: int, inflight: int) -> None:
    assert f["partitions"] == 2
    assert (f["connections"], f["inflight"]) == (connections, inflight)
    assert f["calls"] > 0
    assert f["failed"] == 0 and f["errors"] == {}
    assert sum(f["outcomes"].values()) == f["calls"]
    assert f["outcomes"]["other"] == 0
    assert f["outcomes"]["accepted"] > 0
    assert f["calls_per_s"] > 0
    assert f["p50_ms"] <= f["p99_ms"] <= f["p999_ms"] <= f["max_ms"]
    total = f["total"]
    assert total["failed"] == 0 and total["still_in_flight"] == 0
    assert sum(total["outcomes"].values()) == total["calls"] >= f["calls"]
    for name, n in f["outcomes"].items():
        assert total["outcomes"][name] >= n
    # the votes the server counted are the votes the calls were told were accepted
    gained = f["results_votes_after"] - f["results_votes_before"]
    assert gained == total["outcomes"]["accepted"]
    assert f["results_match"]
    assert sum(r["total_votes"] for r in f["results"]) == f["results_votes_after"]


def test_python_api(server):
    before = results_total(server.address)
    f = voterbench.run(server.address, duration=1.5, warmup=0.5, connections=2, inflight=8,
                       seed=7, progress=False)
    check_figures(f, 2, 8)
    assert f["seed"] == 7 and f["affinity"] is True
    assert f["results_votes_before"] == before
    assert results_total(server.address) == f["results_votes_after"]
    assert "Results gained" in voterbench.format_summary(f)


def test_command_line_json(server, tmp_path):
    out = tmp_path / "voter.json"
    proc = subprocess.run(
        [sys.executable, "-m", "flowstate", "voter", "--servers", server.address,
         "--duration", "1.5", "--warmup", "0.5", "--connections", "1", "--inflight", "4",
         "--no-affinity", "--json", str(out)],
        capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "throughput" in proc.stdout and "Results gained" in proc.stdout
    f = json.loads(out.read_text())
    check_figures(f, 1, 4)
    assert f["affinity"] is False
    assert results_total(server.address) == f["results_votes_after"]


def test_unreachable_server_exits_2(monkeypatch, capsys):
    monkeypatch.setattr(voterbench, "CONNECT_SECONDS", 0.3)
    status = voterbench.main(["--servers", "127.0.0.1:1", "--duration", "1"])
    assert status == 2
    assert "unreachable" in capsys.readouterr().err


def test_latency_summary_nearest_rank():
    import numpy as np
    counts = np.zeros(100_000, dtype=np.int64)
    counts[100] = 98              # 100-101 us
    counts[5000] = 1              # 5 ms
    s = voterbench.latency_summary(counts, [0.25])      # one call past the buckets: 250 ms
    assert (s["p50_ms"], s["p99_ms"], s["p999_ms"], s["max_ms"]) == (0.101, 5.001, 250.0, 250.0)
    empty = voterbench.latency_summary(np.zeros(10, dtype=np.int64), [])
    assert empty["p50_ms"] is None and empty["max_ms"] is None


def test_open_loop_sends_at_the_rate(server):
    # --rate: calls go out on a schedule, not when answers come back. The
    # count is the schedule's (a tick that runs late sends what fell due
    # meanwhile), so it holds on a slow machine; the bounds are wide anyway.
    f = voterbench.run(server.address, duration=2.0, warmup=0.5, connections=2, inflight=64,
                       seed=11, progress=False, rate=400.0)
    check_figures(f, 2, 64)
    assert f["rate"] == 400.0 and f["latency_from"] == "due"
    assert 0.8 * 400 * 2.0 <= f["calls"] <= 1.2 * 400 * 2.0
    assert f["waiting_to_send_at_end"] == 0
    assert 0 <= f["pacer_lag_p99_ms"] <= f["pacer_lag_max_ms"]
    summary = voterbench.format_summary(f)
    assert "offered 400 calls/s" in summary and "from when each call was due" in summary


def test_open_loop_reports_falling_behind(server):
    # One call in flight cannot carry a million calls a second: the calls
    # that fell due and could not go out are reported, none is lost.
    f = voterbench.run(server.address, duration=1.0, warmup=0.2, connections=1, inflight=1,
                       seed=12, progress=False, rate=1_000_000.0)
    check_figures(f, 1, 1)
    assert f["waiting_to_send_at_end"] > 0
    assert "could not keep up" in voterbench.format_summary(f)


def test_pacer_schedule_and_limit():
    # The Pacer alone, on a real event loop: what falls due goes out, at
    # most ``limit`` at a time; answers let the waiting ones out in order.
    import asyncio

    async def scenario():
        sent = []
        pacer = voterbench.Pacer(2000.0, 3, lambda due: sent.append(due) or True)
        pacer.start()
        await asyncio.sleep(0.05)                 # ~100 calls due, 3 may be out
        assert len(sent) == 3 and pacer.outstanding == 3
        waiting = len(pacer.backlog)
        assert waiting >= 50
        first_waiting = pacer.backlog[0]
        pacer.answered()                          # one slot frees: the oldest goes
        assert len(sent) == 4 and sent[3] == first_waiting
        assert sent == sorted(sent)               # due times never go backwards
        pacer.stop()
        assert len(pacer.backlog) == 0
        await asyncio.sleep(0.01)
        assert len(sent) == 4                     # nothing after stop()
        assert pacer.lag_figures(0, len(pacer.lags))["pacer_lag_max_ms"] >= 0

    asyncio.run(scenario())


@pytest.mark.parametrize("text", ["0", "-5", "nan", "inf", "fast"])
def test_bad_rate_is_refused(text, capsys):
    with pytest.raises(SystemExit) as exit_info:
        voterbench.main(["--servers", "127.0.0.1:1", "--rate", text])
    assert exit_info.value.code == 2
    assert "--rate" in capsys.readouterr().err
