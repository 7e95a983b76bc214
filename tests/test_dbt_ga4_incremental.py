"""int_ga4__events' incremental path stages only the landed GA4 rows it needs (its window's export
days, and the whole history of the devices with session-less events in the window) instead of
reading the staging view, which deduplicates every landed event. Daily runs must still equal a
full refresh: on a small hand-built bronze table with session-less events across the window's
edge and midnight, re-landed copies of an event (the latest wins), a late event and a device
that only has old session-less events."""

from __future__ import annotations

import datetime as dt

import duckdb
import pandas as pd
import pytest

from retailpulse.settings import load_settings

UTC = dt.timezone.utc
DAY1 = dt.date(2025, 3, 1)


def _event(key: str, device: str, day: int, hour: float, session: int | None, *, interval_day: int | None = None,
           loaded: int = 0, title: str = "page") -> dict:
    at = dt.datetime.combine(DAY1 + dt.timedelta(days=day - 1), dt.time(0), tzinfo=UTC) + dt.timedelta(hours=hour)
    iv = DAY1 + dt.timedelta(days=(interval_day or day) - 1)
    iv_start = dt.datetime.combine(iv, dt.time(0), tzinfo=UTC)
    return {
        "event_key": key, "event_date": at.strftime("%Y%m%d"), "event_timestamp": at, "event_name": "page_view",
        "user_pseudo_id": device, "param__ga_session_id": session, "param__page_title": title,
        "param__source": "google", "param__medium": "organic", "geo__country": "DE", "platform": "WEB",
        "_interval_key": iv.isoformat(), "_interval_start": iv_start, "_interval_end": iv_start + dt.timedelta(days=1),
        "_loaded_at": iv_start + dt.timedelta(days=1, minutes=loaded), "_row_number": 1,
    }


def _days_1_to_7() -> list[dict]:
    rows = []
    for day in range(1, 8):  # device a: GA4 sessions every day
        rows += [_event(f"a{day}-1", "dev-a", day, 10, 1000 + day), _event(f"a{day}-2", "dev-a", day, 10.2, 1000 + day)]
    # device b: session-less events, one inactivity group across midnight (23:50 -> 00:10 next day)
    rows += [_event("b1-1", "dev-b", 1, 9, None), _event("b1-2", "dev-b", 1, 23 + 50 / 60, None),
             _event("b2-1", "dev-b", 2, 10 / 60, None), _event("b2-2", "dev-b", 2, 15, None),
             # and one from day 3 (before the next run's window, which starts on day 4) into day 4
             _event("b3-1", "dev-b", 3, 23 + 50 / 60, None), _event("b4-1", "dev-b", 4, 10 / 60, None)]
    # device c: session-less events on old days only (outside every later window)
    rows += [_event("c1-1", "dev-c", 1, 8, None), _event("c1-2", "dev-c", 1, 8.1, None)]
    # an event landed twice on day 7 (re-read export day): the later copy wins
    rows += [_event("a7-3", "dev-a", 7, 11, 1007, title="old"),
             _event("a7-3", "dev-a", 7, 11, 1007, interval_day=7, loaded=30, title="new")]
    return rows


def _days_8_to_10() -> list[dict]:
    rows = []
    for day in range(8, 11):
        rows += [_event(f"a{day}-1", "dev-a", day, 10, 1000 + day)]
    # device b comes back session-less: 23:55 on day 9 continues into day 10
    rows += [_event("b9-1", "dev-b", 9, 23 + 55 / 60, None), _event("b10-1", "dev-b", 10, 5 / 60, None)]
    # late events landed with day 10's batch: one of day 8, and a session-less one at 00:05 on day 4
    # (inside the window) whose inactivity group starts at 23:50 on day 3 (outside it); day 7's
    # event landed a third time, newer still
    rows += [_event("a8-late", "dev-a", 8, 12, 1008, interval_day=10),
             _event("b4-late", "dev-b", 4, 5 / 60, None, interval_day=10),
             _event("a7-3", "dev-a", 7, 11, 1007, interval_day=10, title="newest")]
    return rows


def _land(settings, rows: list[dict]) -> None:
    frame = pd.DataFrame(rows)  # noqa: F841 - read by DuckDB below
    con = duckdb.connect(str(settings.duckdb_path))
    try:
        con.execute("insert into bronze.ga4__events by name select * from frame")
    finally:
        con.close()


def _events(settings) -> pd.DataFrame:
    con = duckdb.connect(str(settings.duckdb_path), read_only=True)
    try:
        return con.execute("select * from silver.int_ga4__events order by event_key").df()
    finally:
        con.close()


def test_incremental_ga4_events_equal_a_full_refresh(tmp_path):
    from retailpulse.dbt_runner import run_dbt
    from retailpulse.pipeline import init_warehouse

    settings = load_settings(warehouse_path=tmp_path / "wh.duckdb", data_dir=tmp_path / "data")
    init_warehouse(settings)
    _land(settings, _days_1_to_7())
    run_dbt(settings, ["run", "--select", "stg_ga4__events", "int_ga4__events"])  # first run: full
    first = _events(settings)
    assert len(first) == 14 + 6 + 2 + 1
    _land(settings, _days_8_to_10())
    result = run_dbt(settings, ["run", "--select", "int_ga4__events"])  # incremental
    assert [n["status"] for n in result.nodes if n["name"] == "int_ga4__events"] == ["success"]
    daily = _events(settings)
    run_dbt(settings, ["run", "--full-refresh", "--select", "int_ga4__events"])
    full = _events(settings)

    # processed_at is the writing run's start: the only column where a daily run and a full refresh differ
    assert daily["processed_at"].nunique() == 2 and full["processed_at"].nunique() == 1
    daily, full = daily.drop(columns="processed_at"), full.drop(columns="processed_at")
    pd.testing.assert_frame_equal(daily, full)
    by_key = full.set_index("event_key")
    assert len(full) == len(first) + 3 + 2 + 2 and by_key.index.is_unique
    assert by_key.loc["a7-3", "page_title"] == "newest" and by_key.loc["a8-late", "session_id"] == by_key.loc["a8-1", "session_id"]
    # device b re-sessionised over its whole history: the morning of day 1, the group across the
    # midnight of days 1-2, the afternoon of day 2, the group from day 3 into day 4 (its late event
    # included: the window alone would start it on day 4) and the group spanning days 9-10
    b = full[full["user_pseudo_id"] == "dev-b"].set_index("event_key")
    assert b["is_session_id_inferred"].all()
    assert b.loc["b1-2", "session_id"] == b.loc["b2-1", "session_id"] != b.loc["b1-1", "session_id"]
    assert b.loc["b3-1", "session_id"] == b.loc["b4-late", "session_id"] == b.loc["b4-1", "session_id"]
    assert b.loc["b9-1", "session_id"] == b.loc["b10-1", "session_id"] != b.loc["b2-2", "session_id"]
    assert b["session_id"].nunique() == 5
    # device c (old days only) kept its inferred session from the first run
    c = full[full["user_pseudo_id"] == "dev-c"]
    assert c["session_id"].nunique() == 1 and set(c["session_id"]) == set(first.loc[first["user_pseudo_id"] == "dev-c", "session_id"])


def test_unique_event_key_is_checked_over_the_rows_the_last_run_wrote(tmp_path):
    """int_ga4__events' event_key test (unique_in_last_write) reads the rows of the last run only:
    on a daily run those of its window (and the re-sessionised devices), on a full refresh all."""
    from retailpulse.dbt_runner import DbtError, run_dbt
    from retailpulse.pipeline import init_warehouse

    settings = load_settings(warehouse_path=tmp_path / "wh.duckdb", data_dir=tmp_path / "data")
    init_warehouse(settings)
    _land(settings, _days_1_to_7())
    run_dbt(settings, ["run", "--select", "stg_ga4__events", "int_ga4__events"])
    _land(settings, _days_8_to_10())
    run_dbt(settings, ["run", "--select", "int_ga4__events"])
    events = _events(settings)
    last = events["processed_at"] == events["processed_at"].max()
    # the daily run rewrote its window (day 8 minus the 3-day lookback, on) and device b's history
    rewritten = set(events.loc[last, "event_key"])
    assert {"a8-late", "a7-3", "b1-1", "b9-1"} <= rewritten and not rewritten & {"a1-1", "c1-1"}
    test = ["test", "--select", "int_ga4__events,test_name:unique_in_last_write"]
    assert [n["status"] for n in run_dbt(settings, test).nodes if n["resource_type"] == "test"] == ["pass"]

    con = duckdb.connect(str(settings.duckdb_path))
    try:  # a copy of a row an earlier run wrote: outside what the test reads (delete+insert cannot make one)
        con.execute("insert into silver.int_ga4__events select * from silver.int_ga4__events where event_key = 'a1-1'")
    finally:
        con.close()
    assert [n["status"] for n in run_dbt(settings, test).nodes if n["resource_type"] == "test"] == ["pass"]
    con = duckdb.connect(str(settings.duckdb_path))
    try:  # a key the last run wrote twice
        con.execute("insert into silver.int_ga4__events select * from silver.int_ga4__events where event_key = 'a8-late'")
    finally:
        con.close()
    with pytest.raises(DbtError, match="unique_in_last_write"):
        run_dbt(settings, test)


def test_ga4_devices_incremental_equal_a_full_refresh(tmp_path):
    """int_identity__ga4_devices recomputes the devices with newly written events (and those whose
    login id they carry); the first run over a table an older version wrote recomputes all."""
    from retailpulse.dbt_runner import run_dbt
    from retailpulse.pipeline import init_warehouse

    settings = load_settings(warehouse_path=tmp_path / "wh.duckdb", data_dir=tmp_path / "data")
    init_warehouse(settings)
    _land(settings, _days_1_to_7())
    run_dbt(settings, ["run", "--select", "stg_ga4__events", "int_ga4__events"])
    con = duckdb.connect(str(settings.duckdb_path))
    try:  # as an older version wrote it: no high-water mark, stale rows
        con.execute("create table silver.int_identity__ga4_devices as select 'dev-a' as user_pseudo_id, "
                    "cast(null as timestamp) as first_seen_at, cast(null as timestamp) as last_seen_at, "
                    "cast(0 as bigint) as user_id_count, 'stale' as login_user_id, cast(null as timestamp) as user_id_first_seen_at")
    finally:
        con.close()
    devices = ["run", "--select", "int_identity__ga4_devices"]
    run_dbt(settings, devices)
    _land(settings, _days_8_to_10())
    run_dbt(settings, ["run", "--select", "int_ga4__events"])
    run_dbt(settings, devices)
    cols = "user_pseudo_id, first_seen_at, last_seen_at, user_id_count, login_user_id, user_id_first_seen_at"

    def read() -> pd.DataFrame:
        con = duckdb.connect(str(settings.duckdb_path), read_only=True)
        try:
            return con.execute(f"select {cols} from silver.int_identity__ga4_devices order by 1").df()
        finally:
            con.close()

    daily = read()
    run_dbt(settings, [*devices, "--full-refresh"])
    full = read()
    pd.testing.assert_frame_equal(daily, full)
    assert list(full["user_pseudo_id"]) == ["dev-a", "dev-b", "dev-c"]
    assert full.set_index("user_pseudo_id").loc["dev-a", "last_seen_at"].day == 10
