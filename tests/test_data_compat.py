"""Data folders written by earlier releases still recover, to the same
state. Each tests/data/<name>.tar.gz was written once by
tests/data/make_folder.py with the release named; its expected.json holds
the @StateHash and Results the server gave before it stopped."""

import json
import subprocess
import sys
import tarfile
from pathlib import Path

import pytest

from flowstate.client import Client
from flowstate.server.application import DEFAULT_APP

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


def test_a_server_recovers_the_folder(folder, tmp_path):
    path, expected = folder
    server = ServerProcess(tmp_path, partitions=2, extra=["--data", str(path)])
    try:
        with Client(server.address) as client:
            assert client.call("@StateHash").result == expected["state_hash"]
            assert [list(r) for r in client.call("Results").result] == expected["results"]
            assert client.call("Vote", 5085551234, 1, 2).result == 0      # and it goes on
    finally:
        server.stop()
        server.kill()
