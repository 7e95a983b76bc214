"""The pipeline benchmark's own machinery: the sandbox served from its own process (as the
remote sources are) and the warm worker processes of its concurrent schedule."""

from __future__ import annotations

import datetime as dt
import json
import urllib.request
from pathlib import Path

import pytest


@pytest.fixture
def sandbox_process(tmp_path: Path):
    from bench.sandbox_process import SandboxProcess

    env = {"RETAILPULSE_DATA_DIR": str(tmp_path / "data")}
    sb = SandboxProcess("small", 42, tmp_path / "ga4", env=env).start()
    try:
        yield sb
    finally:
        sb.stop()


def test_sandbox_process_serves_the_world_and_moves_its_clock(sandbox_process, tmp_path):
    sb = sandbox_process
    env = sb.env()
    assert env["RETAILPULSE_STRIPE_API_BASE"].startswith("http://127.0.0.1:")
    assert env["RETAILPULSE_SALESFORCE_INSTANCE_URL"].startswith("https://127.0.0.1:")
    sb.wait_ga4()
    moved = sb.set_clock(dt.datetime(2024, 3, 1, tzinfo=dt.timezone.utc))
    assert moved["as_of"].startswith("2024-03-01T00:00:00")
    with urllib.request.urlopen(sb.http_url + "/_sandbox/clock", timeout=10) as resp:
        assert json.loads(resp.read())["as_of"] == moved["as_of"]
    files = sorted(p.name for p in (tmp_path / "ga4").rglob("events_*"))
    assert files and max(files) < "events_20240301"  # the export reaches "now", not beyond
    req = urllib.request.Request(env["RETAILPULSE_STRIPE_API_BASE"].rstrip("/") + "/v1/customers?limit=3",
                                 headers={"Authorization": f"Bearer {env['RETAILPULSE_STRIPE_API_KEY']}"})
    with urllib.request.urlopen(req, timeout=10) as resp:
        assert len(json.loads(resp.read())["data"]) == 3
    assert sb.peak_rss > 50 * 2**20  # the child's memory is sampled
    sb.stop()
    assert sb._proc.returncode is not None  # stopped, not left running


def test_sandbox_process_reports_a_failed_start(tmp_path, monkeypatch):
    """The port is taken: the CLI exits with its error, which the benchmark raises."""
    import socket

    import bench.sandbox_process as mod

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        s.listen()
        monkeypatch.setattr(mod, "_free_port_pair", lambda: s.getsockname()[1])
        sb = mod.SandboxProcess("small", 42, tmp_path / "ga4", env={"RETAILPULSE_DATA_DIR": str(tmp_path / "data")})
        with pytest.raises(RuntimeError, match="(?s)did not start.*Address already in use"):
            sb.start()


def test_sandbox_process_that_does_not_come_up_in_time_is_stopped(tmp_path):
    """Generating the world takes longer than the start timeout: an error, and no process left."""
    from bench.sandbox_process import SandboxProcess

    sb = SandboxProcess("small", 43, tmp_path / "ga4", env={"RETAILPULSE_DATA_DIR": str(tmp_path / "data")},
                        start_timeout=0.5)
    with pytest.raises(RuntimeError, match="did not start within 0.5 s"):
        sb.start()
    assert sb._proc.poll() is not None


def test_peak_memory_counts_the_chosen_child_processes(tmp_path):
    """Stage memory includes the loader's worker processes (matched by command line) and not
    other children, such as the benchmark's own sandbox process."""
    import subprocess
    import sys
    import time

    import psutil

    from bench._common import Peak

    hold = "import sys, time; b = bytearray(300 * 2**20); b[::4096] = b'x' * len(b[::4096]); time.sleep(30)"
    children = [subprocess.Popen([sys.executable, "-c", hold, marker]) for marker in ("ingestion.load_workers", "other")]
    try:
        deadline = time.monotonic() + 60
        while min(psutil.Process(c.pid).memory_info().rss for c in children) < 300 * 2**20:  # both hold 300 MB
            assert time.monotonic() < deadline, "the child processes did not allocate their memory"
            time.sleep(0.1)
        peaks = {}
        for which in (False, "ingestion.load_workers", True):
            with Peak(children=which) as mem:
                time.sleep(0.3)
            peaks[which] = mem.peak / 2**20
        assert 250 < peaks["ingestion.load_workers"] - peaks[False] < 400
        assert 550 < peaks[True] - peaks[False] < 750
    finally:
        for c in children:
            c.kill()
            c.wait()
