"""Landing zone, flattening, GX validation and the bronze loader, on hand-made batches."""

from __future__ import annotations

import datetime as dt
import json

import pytest

from ingestion.bronze import BatchRefused, load_batch
from ingestion.connectors.stripe import SPECS
from ingestion.flatten import flatten_record, records_to_frame
from ingestion.interval import Interval
from ingestion.landing import LandingZone
from retailpulse.warehouse import get_warehouse

DAY = Interval.for_dates(dt.date(2025, 3, 1), dt.date(2025, 3, 1))


def charge(i: int, **kw):
    rec = {
        "id": f"ch_{i:05d}", "object": "charge", "amount": 1000 + i, "amount_captured": 1000 + i,
        "amount_refunded": 0, "refunded": False, "currency": "usd", "customer": f"cus_{i % 7}",
        "created": 1740787200 + i, "status": "succeeded", "paid": True, "failure_code": None,
        "description": None, "receipt_email": f"p{i}@example.com", "metadata": {"order_id": f"ord_{i}"},
        "livemode": False,
    }
    rec.update(kw)
    return rec


def test_interval_keys_roundtrip():
    assert Interval.from_key(DAY.key) == DAY
    assert DAY.days() == [dt.date(2025, 3, 1)]
    with pytest.raises(ValueError):
        Interval(DAY.end, DAY.start)


def test_flatten_nests_with_double_underscore():
    flat = flatten_record({"a": 1, "metadata": {"order_id": "o1", "x": {"y": 2}}, "items": [1, 2], "empty": {}})
    assert flat == {"a": 1, "metadata__order_id": "o1", "metadata__x__y": 2, "items": "[1,2]", "empty": None}


def test_records_to_frame_types_and_reports_cast_failures():
    frame, failures, drift = records_to_frame(
        [charge(1), charge(2, amount="abc"), charge(3, new_field="surprise")], SPECS["charges"]
    )
    assert str(frame["amount"].dtype) == "Int64"
    assert frame["created"].iloc[0].year == 2025
    assert failures.to_dict("records") == [{"row": 1, "field": "amount"}]
    assert drift == ["new_field"]


def test_landing_is_atomic_and_replaces_interval(tmp_path):
    zone = LandingZone(tmp_path)
    m1 = zone.write_batch("stripe", "charges", DAY, [charge(1), charge(2)])
    assert m1.record_count == 2
    m2 = zone.write_batch("stripe", "charges", DAY, [charge(3)])
    assert [r["id"] for r in zone.iter_records("stripe", "charges", DAY)] == ["ch_00003"]
    assert zone.read_manifest("stripe", "charges", DAY).batch_id == m2.batch_id

    def exploding():
        yield charge(4)
        raise RuntimeError("network died")

    with pytest.raises(RuntimeError):
        zone.write_batch("stripe", "charges", DAY, exploding())
    # the previous batch is intact and no temp dirs are left behind
    assert [r["id"] for r in zone.iter_records("stripe", "charges", DAY)] == ["ch_00003"]
    assert [p.name for p in (tmp_path / "stripe" / "charges").iterdir()] == [DAY.key]


def test_loader_rejects_bad_rows_with_reasons_and_reconciles(settings):
    zone = LandingZone(settings.landing_path)
    records = [charge(i) for i in range(40)]
    records.append(dict(records[3]))                      # exact duplicate
    records.append(charge(130, amount="abc"))              # retyped field
    records.append(charge(131, id=None))                   # key missing
    records.append(charge(132, currency="dollars"))        # bad currency format
    records.append(charge(133, status="weird"))            # not an accepted value
    records.append(charge(134, amount=-5))                 # out of range
    zone.write_batch("stripe", "charges", DAY, records)
    wh = get_warehouse(settings)
    wh.ensure_schemas()
    report = load_batch(wh, zone, SPECS["charges"], DAY)
    assert (report.extracted, report.loaded, report.rejected, report.duplicates) == (46, 40, 6, 1)
    assert report.loaded + report.rejected == report.extracted
    rules = dict(wh.query("select json_extract_string(record, '$.id'), rule from bronze.rejected_records order by 1"))
    assert rules["ch_00130"] == "type:amount"
    assert "expect_column_values_to_match_regex(currency)" in rules["ch_00132"]
    assert "expect_column_values_to_be_in_set(status)" in rules["ch_00133"]
    assert "expect_column_values_to_be_between(amount)" in rules["ch_00134"]
    assert rules["ch_00003"] == "duplicate_record"
    assert sum(1 for r in wh.query("select rule from bronze.rejected_records") if "not_be_null(id)" in r[0]) == 1
    lineage = wh.query("select distinct _source, _batch_id is not null, _extracted_at is not null, "
                       "_loaded_at is not null from bronze.stripe__charges")
    assert lineage == [("stripe", True, True, True)]
    total = wh.scalar("select sum(amount) from bronze.stripe__charges")
    assert total == sum(1000 + i for i in range(40))
    # loading the same interval again replaces it: same bronze, same rejects
    load_batch(wh, zone, SPECS["charges"], DAY)
    assert wh.row_count("bronze", "stripe__charges") == 40
    assert wh.row_count("bronze", "rejected_records") == 6
    audit = wh.query("select extracted, loaded, rejected, status from ops.load_audit")
    assert audit == [(46, 40, 6, "loaded")]


def test_critical_failure_refuses_the_batch_and_names_the_expectation(settings):
    zone = LandingZone(settings.landing_path)
    broken = [{k: v for k, v in charge(i).items() if k != "currency"} for i in range(5)]
    zone.write_batch("stripe", "charges", DAY, broken)
    wh = get_warehouse(settings)
    wh.ensure_schemas()
    with pytest.raises(BatchRefused, match=r"expect_column_to_exist\(currency\)"):
        load_batch(wh, zone, SPECS["charges"], DAY)
    assert not wh.table_exists("bronze", "stripe__charges")
    status = wh.query("select status, critical_failures from ops.load_audit")
    assert status[0][0] == "refused" and "currency" in json.loads(status[0][1])[0]
    validation = zone.read_sidecar("stripe", "charges", DAY, "validation.json")
    assert validation["success"] is False


def test_too_many_rejects_refuse_the_batch(settings):
    zone = LandingZone(settings.landing_path)
    zone.write_batch("stripe", "charges", DAY, [charge(i, amount="bad") for i in range(10)] + [charge(99)])
    wh = get_warehouse(settings)
    wh.ensure_schemas()
    with pytest.raises(BatchRefused, match="rejected_fraction"):
        load_batch(wh, zone, SPECS["charges"], DAY)


def test_many_batches_validate_in_one_pass_and_map_rejects_back(settings):
    from ingestion.bronze import load_batches

    zone = LandingZone(settings.landing_path)
    days = [Interval.for_dates(dt.date(2025, 3, d), dt.date(2025, 3, d)) for d in (1, 2, 3)]
    # the same charge id may appear in two batches (a later state); within a batch ids are unique
    zone.write_batch("stripe", "charges", days[0], [charge(i) for i in range(10)])
    zone.write_batch("stripe", "charges", days[1], [charge(i) for i in range(5, 15)] + [charge(200, currency="x")])
    zone.write_batch("stripe", "charges", days[2], [{k: v for k, v in charge(i).items() if k != "status"} for i in range(3)])
    wh = get_warehouse(settings)
    wh.ensure_schemas()
    with pytest.raises(BatchRefused, match=r"1 batch\(es\) not loaded: .*expect_column_to_exist\(status\)"):
        load_batches(wh, zone, SPECS["charges"], days)
    counts = dict(wh.query("select _interval_key, count(*) from bronze.stripe__charges group by 1"))
    assert counts == {days[0].key: 10, days[1].key: 10}
    rejected = wh.query("select interval_key, row_number, rule from bronze.rejected_records")
    assert rejected == [(days[1].key, 10, "expect_column_values_to_match_regex(currency)")]
    audit = dict(wh.query("select interval_key, status from ops.load_audit"))
    assert audit == {days[0].key: "loaded", days[1].key: "loaded", days[2].key: "refused"}


def test_pandas_row_checks_agree_with_great_expectations():
    """Above the GX sample size the row-level rules run in pandas: same rows, same labels."""
    from ingestion.connectors.stripe import SPECS
    from ingestion.flatten import records_to_frame
    from ingestion.validation import validate_frame

    spec = SPECS["charges"]
    recs = [charge(i) for i in range(60)]
    recs[3]["currency"] = "dollars"
    recs[7]["id"] = None
    recs[11]["amount"] = -5
    recs[12]["id"] = recs[13]["id"]
    frame, _, _ = records_to_frame(recs, spec)
    present = set(frame.attrs["present_columns"])
    full = validate_frame(spec, frame, present, sample_rows=1000)     # GX on every row
    sampled = validate_frame(spec, frame, present, sample_rows=10)    # pandas rules + GX sample
    assert full.row_rejects and sorted(full.row_rejects) == sorted(sampled.row_rejects)
    for row, rules in full.row_rejects.items():
        assert sorted(rules) == sorted(sampled.row_rejects[row])


def test_intervals_from_airflow_pendulum_datetimes_are_plain_utc(settings):
    """Airflow hands tasks pendulum DateTimes; pendulum arithmetic with a stdlib tzinfo yields
    naive values, which broke the Salesforce window of a scheduled (data-interval) run."""
    import datetime as dt

    import pendulum

    from ingestion.connectors.salesforce import EPOCH
    from ingestion.interval import Interval
    from retailpulse.pipeline import resolve_interval

    interval = resolve_interval(pendulum.datetime(2025, 12, 29, tz="UTC"), pendulum.datetime(2025, 12, 30, tz="UTC"))
    assert type(interval.start) is dt.datetime and type(interval.end) is dt.datetime
    assert interval == Interval.for_dates(dt.date(2025, 12, 29), dt.date(2025, 12, 29))
    watermark = min(interval.start, dt.datetime(2025, 12, 29, 6, tzinfo=dt.timezone.utc))
    assert max(EPOCH, watermark - dt.timedelta(minutes=60)) == dt.datetime(2025, 12, 28, 23, tzinfo=dt.timezone.utc)


@pytest.fixture
def prepare_calls(monkeypatch):
    """Groups prepared in this process (number of batches of each): a load worker imports its
    own ingestion.bronze, so groups it prepares are not counted."""
    import functools

    import ingestion.bronze as bronze

    calls: list[int] = []
    real = bronze.prepare_batches

    @functools.wraps(real)
    def counted(*args, **kwargs):
        calls.append(len(args[2]))
        return real(*args, **kwargs)

    monkeypatch.setattr(bronze, "prepare_batches", counted)
    return calls


def _landed_days(settings, n: int):
    """``n`` landed daily batches of ten charges each, and a warehouse with its schemas."""
    zone = LandingZone(settings.landing_path)
    days = [Interval.for_dates(dt.date(2025, 3, d), dt.date(2025, 3, d)) for d in range(1, n + 1)]
    for k, day in enumerate(days):
        zone.write_batch("stripe", "charges", day, [charge(100 * k + i) for i in range(10)])
    wh = get_warehouse(settings)
    wh.ensure_schemas()
    return zone, days, wh


def _loaded_state(wh):
    """bronze, rejects and audit of a load, without the load's own timestamps."""
    return (
        wh.query("select * exclude (_loaded_at) from bronze.stripe__charges order by _interval_key, _row_number"),
        wh.query("select * exclude (rejected_at) from bronze.rejected_records order by interval_key, row_number"),
        wh.query("select * exclude (loaded_at) from ops.load_audit order by interval_key"),
    )


def test_worker_processes_prepare_a_big_load_as_the_loader_would(settings_factory, tmp_path, prepare_calls):
    """Groups prepared by worker processes load exactly what the loader's own process loads:
    same bronze rows, rejects (type casts, duplicates, GX row rules), audit and refusal."""
    import shutil

    import ingestion.bronze as bronze

    days = [Interval.for_dates(dt.date(2025, 3, d), dt.date(2025, 3, d)) for d in range(1, 8)]
    batches = {}
    for k, day in enumerate(days):
        recs = [charge(100 * k + i) for i in range(20)]
        recs[3] = charge(100 * k + 3, amount="abc")            # type:amount
        recs[5] = charge(100 * k + 5, currency="dollars")     # GX regex rule
        recs.append(dict(recs[0]))                            # exact duplicate line
        batches[day] = recs
    batches[days[4]] = [{k: v for k, v in charge(400 + i).items() if k != "status"} for i in range(4)]  # refused
    states = {}
    for workers in (1, 2):
        settings = settings_factory(data_dir=tmp_path / f"data{workers}",
                                    warehouse_path=tmp_path / f"w{workers}" / "retailpulse.duckdb")
        zone = LandingZone(settings.landing_path)
        if workers == 1:
            for day, recs in batches.items():
                zone.write_batch("stripe", "charges", day, recs)
            landed = settings.landing_path
        else:  # the same landed batches (batch ids, extraction times)
            shutil.copytree(landed, settings.landing_path)
        wh = get_warehouse(settings)
        wh.ensure_schemas()
        prepare_calls.clear()
        with pytest.raises(BatchRefused, match=r"1 batch\(es\) not loaded: .*expect_column_to_exist\(status\)"):
            bronze.load_batches(wh, zone, SPECS["charges"], days, group_rows=21, workers=workers)
        # seven groups of one batch: all prepared here with one worker, none with two
        assert prepare_calls == ([1] * 7 if workers == 1 else [])
        states[workers] = _loaded_state(wh)
    assert states[2] == states[1]
    rows, rejects, audit = states[2]
    assert len(rows) == 6 * 18 and len(audit) == 7
    assert sorted({r[-2] for r in rejects}) == ["duplicate_record", "expect_column_values_to_match_regex(currency)",
                                                 "type:amount"]


def test_an_error_in_a_worker_process_is_raised_for_its_batch(settings, monkeypatch):
    """A group that fails in a worker (its landed file is gone) fails the load with the
    loader's own message, and nothing of the load is committed."""
    from ingestion.bronze import load_batches
    from ingestion.landing import PART

    zone, days, wh = _landed_days(settings, 5)
    (zone.batch_dir("stripe", "charges", days[3]) / PART).unlink()
    with pytest.raises(FileNotFoundError, match=PART):  # the worker's exception, raised here
        load_batches(wh, zone, SPECS["charges"], days, group_rows=10, workers=2)
    # the three groups before it were written in the load's transaction: rolled back
    assert not wh.table_exists("bronze", "stripe__charges") or wh.row_count("bronze", "stripe__charges") == 0
    assert not wh.table_exists("ops", "load_audit") or wh.row_count("ops", "load_audit") == 0


def test_worker_processes_do_not_depend_on_the_host_main_script(settings, tmp_path, monkeypatch, prepare_calls):
    """Hosts replace ``__main__`` (Streamlit's script runner, notebooks, task runners); the load
    workers must not re-run it (multiprocessing's spawn did, and died), nor need a non-daemonic
    host."""
    import multiprocessing
    import sys
    import types

    import ingestion.bronze as bronze

    script = tmp_path / "host_script.py"
    script.write_text("raise SystemExit('the host script must not run in a load worker')\n")
    host_main = types.ModuleType("__main__")
    host_main.__file__ = str(script)
    monkeypatch.setitem(sys.modules, "__main__", host_main)
    monkeypatch.setattr(multiprocessing.current_process(), "_config",
                        {**multiprocessing.current_process()._config, "daemon": True})
    zone, days, wh = _landed_days(settings, 4)
    reports = bronze.load_batches(wh, zone, SPECS["charges"], days, group_rows=10, workers=2)
    assert prepare_calls == [] and [r.loaded for r in reports] == [10] * 4


def test_a_dead_load_worker_is_reported_not_waited_for(settings):
    """A worker killed mid-load (out of memory, SIGKILL) fails the load with a message saying
    what happened and what to do, instead of hanging."""
    import pickle

    from ingestion.load_workers import LoadWorkerError, WorkerPool

    zone = LandingZone(settings.landing_path)
    zone.write_batch("stripe", "charges", DAY, [charge(i) for i in range(5)])
    pool = WorkerPool(1, pickle.dumps((zone, SPECS["charges"], None)))
    try:
        pool.procs[0].kill()
        pool.procs[0].wait()
        with pytest.raises(LoadWorkerError, match=r"died with exit code -9 \(killed, or out of memory\?\)"):
            list(pool.map([([DAY], [[]])]))
    finally:
        pool.close(kill=True)


def test_a_spec_that_cannot_travel_is_prepared_in_the_loader(settings, prepare_calls):
    """A spec built with a lambda cannot be sent to a worker process: the loader prepares its
    groups itself rather than failing."""
    import dataclasses

    import ingestion.bronze as bronze

    spec = dataclasses.replace(SPECS["charges"], prepare=lambda rec: rec)
    zone, days, wh = _landed_days(settings, 4)
    reports = bronze.load_batches(wh, zone, spec, days, group_rows=10, workers=2)
    assert prepare_calls == [1, 1, 1, 1] and [r.loaded for r in reports] == [10] * 4
