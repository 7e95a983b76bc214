"""The GA4 day store: the world's events by day, in export order, built in bounded memory.

The GA4 export writer used to hold the whole decoded events table (about 47 GB at the large
world); it now reads a few days at a time from a store built once next to the world file.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import json
import shutil
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq
import pytest

from sandbox.apis import ga4_days
from sandbox.apis.ga4_export import GA4ExportWriter


@pytest.fixture()
def world_copy(small_world: Path, tmp_path: Path) -> Path:
    """The small world's GA4 events and world.json in a private directory (its own day store)."""
    d = tmp_path / "world"
    d.mkdir()
    shutil.copy(small_world / "ga4_events.parquet", d / "ga4_events.parquet")
    shutil.copy(small_world / "world.json", d / "world.json")
    return d


def _reference(world_file: Path) -> pa.Table:
    """The events in export order the way the in-memory writer sorted them: stable by (day, timestamp)."""
    t = pq.read_table(world_file)
    order = pc.sort_indices(pa.table({"d": pc.cast(t.column("event_date"), pa.int32()), "ts": t.column("event_timestamp")}),
                            sort_keys=[("d", "ascending"), ("ts", "ascending")])
    return t.take(order).combine_chunks()


def _export_digest(out: Path) -> str:
    h = hashlib.sha256()
    for p in sorted(out.glob("events_*")):
        h.update(p.name.encode())
        h.update(hashlib.sha256(p.read_bytes()).digest())
    return h.hexdigest()


def _end_us(world_dir: Path) -> int:
    end = dt.date.fromisoformat(json.loads((world_dir / "world.json").read_text())["end"])
    return int(dt.datetime(end.year, end.month, end.day, tzinfo=dt.timezone.utc).timestamp() * 1e6) + 30 * 86_400 * 10**6


def test_the_store_holds_every_event_in_export_order_across_buckets_and_read_batches(world_copy, monkeypatch) -> None:
    monkeypatch.setattr(ga4_days, "BUCKET_ROWS", 5_000)        # many buckets of whole days
    monkeypatch.setattr(ga4_days, "READ_BATCH_ROWS", 7_000)    # batches that straddle buckets
    world_file = world_copy / "ga4_events.parquet"
    store = ga4_days.open_day_store(world_file, world_copy / "fallback")
    ref = _reference(world_file)
    assert len(list(store.path.glob("b*.parquet"))) > 10
    assert not list(world_copy.glob(f".{ga4_days.STORE_DIR}.tmp-*"))

    days = sorted(store.day_spans)
    got = store.read_days(days).combine_chunks()
    assert got.num_rows == ref.num_rows == len(store.vis) == len(store.device)
    assert got.equals(ref.cast(got.schema))
    # spans: each day's rows are that day's, in order
    for key in (days[0], days[len(days) // 2], days[-1]):
        a, b = store.day_spans[key]
        assert set(ref.column("event_date").slice(a, b - a).to_pylist()) == {str(key)}
        assert store.read_days([key]).num_rows == b - a
    # visible-at per event
    ref_vis = pc.cast(pc.cast(ref.column("_visible_at"), pa.timestamp("us", tz="UTC")), pa.int64()).to_numpy()
    assert np.array_equal(store.vis, ref_vis)
    # device codes: one code per user_pseudo_id; first touch = the device's first event in export order
    pseudo = np.asarray(ref.column("user_pseudo_id").to_pylist(), dtype=object)
    code_of = {}
    for code, pid in zip(store.device.tolist(), pseudo.tolist()):
        assert code_of.setdefault(pid, code) == code
    assert len(set(code_of.values())) == len(code_of) == store.first_touch.num_rows
    first = {}
    rows = ref.select(["user_pseudo_id", *ga4_days.FIRST_TOUCH_COLUMNS]).to_pylist()
    for r in rows:
        first.setdefault(r["user_pseudo_id"], r)
    touch = store.first_touch.to_pylist()
    for pid, code in list(code_of.items())[:2000]:
        assert touch[code] == {k: first[pid][k] for k in ga4_days.FIRST_TOUCH_COLUMNS}


def test_the_export_does_not_depend_on_how_the_store_is_cut(world_copy, tmp_path, monkeypatch) -> None:
    meta = json.loads((world_copy / "world.json").read_text())
    world = SimpleNamespace(path=world_copy)
    default = GA4ExportWriter(world, tmp_path / "a", meta)
    default.write(_end_us(world_copy))
    digest = _export_digest(tmp_path / "a")

    shutil.rmtree(world_copy / ga4_days.STORE_DIR)
    monkeypatch.setattr(ga4_days, "BUCKET_ROWS", 3_000)
    monkeypatch.setattr(ga4_days, "READ_BATCH_ROWS", 10_000)
    small_buckets = GA4ExportWriter(world, tmp_path / "b", meta)
    assert len(list((world_copy / ga4_days.STORE_DIR).glob("b*.parquet"))) > 20
    small_buckets.write(_end_us(world_copy))
    assert _export_digest(tmp_path / "b") == digest
    assert len(list((tmp_path / "b").glob("events_*.json.gz"))) > 700


def test_the_writer_does_not_hold_the_events_in_memory(world_copy, tmp_path) -> None:
    """What the writer keeps between writes is the index (a few numbers per event), not the events:
    Arrow memory in use after a full write stays far below the decoded events table."""
    decoded = pq.read_table(world_copy / "ga4_events.parquet").nbytes
    meta = json.loads((world_copy / "world.json").read_text())
    ga4_days.open_day_store(world_copy / "ga4_events.parquet", tmp_path / "fallback")  # the store exists already
    before = pa.total_allocated_bytes()
    writer = GA4ExportWriter(SimpleNamespace(path=world_copy), tmp_path / "out", meta)
    writer.write(_end_us(world_copy))
    held = pa.total_allocated_bytes() - before
    assert writer.days_written() > 700
    assert held < decoded / 10, (held, decoded)


def test_a_changed_world_file_gets_a_new_store_and_a_failed_build_leaves_nothing(world_copy, monkeypatch) -> None:
    monkeypatch.setattr(ga4_days, "BUCKET_ROWS", 5_000)
    world_file = world_copy / "ga4_events.parquet"
    first = ga4_days.open_day_store(world_file, world_copy / "fallback")
    n = len(first.vis)
    # the world file is replaced (a regenerated world): the store follows it
    t = pq.read_table(world_file)
    pq.write_table(t.slice(0, n - 1000), world_file)
    second = ga4_days.open_day_store(world_file, world_copy / "fallback")
    assert len(second.vis) == n - 1000 == second.read_days(sorted(second.day_spans)).num_rows

    # a build that fails half-way leaves the previous store and no temporary directory
    pq.write_table(t, world_file)

    class Boom(RuntimeError):
        pass

    real_writer = ga4_days.pq.ParquetWriter
    calls = {"n": 0}

    def failing_writer(*args, **kwargs):
        calls["n"] += 1
        if calls["n"] > 1:
            raise Boom("disk full")
        return real_writer(*args, **kwargs)

    monkeypatch.setattr(ga4_days.pq, "ParquetWriter", failing_writer)
    with pytest.raises(Boom):
        ga4_days.open_day_store(world_file, world_copy / "fallback")
    assert not list(world_copy.glob(f".{ga4_days.STORE_DIR}.tmp-*"))
    assert len(ga4_days._open(world_copy / ga4_days.STORE_DIR).vis) == n - 1000
    monkeypatch.setattr(ga4_days.pq, "ParquetWriter", real_writer)
    assert len(ga4_days.open_day_store(world_file, world_copy / "fallback").vis) == n


def test_the_store_goes_under_the_fallback_directory_when_the_world_directory_is_read_only(world_copy, tmp_path,
                                                                                            monkeypatch) -> None:
    real_mkdtemp = ga4_days.tempfile.mkdtemp

    def mkdtemp(prefix="", dir=None):  # noqa: A002 - tempfile's own parameter name
        if Path(dir) == world_copy:
            raise PermissionError(13, "Permission denied", str(dir))
        return real_mkdtemp(prefix=prefix, dir=dir)

    monkeypatch.setattr(ga4_days.tempfile, "mkdtemp", mkdtemp)
    store = ga4_days.open_day_store(world_copy / "ga4_events.parquet", tmp_path / "fallback")
    assert store.path == tmp_path / "fallback" / ga4_days.STORE_DIR
    assert not (world_copy / ga4_days.STORE_DIR).exists()
    assert store.read_days(sorted(store.day_spans)).num_rows == pq.ParquetFile(world_copy / "ga4_events.parquet").metadata.num_rows
