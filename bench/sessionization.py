"""Sessionization against a bare sort of the same events: how close it runs to the engine's limit.

A private DuckDB warehouse gets the bronze of a sandbox world (``tests/dbt_fixtures.py``) and
dbt builds the GA4 chain (``+int_ga4__sessions``, full refresh). Then, on the same DuckDB file and
the same input (the ``stg_ga4__events`` view over bronze), each statement is timed ``--repeat``
times (median):

- scan: ``create temp table as select * from stg_ga4__events`` (reading + typing the events);
- bare sort: the same ``... order by user_pseudo_id, event_at`` (event_timestamp typed as a UTC timestamp);
- sessionization: dbt's compiled full-refresh SQL of ``int_ga4__events`` (session ids, inactivity
  sessions for events without ``ga_session_id``) and of ``int_ga4__sessions`` (one row per
  session, first-touch source, funnel flags), as ``create temp table as``.

The ratio sessionization / bare sort says how far the models are from a sort of the same rows.
dbt's own per-model execution times of the build are recorded too.

    python -m bench.sessionization [--size small] [--repeat 3]
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from pathlib import Path
from typing import Any

from bench._common import machine, now, settings_for, timed, world_bronze, write_result

MODELS = ("int_ga4__events", "int_ga4__sessions")


def _compiled(target: Path, model: str) -> str:
    hits = list((target / "compiled").rglob(f"{model}.sql"))
    if len(hits) != 1:
        raise RuntimeError(f"compiled SQL of {model} not found under {target} ({hits})")
    return hits[0].read_text()


def run(size: str, seed: int, repeat: int, run_dir: Path | None = None) -> dict[str, Any]:
    import duckdb

    from retailpulse.dbt_runner import release_dbt_duckdb, run_dbt
    from tests.dbt_fixtures import load_bronze

    load_at_start = machine()["load_avg"]
    with tempfile.TemporaryDirectory(prefix="rp-bench-sess-") as tmp:
        target = Path(tmp) / "dbt_target"
        if run_dir is None:
            world, frames = world_bronze(size, seed)
            s = settings_for(Path(tmp), "duckdb")
            load_bronze(s, world, frames=frames)
            del frames
            release_dbt_duckdb()
            res, build_s, _ = timed(run_dbt, s, ["run", "--full-refresh", "--select", "+int_ga4__sessions",
                                                 "--target-path", str(target)])
            dbt_model_seconds = {n["name"]: round(n["seconds"], 3) for n in res.nodes}
        else:  # the warehouse a pipeline bench run kept (--workdir): real bronze, models built
            s = settings_for(run_dir, "duckdb")
            run_dbt(s, ["compile", "--full-refresh", "--select", *MODELS, "--target-path", str(target)])
            build_s, dbt_model_seconds = None, {}
        sql = {m: _compiled(target, m) for m in MODELS}
        con = duckdb.connect(str(s.warehouse_path))
        stg = con.execute("select table_schema from information_schema.tables "
                          "where table_name = 'stg_ga4__events'").fetchone()[0]
        stg = f'"{stg}"."stg_ga4__events"'
        events = con.execute(f"select count(*) from {stg}").fetchone()[0]
        sessions = con.execute("select count(*) from (" + sql["int_ga4__sessions"] + ")").fetchone()[0]
        statements = {
            "scan": f"select * from {stg}",
            "bare_sort": f"select * from {stg} order by user_pseudo_id, event_at",
            "int_ga4__events": sql["int_ga4__events"],
            "int_ga4__sessions": sql["int_ga4__sessions"],
        }
        times: dict[str, list[float]] = {k: [] for k in statements}
        for _ in range(repeat):
            for name, body in statements.items():
                began = time.perf_counter()
                con.execute(f"create or replace temp table bench_{name} as {body}")
                times[name].append(round(time.perf_counter() - began, 3))
                con.execute(f"drop table bench_{name}")
        threads = con.execute("select current_setting('threads')").fetchone()[0]
        con.close()
    med = {k: round(statistics.median(v), 3) for k, v in times.items()}
    sessionize = med["int_ga4__events"] + med["int_ga4__sessions"]
    return {
        "benchmark": "sessionization",
        "recorded_at": now(),
        "machine": {**machine(), "load_avg_at_start": load_at_start, "duckdb_threads": threads},
        "size": size, "seed": seed, "repeat": repeat,
        "events": events, "sessions": sessions,
        "seconds": times, "median_seconds": med,
        "sessionization_seconds": round(sessionize, 3),
        "sessionization_over_bare_sort": round(sessionize / med["bare_sort"], 2),
        "sessions_model_over_bare_sort": round(med["int_ga4__sessions"] / med["bare_sort"], 2),
        "bare_sort_events_per_second": round(events / med["bare_sort"]),
        "sessionization_events_per_second": round(events / sessionize),
        "dbt_ga4_chain_run_seconds": build_s,
        "source": "bronze from tests/dbt_fixtures.py" if run_dir is None else f"warehouse of the kept run {run_dir}",
        "dbt_model_seconds": dbt_model_seconds,
    }


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m bench.sessionization")
    ap.add_argument("--size", default="small", choices=["small", "medium"])
    ap.add_argument("--seed", type=int, default=42)
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--run-dir", type=Path, help="use the warehouse a `bench.run --workdir` run kept (DIR/<size>/direct)")
    args = ap.parse_args(argv)
    result = run(args.size, args.seed, args.repeat, args.run_dir.resolve() if args.run_dir else None)
    print(f"  events {result['events']}: bare sort {result['median_seconds']['bare_sort']} s, sessionization "
          f"{result['sessionization_seconds']} s (x{result['sessionization_over_bare_sort']})", flush=True)
    write_result("sessionization" if args.size == "small" else f"sessionization_{args.size}", result)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
