"""Dashboard render time per page against a serving copy (``python -m bench.dashboard_render``).

Each page runs in-process through Streamlit's AppTest with the app's default filters (the last 28
days with data), exactly what ``streamlit run`` executes for a page view, minus the browser's
drawing. ``cold`` = first view after a new publication (empty query cache), ``warm`` = the same
view again (cached queries). Median of ``--repeat`` runs. Results are appended (by label) to
``bench/results/dashboard_render.json``.

``--scale N`` first builds a copy of the serving file with every gold table replicated N times
(string ``*_id`` columns suffixed per copy, so customers, orders and sessions are N times as
many; daily aggregates get N rows per key, which the pages sum): a stand-in for a bigger world's
gold when running that world's pipeline is too slow.

    python -m bench.dashboard_render --serving-dir warehouse/serving --label small-demo
    python -m bench.dashboard_render --serving-dir warehouse/serving --label scaled-x33 --scale 33
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import platform
import statistics
import tempfile
import time
from pathlib import Path
from typing import Any

RESULTS = Path(__file__).resolve().parent / "results" / "dashboard_render.json"
TARGET_SECONDS = 2.0


def page_script(slug: str) -> None:
    import datetime as dt

    from dashboard import data
    from dashboard.pages import PAGES

    fn = {s: f for s, _, _, f in PAGES}[slug]
    bounds = data.data_bounds()
    lo, hi = bounds if bounds is not None else (dt.date.today(), dt.date.today())
    fn(data.Filters(start=max(lo, hi - dt.timedelta(days=27)), end=hi))


def scaled_copy(src: Path, dest_dir: Path, factor: int) -> Path:
    """The serving file with every gold table replicated ``factor`` times (ids suffixed)."""
    import duckdb

    dest_dir.mkdir(parents=True, exist_ok=True)
    dest = dest_dir / src.name
    con = duckdb.connect(str(dest))
    try:
        con.execute(f"attach '{src}' as s (read_only)")
        con.execute("create schema if not exists gold")
        tables = [r[0] for r in con.execute(
            "select table_name from information_schema.tables where table_catalog = 's' and table_schema = 'gold'").fetchall()]
        for t in tables:
            cols = con.execute("select column_name, data_type from information_schema.columns where table_catalog = 's' "
                               "and table_schema = 'gold' and table_name = ? order by ordinal_position", [t]).fetchall()
            sel = ", ".join(f"\"{c}\" || '~' || r.__copy::varchar as \"{c}\"" if c.endswith("_id") and ty == "VARCHAR" else f'"{c}"'
                            for c, ty in cols)
            con.execute(f'create table gold."{t}" as select {sel} from s.gold."{t}", range({int(factor)}) r(__copy)')
        con.execute("checkpoint")
    finally:
        con.close()
    return dest


def measure(serving_dir: Path, repeat: int) -> dict[str, Any]:
    import streamlit as st
    from streamlit.testing.v1 import AppTest

    from dashboard.pages import PAGES

    os.environ["RETAILPULSE_SERVING_DIR"] = str(serving_dir)
    pages: dict[str, Any] = {}
    for slug, *_ in PAGES:
        cold, warm, charts = [], [], 0
        for _ in range(repeat):
            st.cache_data.clear()
            st.cache_resource.clear()
            for bucket in (cold, warm):
                began = time.perf_counter()
                at = AppTest.from_function(page_script, args=(slug,), default_timeout=120).run()
                bucket.append(time.perf_counter() - began)
                if at.exception:
                    raise RuntimeError(f"{slug}: {[e.value for e in at.exception]}")
                charts = len(at.get("vega_lite_chart"))
        pages[slug] = {"cold_seconds": round(statistics.median(cold), 3), "warm_seconds": round(statistics.median(warm), 3),
                       "charts": charts}
    return pages


def gold_rows(path: Path) -> dict[str, int]:
    import duckdb

    con = duckdb.connect(str(path), read_only=True)
    try:
        names = [r[0] for r in con.execute(
            "select table_name from information_schema.tables where table_schema = 'gold' order by 1").fetchall()]
        return {n: int(con.execute(f'select count(*) from gold."{n}"').fetchone()[0]) for n in names}
    finally:
        con.close()


def main(argv: list[str] | None = None) -> dict[str, Any]:
    from retailpulse.settings import load_settings

    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--serving-dir", type=Path, default=None, help="default: the configured serving dir")
    ap.add_argument("--label", required=True)
    ap.add_argument("--scale", type=int, default=1)
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--note", default="")
    args = ap.parse_args(argv)
    serving_dir = (args.serving_dir or load_settings().serving_path).resolve()
    src = serving_dir / "retailpulse_serving.duckdb"
    if not src.exists():
        raise SystemExit(f"no serving copy at {src}: run `make run` first")
    with tempfile.TemporaryDirectory(prefix="dash_bench_") as tmp:
        target = serving_dir
        if args.scale > 1:
            began = time.perf_counter()
            scaled_copy(src, Path(tmp), args.scale)
            print(f"scaled copy x{args.scale} built in {time.perf_counter() - began:.1f}s")
            target = Path(tmp)
        rows = gold_rows(target / src.name)
        pages = measure(target, args.repeat)
    worst = max(max(p["cold_seconds"], p["warm_seconds"]) for p in pages.values())
    result = {
        "label": args.label, "serving_copy": str(src), "scale": args.scale, "repeat": args.repeat, "note": args.note,
        "recorded_at": dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"),
        "machine": {"cpus": os.cpu_count(), "python": platform.python_version(),
                    "load_average": [round(x, 2) for x in os.getloadavg()]},
        "gold_rows": rows, "pages": pages, "target_seconds": TARGET_SECONDS, "max_seconds": worst,
        "all_pages_under_target": worst < TARGET_SECONDS,
    }
    doc = json.loads(RESULTS.read_text()) if RESULTS.exists() else {"benchmark": "dashboard_render", "runs": []}
    doc["runs"] = [r for r in doc["runs"] if r["label"] != args.label] + [result]
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    RESULTS.write_text(json.dumps(doc, indent=2) + "\n")
    for slug, p in pages.items():
        print(f"{slug:14s} cold {p['cold_seconds']:6.2f}s  warm {p['warm_seconds']:6.2f}s  charts {p['charts']}")
    print(f"max {worst:.2f}s (target {TARGET_SECONDS}s) -> {RESULTS}")
    return result


if __name__ == "__main__":
    main()
