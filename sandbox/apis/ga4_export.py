"""GA4 BigQuery-export writer: ``events_YYYYMMDD.json.gz`` (NDJSON, gzip) per day.

For every day from the world's start up to the clock's date it writes the events visible at
the clock in the export schema (nested ``event_params``, ``device``, ``geo``, ``traffic_source``
(first-user), ``collected_traffic_source``, ``ecommerce``, ``items``). Days whose content did
not change since the last write are left alone (a hidden manifest keeps per-day row counts;
visible sets only grow with the clock, so equal counts mean equal content); a changed day is
rewritten atomically (temp file + rename), so a reader never sees a half-written file. Late
events make an earlier day's file grow when the clock passes their arrival. Moving the clock
back removes files of days that no longer exist yet.

Record faults (malformed / duplicate / drift) are drawn per event from (seed, day, row), so a
rewritten day breaks the same events the same way.
"""

from __future__ import annotations

import datetime as dt
import gzip
import json
import os
import shutil
import tempfile
import threading
import zlib
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from sandbox.apis.common import from_us
from sandbox.apis.faults import FaultConfig, FaultInjector
from sandbox.apis.ga4_days import open_day_store

MANIFEST = ".sandbox_manifest.json"
BATCH_ROWS = 50_000
CACHE = ".sandbox_cache"
STREAM_ID = "4178901234"


class GA4ExportWriter:
    def __init__(self, world: Any, out_dir: Path, meta: dict[str, Any], faults: FaultInjector | None = None,
                 fmt: str = "json"):
        if fmt not in ("json", "parquet"):
            raise ValueError("GA4 export format must be json or parquet")
        self.out_dir = Path(out_dir)
        self.meta = meta
        self.fmt = fmt
        self.faults = faults
        self._lock = threading.Lock()
        self.fx = {k.upper(): float(v) for k, v in (meta.get("fx_to_usd") or {"USD": 1.0}).items()}
        # the events by day in export order, on disk next to the world (bounded memory at any size)
        store = open_day_store(_events_file(world), self.out_dir / ".sandbox_days")
        self.days = store
        self.vis = store.vis
        self.day_spans = store.day_spans
        start = meta.get("start")
        self.first_day = dt.date.fromisoformat(str(start)[:10]) if start else (
            dt.datetime.strptime(str(min(self.day_spans)), "%Y%m%d").date() if self.day_spans else dt.date.today())
        self.identity = {"world": str(meta.get("size")) + "-" + str(meta.get("seed")), "counts": meta.get("counts"),
                         "start": meta.get("start"), "end": meta.get("end"), "format": fmt}
        self._manifest: dict[str, Any] | None = None

    # --- manifest --------------------------------------------------------------------------
    def _load_manifest(self) -> dict[str, Any]:
        if self._manifest is None:
            p = self.out_dir / MANIFEST
            try:
                m = json.loads(p.read_text())
            except (OSError, ValueError):
                m = {}
            if m.get("identity") != self.identity:
                m = {"identity": self.identity, "days": {}}
                shutil.rmtree(self.out_dir / CACHE, ignore_errors=True)  # parked files of another world
            self._manifest = m
        return self._manifest

    def _save_manifest(self) -> None:
        self._atomic_write(self.out_dir / MANIFEST, json.dumps(self._manifest, indent=1).encode())

    def days_written(self) -> int:
        return len((self._manifest or {}).get("days", {}))

    def _fault_key(self) -> str:
        cfg = self.faults.config if self.faults is not None else FaultConfig()
        if (cfg.apis is not None and "ga4" not in cfg.apis) or not (
                cfg.rate_malformed or cfg.rate_duplicate or cfg.rate_drift):
            return "off"
        return f"{cfg.seed}:{cfg.rate_malformed}:{cfg.rate_duplicate}:{cfg.rate_drift}"

    # --- writing ---------------------------------------------------------------------------
    def write(self, t_us: int) -> dict[str, Any]:
        """Bring the export up to the clock; returns which days were (re)written or removed."""
        with self._lock:
            self.out_dir.mkdir(parents=True, exist_ok=True)
            man = self._load_manifest()
            fault_key = self._fault_key()
            if man.get("faults") != fault_key:
                if man.get("faults") is not None:
                    for k, n in list(man["days"].items()):
                        self._park(k, n, man["faults"])
                man["days"] = {}
                man["faults"] = fault_key
            last_day = from_us(t_us).date()
            written, removed = [], []
            d = self.first_day
            wanted: set[str] = set()
            todo: list[tuple[str, int]] = []
            while d <= last_day:
                key = d.strftime("%Y%m%d")
                span = self.day_spans.get(int(key))
                n = 0
                if span is not None:
                    a, b = span
                    n = int(np.count_nonzero(self.vis[a:b] <= t_us))
                if n:
                    wanted.add(key)
                    if man["days"].get(key) != n or not self._path(key).exists():
                        old_n = man["days"].get(key)
                        if old_n is not None and self._path(key).exists():
                            self._park(key, old_n, fault_key)
                        if self._unpark(key, n, fault_key):
                            man["days"][key] = n
                            written.append(key)
                        else:
                            todo.append((key, n))
                elif key in man["days"] or self._path(key).exists():
                    self._park(key, man["days"].pop(key, None), fault_key)
                    removed.append(key)
                d += dt.timedelta(days=1)
            # build lines for many days per batch: the string kernels cost per call, not per row
            batch: list[str] = []
            rows = 0
            for i, (key, n) in enumerate(todo):
                batch.append(key)
                rows += n
                if rows >= BATCH_ROWS or i == len(todo) - 1:
                    self._write_days(batch, t_us)
                    written.extend(batch)
                    batch, rows = [], 0
            for k, n in todo:
                man["days"][k] = n
            for key in list(man["days"]):
                if key not in wanted:
                    self._park(key, man["days"].pop(key, None), fault_key)
                    removed.append(key)
            for p in self.out_dir.glob("events_*"):  # files of days past the clock
                stem = p.name.split(".")[0][len("events_"):]
                if stem.isdigit() and stem not in wanted:
                    p.unlink(missing_ok=True)
            self._save_manifest()
            return {"written": written, "removed": removed, "days": len(man["days"])}

    # A day's content is fixed by (day, visible row count, fault settings): files of days the
    # clock moved away from are parked in a hidden cache and renamed back when it returns.
    def _parked(self, key: str, n: int, fault_key: str) -> Path:
        tag = zlib.crc32(fault_key.encode())
        ext = "json.gz" if self.fmt == "json" else "parquet"
        return self.out_dir / CACHE / f"d{key}-n{n}-f{tag:08x}.{ext}"

    def _park(self, key: str, n: int | None, fault_key: str) -> None:
        p = self._path(key)
        if n is None or not p.exists():
            p.unlink(missing_ok=True)
            return
        dst = self._parked(key, n, fault_key)
        dst.parent.mkdir(exist_ok=True)
        os.replace(p, dst)

    def _unpark(self, key: str, n: int, fault_key: str) -> bool:
        src = self._parked(key, n, fault_key)
        try:
            os.replace(src, self._path(key))
            return True
        except FileNotFoundError:
            return False

    def _path(self, key: str) -> Path:
        return self.out_dir / (f"events_{key}.json.gz" if self.fmt == "json" else f"events_{key}.parquet")

    def _atomic_write(self, path: Path, data: bytes) -> None:
        fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
        try:
            with os.fdopen(fd, "wb") as f:
                f.write(data)
            os.chmod(tmp, 0o644)
            os.replace(tmp, path)
        except BaseException:
            Path(tmp).unlink(missing_ok=True)
            raise

    def _write_days(self, keys: list[str], t_us: int) -> None:
        locals_: list[np.ndarray] = []
        globals_: list[np.ndarray] = []
        in_read: list[np.ndarray] = []  # positions in the days' events read whole and concatenated
        read = 0
        for key in keys:
            a, b = self.day_spans[int(key)]
            local = np.flatnonzero(self.vis[a:b] <= t_us)
            locals_.append(local)
            globals_.append(local + a)
            in_read.append(local + read)
            read += b - a
        rows = np.concatenate(globals_)
        sub = self.days.read_days([int(k) for k in keys]).combine_chunks().take(
            pa.array(np.concatenate(in_read), pa.int64()))
        all_lines = self._lines(sub, self.days.device[rows])
        off = 0
        for key, local in zip(keys, locals_):
            a, b = self.day_spans[int(key)]
            lines = self._apply_faults(key, b - a, local, all_lines.slice(off, len(local)))
            off += len(local)
            self._write_file(key, lines)

    def _write_file(self, key: str, lines: pa.Array) -> None:
        text = pc.binary_join(pa.ListArray.from_arrays(pa.array([0, len(lines)], pa.int32()), lines), "\n")[0].as_py()
        ndjson = (text + "\n").encode("utf-8")
        if self.fmt == "parquet":
            import io

            import pyarrow.json as pj
            import pyarrow.parquet as pq

            tbl = pj.read_json(io.BytesIO(ndjson))
            fd, tmp = tempfile.mkstemp(dir=self.out_dir, prefix=f".events_{key}.", suffix=".tmp")
            os.close(fd)
            try:
                pq.write_table(tbl, tmp)
                os.chmod(tmp, 0o644)
                os.replace(tmp, self._path(key))
            except BaseException:
                Path(tmp).unlink(missing_ok=True)
                raise
            return
        self._atomic_write(self._path(key), gzip.compress(ndjson, compresslevel=3, mtime=0))

    def _apply_faults(self, key: str, n_day: int, local: np.ndarray, lines: pa.Array) -> pa.Array:
        cfg = self.faults.config if self.faults is not None else FaultConfig()
        active = self._fault_key() != "off" and (cfg.rate_malformed or cfg.rate_duplicate or cfg.rate_drift)
        if not active or len(lines) == 0:
            return lines
        rng = np.random.default_rng([cfg.seed & 0xFFFFFFFF, zlib.crc32(b"ga4"), int(key)])
        u = rng.random((n_day, 4))[local]  # drawn for the whole day: an event's fate never depends on the clock
        out: list[str] = []
        for i, line in enumerate(lines.to_pylist()):
            if u[i, 0] < cfg.rate_malformed or u[i, 1] < cfg.rate_drift:
                r = json.loads(line)
                v = int(u[i, 3] * 1000) % 3
                if u[i, 0] < cfg.rate_malformed:
                    if v == 0:
                        r["event_timestamp"] = "not-a-timestamp"
                    elif v == 1:
                        r.pop("event_name", None)
                    else:
                        r["event_params"] = "broken"
                elif v == 0:
                    r["sandbox_new_field"] = {"value": v}
                elif v == 1:
                    r.pop("geo", None)
                else:
                    r["event_timestamp"] = str(r["event_timestamp"])
                line = json.dumps(r, separators=(",", ":"))
            out.append(line)
            if u[i, 2] < cfg.rate_duplicate:
                out.append(line)
        return pa.array(out, pa.string())

    # --- vectorised NDJSON -----------------------------------------------------------------
    def _lines(self, sub: pa.Table, devices: np.ndarray) -> pa.Array:
        """One export-schema JSON object per event (``sub``: world rows; ``devices``: their device codes),
        built with pyarrow string kernels."""
        n = sub.num_rows
        if n == 0:
            return pa.array([], pa.string())
        col = lambda name: _plain(sub.column(name)) if name in sub.column_names else pa.nulls(n, pa.string())  # noqa: E731
        ft = self.days.first_touch.take(pa.array(devices, pa.int64()))
        first = pa.table({k: _plain(ft.column(k)) for k in ft.column_names})
        name = col("event_name")
        is_session_start = pc.fill_null(pc.equal(name, "session_start"), False)

        def param(key: str, arr: pa.Array, kind: str, when: pa.Array | None = None, first_one: bool = False) -> pa.Array:
            slot = {"s": 0, "i": 1, "d": 3}[kind]
            vals = ["null", "null", "null", "null"]
            head = ("" if first_one else ",") + '{"key":"' + key + '","value":{'
            parts: list[Any] = [head]
            for j, k in enumerate(("string_value", "int_value", "float_value", "double_value")):
                parts.append(("," if j else "") + f'"{k}":')
                parts.append(_js(arr) if j == slot and kind == "s" else _jn(arr) if j == slot else vals[j])
            parts.append("}}")
            frag = pc.binary_join_element_wise(*parts, "")
            ok = pc.is_valid(arr)
            if when is not None:
                ok = pc.and_(ok, when)
            return pc.if_else(ok, frag, "")

        params = [
            param("ga_session_id", col("ga_session_id"), "i", first_one=True),
            param("ga_session_number", col("ga_session_number"), "i"),
            param("page_location", col("page_location"), "s"),
            param("page_title", col("page_title"), "s"),
            param("page_referrer", col("page_referrer"), "s"),
            param("engagement_time_msec", col("engagement_time_msec"), "i"),
            param("source", col("source"), "s", is_session_start),
            param("medium", col("medium"), "s", is_session_start),
            param("campaign", col("campaign"), "s", is_session_start),
            param("transaction_id", col("transaction_id"), "s"),
            param("value", pc.cast(col("value"), pa.float64()), "d"),
            param("currency", col("currency"), "s", pc.is_valid(col("transaction_id"))),
        ]
        # ecommerce (purchases): revenue in USD through the world's fixed rates, item quantities
        tx = col("transaction_id")
        value = pc.cast(col("value"), pa.float64())
        cur = pc.utf8_upper(pc.fill_null(col("currency"), "USD"))
        fx_keys = pa.array(list(self.fx), pa.string())
        rate = pc.fill_null(pa.array(list(self.fx.values()), pa.float64()).take(pc.index_in(cur, value_set=fx_keys)), 1.0)
        items = col("items_json")
        qty, uniq = self._item_counts(items)
        ecommerce = pc.if_else(
            pc.is_valid(tx),
            pc.binary_join_element_wise(
                '{"transaction_id":', _js(tx), ',"purchase_revenue":', _jn(value),
                ',"purchase_revenue_in_usd":', _jn(pc.round(pc.multiply(value, rate), 6)),
                ',"total_item_quantity":', _jn(qty), ',"unique_items":', _jn(uniq),
                ',"refund_value":null,"refund_value_in_usd":null,"shipping_value":null,"shipping_value_in_usd":null,'
                '"tax_value":null,"tax_value_in_usd":null}', ""),
            "null")
        src, med, camp, gclid = col("source"), col("medium"), col("campaign"), col("gclid")
        any_cts = pc.or_(pc.or_(pc.is_valid(src), pc.is_valid(med)), pc.or_(pc.is_valid(camp), pc.is_valid(gclid)))
        cts = pc.if_else(any_cts, pc.binary_join_element_wise(
            '{"manual_campaign_id":null,"manual_campaign_name":', _js(camp), ',"manual_source":', _js(src),
            ',"manual_medium":', _js(med), ',"manual_term":null,"manual_content":null,"gclid":', _js(gclid),
            ',"dclid":null,"srsltid":null}', ""), "null")
        ts_name = _js(pc.fill_null(first.column("campaign").combine_chunks(), "(direct)"))
        ts_med = _js(pc.fill_null(first.column("medium").combine_chunks(), "(none)"))
        ts_src = _js(pc.fill_null(first.column("source").combine_chunks(), "(direct)"))
        platform = col("platform")
        web_info = pc.if_else(pc.fill_null(pc.equal(platform, "WEB"), False),
                              '{"browser":null,"browser_version":null,"hostname":null}', "null")
        parts: list[Any] = [
            '{"event_date":', _js(col("event_date")),
            ',"event_timestamp":', _jn(col("event_timestamp")),
            ',"event_name":', _js(name),
            ',"event_params":[', *params, "]",
            ',"user_id":', _js(col("user_id")),
            ',"user_pseudo_id":', _js(col("user_pseudo_id")),
            ',"user_first_touch_timestamp":', _jn(first.column("event_timestamp").combine_chunks()),
            ',"device":{"category":', _js(col("device_category")),
            ',"operating_system":', _js(col("device_os")),
            ',"mobile_brand_name":null,"mobile_model_name":null,"language":null,"is_limited_ad_tracking":"No","web_info":', web_info,
            '},"geo":{"country":', _js(col("geo_country")), ',"region":null,"city":null,"continent":null}',
            ',"app_info":null,"traffic_source":{"name":', ts_name, ',"medium":', ts_med, ',"source":', ts_src, "}",
            f',"stream_id":"{STREAM_ID}","platform":', _js(platform),
            ',"collected_traffic_source":', cts,
            ',"ecommerce":', ecommerce,
            ',"items":', pc.if_else(pc.is_valid(items), items, "[]"),
            "}",
        ]
        return pc.binary_join_element_wise(*parts, "")

    @staticmethod
    def _item_counts(items: pa.Array) -> tuple[pa.Array, pa.Array]:
        """Total quantity and distinct items per event from items_json (Python only for purchases)."""
        n = len(items)
        qty = np.zeros(n, dtype=np.int64)
        uniq = np.zeros(n, dtype=np.int64)
        valid = np.asarray(pc.is_valid(items).to_numpy(zero_copy_only=False), dtype=bool)
        idx = np.flatnonzero(valid)
        if len(idx):
            for i, txt in zip(idx.tolist(), items.take(pa.array(idx)).to_pylist()):
                try:
                    lst = json.loads(txt)
                except ValueError:
                    continue
                qty[i] = sum(int(it.get("quantity") or 0) for it in lst if isinstance(it, dict))
                uniq[i] = len({it.get("item_id") for it in lst if isinstance(it, dict)})
        return pa.array(qty, mask=~valid), pa.array(uniq, mask=~valid)




def _events_file(world: Any) -> Path:
    """The world's GA4 events file (``<world>/ga4_events.parquet``)."""
    path = getattr(world, "path", None)
    if path is None or not (Path(path) / "ga4_events.parquet").exists():
        raise FileNotFoundError(f"the GA4 export needs the world's ga4_events.parquet (world at {path}): "
                                "regenerate the world with python -m sandbox.world")
    return Path(path) / "ga4_events.parquet"


def _plain(col: pa.ChunkedArray | pa.Array) -> pa.Array:
    """One contiguous array, dictionary-encoded values decoded."""
    arr = col.combine_chunks() if isinstance(col, pa.ChunkedArray) else col
    if pa.types.is_dictionary(arr.type):
        arr = pc.cast(arr, arr.type.value_type)
    return arr


def _js(arr: pa.Array) -> pa.Array:
    """JSON string literals (``null`` for nulls)."""
    arr = pc.cast(arr, pa.string())
    if pc.any(pc.match_substring_regex(arr, r"[\x00-\x1f]")).as_py():
        return pa.array([json.dumps(v) if v is not None else "null" for v in arr.to_pylist()], pa.string())
    esc = pc.replace_substring(pc.replace_substring(arr, "\\", "\\\\"), '"', '\\"')
    return pc.fill_null(pc.binary_join_element_wise('"', esc, '"', ""), "null")


def _jn(arr: pa.Array) -> pa.Array:
    """JSON numbers (``null`` for nulls)."""
    return pc.fill_null(pc.cast(arr, pa.string()), "null")
