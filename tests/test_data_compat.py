"""Data folders written by earlier releases still recover, to the same
state. Each tests/data/<name>.tar.gz was written once by
tests/data/make_folder.py with the release named; its expected.json holds
the @StateHash and Results the server gave before it stopped."""

import json
import struct
import subprocess
import sys
import tarfile
from pathlib import Path

import pytest

from flowstate.client import Client
from flowstate.server.application import DEFAULT_APP
from flowstate.server.commandlog import FORMAT_VERSION, segment_paths

from server_harness import ServerProcess

DATA = Path(__file__).resolve().parent / "data"
FOLDERS = sorted(p.name[:-len(".tar.gz")] for p in DATA.glob("*.tar.gz"))


@pytest.fixture(params=FOLDERS)
def folder(request, tmp_path):
    with tarfile.open(DATA / f"{request.param}.tar.gz") as tar:
        tar.extractall(tmp_path, filter="data")
    path = tmp_path / request.param
    return path, json.loads((path / "expected.json").read_text())


def test_verify_reads_the_folder_to_the_same_state(folder):
    path, expected = folder
    out = subprocess.run([sys.executable, "-m", "flowstate", "verify", str(path),
                          "--app", str(DEFAULT_APP)], capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    assert out.stdout.split()[-1] == expected["state_hash"]["total"]


def segment_versions(data: Path) -> dict[str, list[int]]:
    """Each log folder's segments' format versions, oldest first."""
    return {owner.name: [struct.unpack_from("<I", p.read_bytes()[:12], 8)[0]
                         for p in segment_paths(owner)]
            for owner in sorted((data / "log").iterdir())}


def test_a_server_recovers_the_folder(folder, tmp_path):
    path, expected = folder
    before = segment_versions(path)
    server = ServerProcess(tmp_path, partitions=2, extra=["--data", str(path)])
    try:
        with Client(server.address) as client:
            assert client.call("@StateHash").result == expected["state_hash"]
            assert [list(r) for r in client.call("Results").result] == expected["results"]
            if "change_digests" in expected:          # (folders from format 2 on)
                assert [p["change_digest"] for p in client.call("@Statistics").result[
                    "partitions"]] == expected["change_digests"]
            assert client.call("Vote", 5085551234, 1, 2).result == 0      # and it goes on
            after_vote = client.call("@StateHash").result
    finally:
        server.stop()
        server.kill()
    # the older segments stay as they were; new records go to current-format ones
    after = segment_versions(path)
    for owner, versions in before.items():
        assert after[owner][:len(versions)] == versions
        assert after[owner][-1] == FORMAT_VERSION
    server = ServerProcess(tmp_path, partitions=2, extra=["--data", str(path)])
    try:
        with Client(server.address) as client:
            assert client.call("@StateHash").result == after_vote
            assert all(p["determinism_faults"] == 0
                       for p in client.call("@Statistics").result["partitions"])
    finally:
        server.stop()
        server.kill()
