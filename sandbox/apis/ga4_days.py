"""The world's GA4 events split by event day, for the GA4 export writer, in bounded memory.

The export writer needs the events of a few days at a time, in export order (event day, then
event timestamp; ties in the world file's order). Holding the whole decoded events table for
that took about 4.7 GB at the medium world and would take about 47 GB at the large one, so the
events are split once into one Parquet file per event day, next to the world's
``ga4_events.parquet``::

    <world>/ga4_by_day/
        store.json           what it was built from (world identity, file size and mtime, version)
        index.parquet        per event in export order: day, visible-at (us), device code
        first_touch.parquet  per device code: timestamp, source, medium, campaign of its first event
        days.json            per day: bucket file and row group
        b<NNNNN>.parquet     a bucket of whole days in export order, one row group per day
                             (the world file's columns)

Building it reads the world file a few columns at a time, then once in record batches that go to
temporary bucket files of whole days (about ``BUCKET_ROWS`` events each), each bucket being sorted
and split on its own: the peak is the index columns plus one bucket, not the world. It is built
in a temporary directory and renamed into place under a lock, so concurrent sandboxes build it
once and a crash never leaves half a store; a store of another world file is rebuilt. Where the
world directory cannot be written, the store goes under the export directory instead.
"""

from __future__ import annotations

import json
import logging
import os
import shutil
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.ipc as ipc
import pyarrow.parquet as pq

from sandbox.world import _file_lock

log = logging.getLogger(__name__)

STORE_DIR = "ga4_by_day"
STORE_VERSION = 2
BUCKET_ROWS = 2_000_000
READ_BATCH_ROWS = 1_000_000
FIRST_TOUCH_COLUMNS = ("event_timestamp", "source", "medium", "campaign")


@dataclass
class DayStore:
    """An opened store: the index arrays in memory, the days read on demand."""

    path: Path
    vis: np.ndarray                        # visible-at (us) per event, export order
    device: np.ndarray                     # device code per event, export order
    day_spans: dict[int, tuple[int, int]]  # YYYYMMDD -> [start, end) in export order
    first_touch: pa.Table                  # row = device code
    where: dict[int, tuple[int, int]]      # YYYYMMDD -> (bucket, row group)

    def read_days(self, keys: list[int]) -> pa.Table:
        """The events of ``keys`` (ascending days), concatenated in export order."""
        parts: list[pa.Table] = []
        run: list[int] = []
        bucket = None
        for key in keys:
            b, group = self.where[key]
            if b != bucket and run:
                parts.append(self._read(bucket, run))
                run = []
            bucket = b
            run.append(group)
        if run:
            parts.append(self._read(bucket, run))
        return pa.concat_tables(parts) if len(parts) != 1 else parts[0]

    def _read(self, bucket: int | None, groups: list[int]) -> pa.Table:
        return pq.ParquetFile(self.path / f"b{bucket:05d}.parquet").read_row_groups(groups)


def _source_identity(world_file: Path) -> dict:
    st = world_file.stat()
    return {"version": STORE_VERSION, "file": world_file.name, "size": st.st_size, "mtime_ns": st.st_mtime_ns}


def _is_current(store: Path, identity: dict) -> bool:
    try:
        return json.loads((store / "store.json").read_text()) == identity
    except (OSError, ValueError):
        return False


def open_day_store(world_file: Path, fallback_dir: Path) -> DayStore:
    """The day store of ``world_file`` (built first when missing or stale)."""
    world_file = Path(world_file)
    identity = _source_identity(world_file)
    for base in (world_file.parent, Path(fallback_dir)):
        store = base / STORE_DIR
        try:
            base.mkdir(parents=True, exist_ok=True)
            if not _is_current(store, identity):
                with _file_lock(base / f".{STORE_DIR}.lock"):
                    if not _is_current(store, identity):
                        _build(world_file, store, identity)
        except PermissionError as exc:
            log.info("cannot write the GA4 day store under %s (%s); trying the next place", base, exc)
            continue
        return _open(store)
    raise PermissionError(f"cannot write the GA4 day store next to {world_file} nor under {fallback_dir}: "
                          "make one of them writable")


def _open(store: Path) -> DayStore:
    idx = pq.read_table(store / "index.parquet")
    days = np.asarray(idx.column("day").to_numpy(), dtype=np.int64)
    vis = np.asarray(idx.column("vis").to_numpy(), dtype=np.int64)
    device = np.asarray(idx.column("device").to_numpy(), dtype=np.int64)
    del idx
    n = len(days)
    spans: dict[int, tuple[int, int]] = {}
    if n:
        starts = np.flatnonzero(np.r_[True, days[1:] != days[:-1]])
        ends = np.r_[starts[1:], n]
        spans = {int(days[s]): (int(s), int(e)) for s, e in zip(starts, ends)}
    where = {int(k): (int(b), int(g)) for k, (b, g) in json.loads((store / "days.json").read_text()).items()}
    return DayStore(path=store, vis=vis, device=device, day_spans=spans,
                    first_touch=pq.read_table(store / "first_touch.parquet"), where=where)


def _column(pf: pq.ParquetFile, name: str) -> pa.Array:
    col = pf.read(columns=[name]).column(0)
    if pa.types.is_dictionary(col.type):
        col = pc.cast(col, col.type.value_type)
    try:
        return col.combine_chunks()
    except (pa.ArrowInvalid, pa.ArrowCapacityError, OverflowError):
        return pc.cast(col, pa.large_string()).combine_chunks()


def _us(arr: pa.Array) -> np.ndarray:
    if pa.types.is_timestamp(arr.type):
        arr = pc.cast(pc.cast(arr, pa.timestamp("us", tz="UTC")), pa.int64())
    return np.asarray(pc.fill_null(arr, 0).to_numpy(zero_copy_only=False), dtype=np.int64)


def _build(world_file: Path, store: Path, identity: dict) -> None:
    began = time.monotonic()
    tmp = Path(tempfile.mkdtemp(prefix=f".{STORE_DIR}.tmp-", dir=store.parent))
    try:
        pf = pq.ParquetFile(world_file)
        n = pf.metadata.num_rows
        # export order: stable by (day, timestamp), ties in file order
        day_int = pc.cast(_column(pf, "event_date"), pa.int32())
        ts = _column(pf, "event_timestamp")
        order = pc.sort_indices(pa.table({"d": day_int, "ts": ts}), sort_keys=[("d", "ascending"), ("ts", "ascending")])
        order_np = np.asarray(order.to_numpy(zero_copy_only=False), dtype=np.int64)
        del order
        days = np.asarray(day_int.to_numpy(zero_copy_only=False), dtype=np.int64)[order_np]
        del day_int
        vis = _us(_column(pf, "_visible_at"))[order_np]
        # devices: codes by first appearance in the file; first event of each device in export order
        enc = pc.dictionary_encode(_column(pf, "user_pseudo_id"))
        device = np.asarray(enc.indices.to_numpy(zero_copy_only=False), dtype=np.int64)[order_np]
        n_devices = len(enc.dictionary)
        del enc
        uniq, first_pos = np.unique(device, return_index=True)
        first_sorted = np.zeros(n_devices, dtype=np.int64)
        first_sorted[uniq] = first_pos
        first_file_rows = pa.array(order_np[first_sorted], pa.int64())
        touch = {"event_timestamp": ts.take(first_file_rows)}
        del ts
        for name in FIRST_TOUCH_COLUMNS[1:]:
            touch[name] = _column(pf, name).take(first_file_rows)
        pq.write_table(pa.table(touch), tmp / "first_touch.parquet")
        pq.write_table(pa.table({"day": pa.array(days, pa.int32()), "vis": pa.array(vis, pa.int64()),
                                 "device": pa.array(device, pa.int64())}), tmp / "index.parquet")
        del vis, device, first_sorted, first_file_rows, touch

        # day spans in export order, grouped into buckets of whole days
        if n:
            starts = np.flatnonzero(np.r_[True, days[1:] != days[:-1]])
        else:
            starts = np.zeros(0, dtype=np.int64)
        ends = np.r_[starts[1:], n].astype(np.int64)
        bucket_starts: list[int] = []
        for s in starts.tolist():
            if not bucket_starts or s - bucket_starts[-1] >= BUCKET_ROWS:
                bucket_starts.append(s)
        bounds = np.asarray(bucket_starts, dtype=np.int64)
        pos_of_row = np.empty(n, dtype=np.int64)
        pos_of_row[order_np] = np.arange(n, dtype=np.int64)
        del order_np

        # one pass over the file: every batch's rows to their bucket's file, with their position
        schema = pq.read_schema(world_file)
        schema = pa.schema([pa.field(f.name, f.type.value_type if pa.types.is_dictionary(f.type) else f.type)
                            for f in schema])
        bucket_schema = schema.append(pa.field("_pos", pa.int64()))
        writers: dict[int, ipc.RecordBatchFileWriter] = {}
        try:
            offset = 0
            for batch in pf.iter_batches(batch_size=READ_BATCH_ROWS):
                m = batch.num_rows
                pos = pos_of_row[offset:offset + m]
                offset += m
                bucket = np.searchsorted(bounds, pos, side="right") - 1
                by_bucket = np.argsort(bucket, kind="stable")
                cuts = np.flatnonzero(np.diff(bucket[by_bucket])) + 1
                table = pa.Table.from_batches([batch]).cast(schema)
                for part in np.split(by_bucket, cuts):
                    if not len(part):
                        continue
                    k = int(bucket[part[0]])
                    piece = table.take(pa.array(part, pa.int64())).append_column("_pos", pa.array(pos[part], pa.int64()))
                    if k not in writers:
                        writers[k] = ipc.new_file(tmp / f"bucket-{k:05d}.arrow", bucket_schema)
                    writers[k].write_table(piece)
        finally:
            for w in writers.values():
                w.close()
        del pos_of_row

        # each bucket: sorted by position, one row group per day
        where: dict[str, tuple[int, int]] = {}
        for k, b0 in enumerate(bucket_starts):
            path = tmp / f"bucket-{k:05d}.arrow"
            with pa.memory_map(str(path)) as src:
                part = ipc.open_file(src).read_all()
            part = part.take(pc.sort_indices(part.column("_pos"))).drop_columns(["_pos"])
            b1 = bucket_starts[k + 1] if k + 1 < len(bucket_starts) else n
            first = int(np.searchsorted(starts, b0))
            last = int(np.searchsorted(starts, b1))
            with pq.ParquetWriter(tmp / f"b{k:05d}.parquet", schema, compression="zstd") as out:
                for group, (s, e) in enumerate(zip(starts[first:last].tolist(), ends[first:last].tolist())):
                    out.write_table(part.slice(s - b0, e - s), row_group_size=e - s)
                    where[str(int(days[s]))] = (k, group)
            del part
            path.unlink()
        (tmp / "days.json").write_text(json.dumps(where))
        (tmp / "store.json").write_text(json.dumps(identity))
        old = None
        if store.exists():
            old = store.parent / f".{STORE_DIR}.old-{os.getpid()}-{time.time_ns()}"
            os.rename(store, old)
        os.rename(tmp, store)
        if old is not None:
            shutil.rmtree(old, ignore_errors=True)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    log.info("GA4 day store of %s: %d events in %d days, built in %.1f s", world_file, n, len(starts),
             time.monotonic() - began)
