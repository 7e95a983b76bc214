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


KILLED_RUN_OUTPUT = """benchmark: large world, seed 42 (no DAG run)
  world generation                 0.00 s   peak    145.3 MB
  5 warm worker processes (5 distinct)
ga4: no export file events_20231229 in /tmp/bench/large/ga4 (day is past the 3-day late-data horizon)
  extract google_ads               0.28 s   peak    285.8 MB (worker 15142)
  validate+load google_ads         1.40 s   peak    361.4 MB (worker 15142)
  extract salesforce             237.03 s   peak    312.6 MB (worker 15140)
  validate+load salesforce        95.18 s   peak   3657.0 MB (worker 15142)
  extract ga4                    513.64 s   peak   1056.7 MB (worker 15141)
  extract stripe                1023.75 s   peak    282.5 MB (worker 15143)
  validate+load ga4             1260.76 s   peak  11280.1 MB (worker 15137)
  validate+load stripe           116.17 s   peak   7604.2 MB (worker 15140)
\x1b[0m20:29:39  90 of 406 PASS not_null_int_marketing__ad_spend_daily_spend ....... [\x1b[32mPASS\x1b[0m in 0.08s]
"""


def test_resume_reads_the_killed_runs_stages_and_its_ingest_critical_chain():
    from bench.resume import ingest_critical_path, stages_from_log

    stages = stages_from_log(KILLED_RUN_OUTPUT)
    assert [s["stage"] for s in stages] == [
        "world generation", "extract google_ads", "validate+load google_ads", "extract salesforce",
        "validate+load salesforce", "extract ga4", "extract stripe", "validate+load ga4", "validate+load stripe"]
    assert stages[-2] == {"stage": "validate+load ga4", "seconds": 1260.76, "peak_rss_mb": 11280.1, "worker_pid": 15137}
    # loads take the one warehouse slot in turn: stripe's extract ended at 1023.75 s, but its load
    # waited for GA4's (513.64 + 1260.76), so the chain is extract ga4 -> load ga4 -> load stripe
    seconds, chain = ingest_critical_path(stages)
    assert seconds == round(513.64 + 1260.76 + 116.17, 2)
    assert chain == ["extract ga4", "validate+load ga4", "validate+load stripe"]
    # without the contention, the longest extract + its own load is the chain
    quick = [s for s in stages if s["stage"] != "validate+load ga4"]
    seconds, chain = ingest_critical_path(quick)
    assert (seconds, chain) == (round(1023.75 + 116.17, 2), ["extract stripe", "validate+load stripe"])


def test_stage_task_hands_the_tasks_memory_back_before_the_next_task(monkeypatch):
    """A warm bench worker stands in for a task process that would exit: after each stage it
    releases what the stage freed, so the next stage's peak does not start from its leftovers."""
    from bench import stage_task
    from retailpulse import memory, pipeline

    calls: list[str] = []
    monkeypatch.setattr(pipeline, "stage_extract", lambda settings, source, interval: calls.append(f"extract {source}"))
    monkeypatch.setattr(memory, "release_memory", lambda: calls.append("release") or {})
    out = stage_task.run_stage("extract", "stripe", "2024-01-01", "2024-01-02")
    assert calls == ["extract stripe", "release"]
    assert out["pid"] > 0 and out["seconds"] >= 0 and out["peak_rss_mb"] > 0


def test_world_generation_runs_in_its_own_process_and_reports_its_peak(tmp_path):
    import psutil

    from bench.run import generate_world_apart

    stages: list[dict] = []
    before = psutil.Process().memory_info().rss
    path = generate_world_apart(stages, tmp_path, "small", 7)
    assert path == tmp_path / "small-7" and (path / "world.json").is_file()
    (stage,) = stages
    assert stage["stage"] == "world generation" and stage["process"] == "own process"
    # the child's peak (pandas, the generator) is measured, and it did not land in this process
    assert stage["peak_rss_mb"] > 100
    assert psutil.Process().memory_info().rss - before < 50 * 2**20
    with pytest.raises(RuntimeError, match="generating the huge world failed"):
        generate_world_apart([], tmp_path, "huge", 7)


def test_the_incremental_day_repeats_from_the_same_state_and_reports_the_median(tmp_path):
    """bench.run --incremental-repeats: every run of the day starts from the state before the
    first (what the previous run wrote is put back), the median run is reported, and the copy of
    the state is removed afterwards."""
    from bench.run import repeated_incremental_day

    for name in ("data", "warehouse"):
        (tmp_path / name).mkdir()
        (tmp_path / name / "state.txt").write_text("before")
    (tmp_path / "warehouse" / "serving").mkdir()
    (tmp_path / "warehouse" / "parquet").symlink_to("serving", target_is_directory=True)
    seen: list[tuple[str, str, bool]] = []
    seconds = iter([30.0, 10.0, 20.0])

    def day():
        seen.append(((tmp_path / "data" / "state.txt").read_text(), (tmp_path / "warehouse" / "state.txt").read_text(),
                     (tmp_path / "warehouse" / "parquet").is_symlink()))
        for name in ("data", "warehouse"):
            (tmp_path / name / "state.txt").write_text(f"after run {len(seen)}")
        (tmp_path / "data" / f"new-{len(seen)}").write_text("x")
        s = next(seconds)
        return [{"stage": "incr dbt build", "seconds": s}], s

    stages, median, runs = repeated_incremental_day(tmp_path, 3, day)
    assert seen == [("before", "before", True)] * 3
    assert [r["seconds"] for r in runs] == [30.0, 10.0, 20.0]
    assert median == 20.0 and stages == [{"stage": "incr dbt build", "seconds": 20.0}]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["data", "warehouse"]
    assert (tmp_path / "data" / "state.txt").read_text() == "after run 3" and not (tmp_path / "data" / "new-1").exists()
    # one run: no copy of the state at all
    stages, median, runs = repeated_incremental_day(tmp_path, 1, lambda: ([], 5.0))
    assert median == 5.0 and len(runs) == 1


def test_publish_delta_bench_compares_both_modes_on_the_same_day(monkeypatch):
    """bench.publish_delta at a tiny scale: both modes publish the same day's gold from the same
    previous copy; only the row-by-row mode replaces rows, exactly the day's changes."""
    from bench import publish_delta
    from retailpulse import publish

    monkeypatch.setattr(publish, "DELTA_MIN_ROWS", 1000)
    run = publish_delta.measure(scale=0.01, repeats=1)
    assert set(run["seconds"]) == {"full_copy", "row_delta"} and all(len(v) == 1 for v in run["seconds"].values())
    assert publish.DELTA_MIN_ROWS == 1000  # put back after the full-copy mode
    deltas = run["row_deltas"]
    attribution = run["rows_before_the_day"]["fct_attribution"]
    assert attribution == 29_890 and set(deltas) == {"fct_attribution", "fct_sessions", "customer_identity_map", "fct_orders"}
    added = int(attribution * publish_delta.DAY["fct_attribution"][1])
    # every updated row goes out and comes back changed; the added rows come in
    assert deltas["fct_attribution"]["serving_rows_inserted"] - deltas["fct_attribution"]["serving_rows_deleted"] == added
    assert 0.005 * attribution < deltas["fct_attribution"]["serving_rows_deleted"] < 0.02 * attribution
