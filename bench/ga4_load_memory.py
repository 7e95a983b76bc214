"""Where the memory of GA4 validate+load goes: process RSS and DuckDB's own buffer memory after
each load group, for the landed GA4 batches of a pipeline run.

``bench.run --workdir DIR`` keeps a run's landing zone; this bench loads its GA4 batches into a
fresh DuckDB warehouse (``load_source(settings, "ga4", period)``, the pipeline's validate+load),
sampling after every group of ``ingestion.bronze.GROUP_ROWS`` records: RSS of the process and
``sum(memory_usage_bytes) from duckdb_memory()`` on the loading connection (DuckDB's buffer
pool, including the uncommitted bronze rows of the one transaction). With ``--memory-limit``
the loading connection first runs ``SET memory_limit`` (what a product fix would do), to see
whether the peak follows.

    python -m bench.ga4_load_memory --landing data/bench-work/medium/direct/data [--memory-limit 2GB]
"""

from __future__ import annotations

import argparse
import contextlib
import datetime as dt
import json
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

import psutil

from bench._common import machine, now, settings_for, write_result


def _py_heap(prev: dict[str, int] | None) -> tuple[dict[str, Any], dict[str, int]]:
    """Objects the garbage collector tracks, by type: totals and the biggest growth since ``prev``."""
    import collections
    import gc

    import pyarrow as pa

    counts = collections.Counter(type(o).__name__ for o in gc.get_objects())
    grew = {k: v - (prev or {}).get(k, 0) for k, v in counts.items()}
    top = dict(sorted(((k, v) for k, v in grew.items() if v > 0), key=lambda kv: -kv[1])[:6])
    return {"gc_objects": sum(counts.values()), "dataframes_alive": counts.get("DataFrame", 0),
            "arrow_pool_mb": round(pa.total_allocated_bytes() / 2**20, 1), "gc_growth_top": top}, dict(counts)


def _insert_df_replacement_scan(self, con, schema, table, df):  # type: ignore[no-untyped-def]
    """The candidate fix of DuckDBWarehouse._insert_df: the frame is read by DuckDB's replacement
    scan of a local variable instead of ``con.register`` (which keeps it alive until commit)."""
    from retailpulse.warehouse import ident

    __rp_frame = df  # noqa: F841
    con.execute(f"insert into {ident(schema)}.{ident(table)} by name select * from __rp_frame")


def run(data_dir: Path, memory_limit: str | None, first: dt.date, last: dt.date,
        trace: bool = False, insert: str = "register") -> dict[str, Any]:
    import ingestion.bronze as bronze
    from ingestion.interval import Interval
    from ingestion.runner import load_source
    from retailpulse.pipeline import init_warehouse
    from retailpulse.warehouse import DuckDBWarehouse, Warehouse

    proc = psutil.Process()
    samples: list[dict[str, Any]] = []
    state: dict[str, Any] = {"con": None, "peak": 0, "stop": False, "heap": None}

    def sampler() -> None:
        while not state["stop"]:
            state["peak"] = max(state["peak"], proc.memory_info().rss)
            time.sleep(0.05)

    orig_connect = DuckDBWarehouse.connect
    orig_prepare = bronze.prepare_batches
    orig_replace = Warehouse.replace_rows
    orig_insert = DuckDBWarehouse._insert_df

    @contextlib.contextmanager
    def connect(self, read_only: bool = False):  # type: ignore[no-untyped-def]
        with orig_connect(self, read_only) as con:
            if memory_limit and not read_only:
                con.execute(f"set memory_limit = '{memory_limit}'")
            state["con"] = con
            yield con

    def duck_mb() -> float | None:
        con = state["con"]
        if con is None:
            return None
        try:
            return round(con.execute("select sum(memory_usage_bytes) from duckdb_memory()").fetchone()[0] / 2**20, 1)
        except Exception:  # noqa: BLE001
            return None

    def prepare(zone, spec, intervals, *a, **k):  # type: ignore[no-untyped-def]
        out = orig_prepare(zone, spec, intervals, *a, **k)
        samples.append({"step": "prepared", "batches": len(intervals), "records": sum(len(p.frame) for p in out),
                        "rss_mb": round(proc.memory_info().rss / 2**20, 1), "duckdb_mb": duck_mb()})
        return out

    def replace(self, schema, table, df, where=None, con=None):  # type: ignore[no-untyped-def]
        n = orig_replace(self, schema, table, df, where, con)
        if table.startswith("ga4"):
            sample = {"step": "inserted", "rows": n, "rss_mb": round(proc.memory_info().rss / 2**20, 1),
                      "duckdb_mb": duck_mb()}
            if trace:
                heap, state["heap"] = _py_heap(state["heap"])
                sample.update(heap)
            samples.append(sample)
        return n

    DuckDBWarehouse.connect = connect  # type: ignore[method-assign]
    bronze.prepare_batches = prepare
    Warehouse.replace_rows = replace  # type: ignore[method-assign]
    if insert == "replacement_scan":
        DuckDBWarehouse._insert_df = _insert_df_replacement_scan  # type: ignore[method-assign]
    th = threading.Thread(target=sampler, daemon=True)
    try:
        with tempfile.TemporaryDirectory(prefix="rp-bench-ga4mem-") as tmp:
            s = settings_for(Path(tmp), "duckdb", data_dir=data_dir)
            init_warehouse(s)
            state["peak"] = proc.memory_info().rss
            th.start()
            began = time.perf_counter()
            reports = load_source(s, "ga4", Interval.for_dates(first, last))
            seconds = time.perf_counter() - began
            import gc

            after = {"rss_after_commit_mb": round(proc.memory_info().rss / 2**20, 1)}
            gc.collect()
            after["rss_after_gc_mb"] = round(proc.memory_info().rss / 2**20, 1)
            if trace:
                after.update(_py_heap(None)[0])
    finally:
        state["stop"] = True
        DuckDBWarehouse.connect = orig_connect  # type: ignore[method-assign]
        bronze.prepare_batches = orig_prepare
        Warehouse.replace_rows = orig_replace  # type: ignore[method-assign]
        DuckDBWarehouse._insert_df = orig_insert  # type: ignore[method-assign]
    return {
        "memory_limit": memory_limit or "DuckDB default (80% of RAM)",
        "insert": "con.register (as shipped)" if insert == "register" else "replacement scan (candidate fix)",
        "group_rows": bronze.GROUP_ROWS,
        "batches": len(reports), "loaded": sum(r["loaded"] if isinstance(r, dict) else r.loaded for r in reports),
        "seconds": round(seconds, 2),
        "peak_rss_mb": round(state["peak"] / 2**20, 1),
        "max_duckdb_mb": max((x["duckdb_mb"] or 0) for x in samples) if samples else None,
        "after_load": after,
        "samples": samples,
    }


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m bench.ga4_load_memory")
    ap.add_argument("--landing", type=Path, required=True, help="the data dir of a kept bench run (holds landing/)")
    ap.add_argument("--memory-limit", action="append", default=None,
                    help="DuckDB memory_limit for the loading connection; repeat to compare (use 'default')")
    ap.add_argument("--size", default="medium", help="the world the run used (its period = the load's period)")
    ap.add_argument("--seed", type=int, default=42)
    ap.add_argument("--name", default="ga4_load_memory")
    ap.add_argument("--insert", choices=["register", "replacement_scan"], default="register",
                    help="replacement_scan: try the candidate fix of DuckDBWarehouse._insert_df")
    ap.add_argument("--trace", action="store_true", help="also count live Python objects by type after each group")
    args = ap.parse_args(argv)
    from retailpulse.settings import load_settings

    meta = json.loads((load_settings().sandbox_path / f"{args.size}-{args.seed}" / "world.json").read_text())
    # the pipeline bench's full period: the world's first day .. the day before its last
    first = dt.date.fromisoformat(meta["start"])
    last = dt.date.fromisoformat(meta["end"]) - dt.timedelta(days=1)
    load_at_start = machine()["load_avg"]
    runs = []
    for lim in args.memory_limit or ["default"]:
        r = run(args.landing.resolve(), None if lim == "default" else lim, first, last, args.trace, args.insert)
        print(f"  memory_limit {r['memory_limit']}: {r['seconds']} s, peak RSS {r['peak_rss_mb']} MB, "
              f"DuckDB buffers up to {r['max_duckdb_mb']} MB", flush=True)
        runs.append(r)
    write_result(args.name, {"benchmark": "ga4_load_memory", "recorded_at": now(),
                             "machine": {**machine(), "load_avg_at_start": load_at_start},
                             "landing": str(args.landing), "size": args.size, "period": [str(first), str(last)],
                             "runs": runs})
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
