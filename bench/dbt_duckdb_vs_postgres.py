"""dbt build on DuckDB against the same dbt project on Postgres, same bronze, one run.

The bronze of a sandbox world as of its end (every table dbt reads, shaped like the loader's
output: ``tests/dbt_fixtures.py``, the same data ``tests/test_dbt_postgres.py`` builds on both
engines) is loaded into a private DuckDB warehouse and into Postgres (schemas with a unique
prefix, dropped afterwards); then ``dbt build --full-refresh`` (models, snapshot, unit and data
tests) runs on each, alternating engines ``--repeat`` times. The ratio is Postgres / DuckDB of
the median build time. Bronze loading is timed separately and is not part of the ratio.

    python -m bench.dbt_duckdb_vs_postgres [--size small] [--repeat 1]
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import uuid
from pathlib import Path
from typing import Any

from bench._common import drop_pg_schemas, machine, now, postgres_dsn, settings_for, timed, world_bronze, write_result


def run(size: str, seed: int, repeat: int, threads: int | None) -> dict[str, Any]:
    from retailpulse.dbt_runner import release_dbt_duckdb
    from retailpulse.pipeline import stage_dbt
    from tests.dbt_fixtures import load_bronze

    load_at_start = machine()["load_avg"]
    (world, frames), frames_s, frames_mb = timed(world_bronze, size, seed)
    dsn = postgres_dsn()
    prefix = f"bench{uuid.uuid4().hex[:8]}_"
    extra = {} if threads is None else {"dbt_threads": threads}
    out: dict[str, Any] = {"duckdb": {"build_seconds": []}, "postgres": {"build_seconds": []}}
    with tempfile.TemporaryDirectory(prefix="rp-bench-dbtpg-") as tmp:
        duck = settings_for(Path(tmp) / "duck", "duckdb", **extra)
        pg = settings_for(Path(tmp) / "pg", "postgres", postgres_dsn=dsn, postgres_schema_prefix=prefix, **extra)
        try:
            for name, s in (("duckdb", duck), ("postgres", pg)):
                counts, secs, _ = timed(load_bronze, s, world, frames=frames)
                out[name]["bronze_load_seconds"] = secs
                out[name]["bronze_rows"] = sum(counts.values())
                release_dbt_duckdb()
            for i in range(repeat):
                for name, s in (("duckdb", duck), ("postgres", pg)):
                    summary, secs, mb = timed(stage_dbt, s, full_refresh=True)
                    release_dbt_duckdb()
                    out[name]["build_seconds"].append(secs)
                    out[name]["nodes"] = summary["nodes"]
                    out[name]["peak_rss_mb"] = max(mb, out[name].get("peak_rss_mb", 0))
                    print(f"  dbt build on {name:<8} (run {i + 1}/{repeat}) {secs:8.2f} s", flush=True)
        finally:
            drop_pg_schemas(dsn, prefix)
    for name in ("duckdb", "postgres"):
        out[name]["median_build_seconds"] = round(statistics.median(out[name]["build_seconds"]), 3)
    assert out["duckdb"]["nodes"] == out["postgres"]["nodes"], (out["duckdb"]["nodes"], out["postgres"]["nodes"])
    ratio = out["postgres"]["median_build_seconds"] / out["duckdb"]["median_build_seconds"]
    return {
        "benchmark": "dbt_duckdb_vs_postgres",
        "recorded_at": now(),
        "machine": {**machine(), "load_avg_at_start": load_at_start},
        "size": size, "seed": seed, "repeat": repeat,
        "dbt_threads": duck.dbt_threads,
        "bronze_frames_seconds": frames_s,
        "engines": out,
        "postgres_over_duckdb": round(ratio, 2),
        "note": "dbt build --full-refresh of the whole project (models, snapshot, unit + data tests), "
                "same bronze on both engines, alternating engines within one process; Postgres is the "
                "local server on 127.0.0.1 (default configuration).",
    }


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m bench.dbt_duckdb_vs_postgres")
    ap.add_argument("--size", default="small", choices=["small", "medium"])
    ap.add_argument("--seed", type=int, default=42)
    ap.add_argument("--repeat", type=int, default=1)
    ap.add_argument("--threads", type=int, default=None, help="dbt threads (default: the setting, 2)")
    args = ap.parse_args(argv)
    result = run(args.size, args.seed, args.repeat, args.threads)
    print(f"  postgres / duckdb = {result['postgres_over_duckdb']}", flush=True)
    write_result("dbt_duckdb_vs_postgres", result)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
