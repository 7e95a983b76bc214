"""GA4 export-file connector: per-day batches with the 3-day re-read against the sandbox's
export files (late events), missing days, idempotent re-runs; Parquet / gzip / shard reading."""

from __future__ import annotations

import gzip
import json
import logging

import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from ingestion.connectors.ga4 import GA4Connector, prepare_event
from ingestion.interval import Interval
from tests.connectors_support import bronze, clock, day, run, sandbox_settings, stable

T1 = "2025-03-10T00:05:00Z"
T2 = "2025-03-11T00:05:00Z"


def _world_day_counts(world, as_of: str) -> pd.Series:
    ev = world.ga4_events.select(["event_date", "_visible_at", "value", "transaction_id"]).to_pandas()
    t = pd.Timestamp(as_of)
    return ev[ev["_visible_at"] <= t].groupby("event_date").size()


def test_daily_runs_reread_late_days_and_match_the_world(sandbox_server, settings_factory):
    world = sandbox_server.world
    s = sandbox_settings(settings_factory, sandbox_server)
    with clock(sandbox_server, T1):
        manifests, reports = run(s, "ga4", day("2025-03-09"))
        assert [m.interval_key[:8] for m in manifests] == ["20250306", "20250307", "20250308", "20250309"]
        first = bronze(s, "ga4__events")
        expected = _world_day_counts(world, T1)
        got = first.groupby("event_date").size()
        for d in ("20250306", "20250307", "20250308", "20250309"):
            assert got[d] == expected[d], d
        assert first["event_key"].is_unique
        assert all(r.rejected == 0 for r in reports)
    with clock(sandbox_server, T2):
        run(s, "ga4", day("2025-03-10"))
        expected2 = _world_day_counts(world, T2)
        second = bronze(s, "ga4__events")
        got2 = second.groupby("event_date").size()
        for d in ("20250306", "20250307", "20250308", "20250309", "20250310"):
            assert got2[d] == expected2[d], d
        # late events: a re-read day grew, and its batch replaced the earlier one (no duplicates)
        assert any(expected2[d] > expected[d] for d in ("20250307", "20250308", "20250309"))
        assert second["event_key"].is_unique
        # typed columns: timestamp from µs, unnested params, revenue
        ev = world.ga4_events.to_pandas()
        ev = ev[(ev["_visible_at"] <= pd.Timestamp(T2)) & (ev["event_date"] == "20250308")]
        b = second[second["event_date"] == "20250308"]
        assert b["ecommerce__purchase_revenue"].sum() == pytest.approx(ev["value"].sum())
        assert (b["event_name"] == "purchase").sum() == (ev["event_name"] == "purchase").sum()
        assert set(b["param__ga_session_id"].dropna().astype("int64")) == set(ev["ga_session_id"].dropna())
        assert str(b["event_timestamp"].dtype).startswith("datetime64")
        assert b["event_timestamp"].min() >= pd.Timestamp("2025-03-08", tz="UTC")
        before = stable(bronze(s, "ga4__events", day("2025-03-09")))
        run(s, "ga4", day("2025-03-10"))  # re-run: same batches, same bronze
        pd.testing.assert_frame_equal(stable(bronze(s, "ga4__events", day("2025-03-09"))), before)


def test_missing_days_are_empty_batches_with_a_warning(sandbox_server, settings_factory, caplog):
    s = sandbox_settings(settings_factory, sandbox_server)
    caplog.set_level(logging.INFO)
    manifests, reports = run(s, "ga4", day("2024-01-01"))  # the export starts on 2024-01-01
    assert [m.record_count for m in manifests][:3] == [0, 0, 0] and manifests[3].record_count > 0
    assert [r.status for r in reports] == ["loaded"] * 4
    assert "no export file events_20231229" in caplog.text


def _event(i: int, **kw) -> dict:
    rec = {"event_date": "20250102", "event_timestamp": str(1735776000000000 + i), "event_name": "page_view",
           "event_params": [{"key": "ga_session_id", "value": {"int_value": "1735776000"}},
                            {"key": "page_location", "value": {"string_value": f"https://x.example/{i}"}},
                            {"key": "value", "value": {"double_value": 1.5}}],
           "user_pseudo_id": f"u{i}", "user_id": None, "platform": "WEB",
           "device": {"category": "mobile", "web_info": None}, "ecommerce": None, "items": []}
    rec.update(kw)
    return rec


def test_reads_parquet_gzip_and_shards_and_unnests_params(tmp_path, settings_factory):
    rows = [_event(i) for i in range(5)]
    pq.write_table(pa.Table.from_pylist(rows[:2]), tmp_path / "events_20250102_000000000000.parquet")
    (tmp_path / "events_20250102_000000000001.json.gz").write_bytes(
        gzip.compress("\n".join(json.dumps(r) for r in rows[2:4]).encode() + b"\n{not json\n"))
    (tmp_path / "events_20250102_000000000002.json").write_text(json.dumps(rows[4]) + "\n")
    (tmp_path / "events_intraday_20250102.json").write_text(json.dumps(rows[0]) + "\n")
    s = settings_factory(ga4_export_url=f"file://{tmp_path}")
    c = GA4Connector(s)
    got = list(c.extract("events", day("2025-01-02")))
    assert len(got) == 6 and got[4] == "{not json"          # the broken line is landed as is
    prepared = prepare_event(got[0])
    assert prepared["param__ga_session_id"] == "1735776000" and prepared["param__value"] == 1.5
    assert "event_params" not in prepared and "device__web_info" not in json.dumps(list(prepared))
    # identical events share a key (duplicates collapse); distinct events at one microsecond do not
    assert prepare_event(rows[1])["event_key"] == prepare_event(dict(rows[1]))["event_key"]
    twin = _event(1, event_params=rows[1]["event_params"][:1])
    assert prepare_event(twin)["event_key"] != prepare_event(rows[1])["event_key"]
    assert c.batches("events", Interval.for_dates(pd.Timestamp("2025-01-10").date(), pd.Timestamp("2025-01-11").date()))[0] \
        == day("2025-01-07")
    assert not GA4Connector.is_configured(settings_factory())


# --- the vectorised (pyarrow) path -------------------------------------------------------------
def _export_event(i: int, **kw) -> dict:
    """An event as the BigQuery export writes it (ints as JSON numbers, all value slots)."""
    def v(s=None, n=None, d=None):
        return {"string_value": s, "int_value": n, "float_value": None, "double_value": d}
    rec = {"event_date": "20250102", "event_timestamp": 1735776000000000 + i, "event_name": "purchase",
           "event_params": [{"key": "ga_session_id", "value": v(n=1735776000 + i % 3)},
                            {"key": "page_location", "value": v(s=f"https://x.example/{i}")},
                            {"key": "value", "value": v(d=10.5 + i)},
                            {"key": "ga_session_id", "value": v(n=99)},      # a repeated key: first wins
                            {"key": "coupon_code", "value": v(s="SPRING")}],  # undeclared: drift text
           "user_pseudo_id": f"u{i}", "user_id": None, "platform": "WEB",
           "device": {"category": "mobile", "web_info": None}, "ecommerce": None,
           "items": [{"item_id": f"SKU-{i}", "price": 10.5, "quantity": 1}] if i % 2 else []}
    rec.update(kw)
    return rec


def _land_lines(settings, lines: list[bytes]):
    from ingestion.landing import LandingZone

    zone = LandingZone(settings.landing_path)
    iv = day("2025-01-02")
    zone.write_batch_ndjson("ga4", "events", iv, [(b"\n".join(lines) + b"\n", None)])
    return zone, iv


def test_arrow_typing_matches_the_record_path_and_unnests_params():
    from ingestion.connectors.ga4 import SPECS
    from ingestion.flatten import flatten_record, flat_records_to_frame, lines_to_frame

    spec = SPECS["events"]
    recs = [_export_event(i) for i in range(6)] + [_export_event(6, new_top_field={"a": 1, "b": "x"})]
    lines = [json.dumps(r, separators=(",", ":")).encode() for r in recs]
    fast, failures, drift = lines_to_frame(lines, spec)
    slow, _, slow_drift = flat_records_to_frame([flatten_record(spec.prepare(r, ln)) for r, ln in zip(recs, lines)], spec)
    # same columns, values and dtypes (drift columns may come in another order; the record path
    # renders an int drift value as "1.0" when other records lack the field, Arrow as "1")
    same = sorted(c for c in fast.columns if c != "new_top_field__a")
    assert sorted(fast.columns) == sorted(slow.columns)
    pd.testing.assert_frame_equal(fast[same], slow[same])
    assert fast.attrs == slow.attrs and sorted(drift) == sorted(slow_drift)
    assert set(drift) == {"param__coupon_code", "new_top_field__a", "new_top_field__b"}
    assert failures.empty
    assert list(fast["param__ga_session_id"]) == [1735776000, 1735776001, 1735776002] * 2 + [1735776000]
    assert str(fast["param__ga_session_id"].dtype) == "Int64" and fast["param__value"].iloc[2] == 12.5
    assert fast["param__coupon_code"].iloc[0] == "SPRING" and fast["new_top_field__a"].iloc[6] == "1"
    assert fast["items"].iloc[0] == "[]" and json.loads(fast["items"].iloc[1])[0]["item_id"] == "SKU-1"
    assert fast["event_key"].is_unique and fast["event_key"].str.len().eq(32).all()


def test_arrow_loader_rejects_malformed_and_duplicate_lines(settings):
    from ingestion.bronze import load_batch
    from ingestion.connectors.ga4 import SPECS
    from retailpulse.warehouse import get_warehouse

    good = [json.dumps(_export_event(i), separators=(",", ":")).encode() for i in range(8)]
    lines = good[:4] + [b'{"event_date":"20250102","event_name":'] + good[4:] + [good[2]]
    zone, iv = _land_lines(settings, lines)
    wh = get_warehouse(settings)
    report = load_batch(wh, zone, SPECS["events"], iv)
    assert (report.extracted, report.loaded, report.rejected, report.duplicates) == (10, 8, 2, 1)
    assert "param__coupon_code" in report.drift_columns
    rej = dict(wh.query("select row_number, rule from bronze.rejected_records where source = 'ga4'"))
    assert rej == {4: "malformed_json", 9: "duplicate_record"}
    rows = wh.query_df("select event_key, param__ga_session_id, _row_number from bronze.ga4__events order by _row_number")
    assert list(rows["_row_number"]) == [0, 1, 2, 3, 5, 6, 7, 8]
    assert rows["event_key"].is_unique


def test_landed_export_lines_are_copied_byte_for_byte(tmp_path, settings_factory):
    from ingestion.landing import LandingZone

    lines = [json.dumps(_export_event(i), separators=(",", ":")).encode() for i in range(3)]
    member = gzip.compress(b"\n".join(lines) + b"\n")
    (tmp_path / "events_20250102.json.gz").write_bytes(member)
    s = settings_factory(ga4_export_url=str(tmp_path))
    zone = LandingZone(s.landing_path)
    m = GA4Connector(s).land(zone, "events", day("2025-01-02"), day("2025-01-02"))
    assert m.record_count == 3
    assert (zone.batch_dir("ga4", "events", day("2025-01-02")) / "part-00000.ndjson.gz").read_bytes() == member
    assert zone.read_lines("ga4", "events", day("2025-01-02")) == lines


def test_is_clean_ndjson_matches_the_byte_scans_it_replaces():
    from ingestion.connectors.ga4 import is_clean_ndjson

    def reference(text: bytes) -> bool:
        return (text.endswith(b"\n") and not text.startswith((b"\n", b" ", b"\t")) and b"\r" not in text
                and not any(bad in text for bad in (b"\n\n", b" \n", b"\n ", b"\t\n", b"\n\t")))

    cases = [b"\n", b"a\n", b'{"a":1}\n{"b":2}\n', b"a\n\nb\n", b"a \nb\n", b"a\n b\n", b"a\t\nb\n",
             b"a\n\tb\n", b"a\r\nb\n", b" a\n", b"\ta\n", b"a", b"a\nb", b"\n\n", b"ab\n\n", b"a\nb\n ",
             "é\n€\n".encode(), b"a b\tc\n"]
    for text in cases:
        assert is_clean_ndjson(text) == reference(text), text
    assert is_clean_ndjson(b'{"a":1}\n{"b":2}\n') and not is_clean_ndjson(b'{"a":1}\n\n{"b":2}\n')


def test_vectorised_event_keys_follow_the_record_rule():
    """event_keys (the batch's keys at once) gives prepare_event's key for every row: with
    and without batch_event_index, non-ASCII text, empty parts, in row order over many rows."""
    import random

    from ingestion.connectors.ga4 import _key, event_keys, line_digest

    rng = random.Random(7)
    n = 120_000
    rows = []
    for i in range(n):
        parts = (rng.choice([None, f"u{i % 977}", "é-ü"]), str(1_700_000_000_000_000 + i), rng.choice(["page_view", "purchase", None]),
                 rng.choice([None, str(i % 50)]))
        position = None if i % 3 == 0 else str(i)
        line = json.dumps({"i": i, "t": "ñ" * (i % 4)}, ensure_ascii=False).encode()
        rows.append((parts, position, line))
    head = pa.array(["|".join("" if p is None else p for p in parts) + "|" for parts, _, _ in rows])
    position = pa.array([p for _, p, _ in rows], type=pa.string())
    lines = [ln for _, _, ln in rows]
    expected = [_key((*parts, line_digest(ln) if p is None else p)) for parts, p, ln in rows]
    assert event_keys(head, position, lines).to_pylist() == expected
    # every position set: the lines are not read
    all_set = pa.array([str(i) for i in range(n)])
    assert event_keys(head, all_set, []).to_pylist() == [_key((*parts, str(i))) for i, (parts, _, _) in enumerate(rows)]
