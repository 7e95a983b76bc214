"""Pipeline benchmark: stage times and peak memory at a world size (``make bench``).

Each stage is called directly (the functions the DAG tasks call), then the same period is run
through the retailpulse_daily DAG (dag.test) into a second warehouse, so the orchestration
overhead is the difference. An incremental day (the last day of the world, clock moved) is
measured against the full refresh. Results: ``bench/results/pipeline_<size>.json`` and the
table in ``bench/RESULTS.md``.

    python -m bench.run --size small
    python -m bench.run --size medium --skip-dag
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import platform
import tempfile
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import psutil

RESULTS = Path(__file__).resolve().parent / "results"


class PeakRSS:
    """Samples this process's resident memory every 50 ms while a stage runs."""

    def __init__(self) -> None:
        self.proc = psutil.Process()
        self.peak = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        while not self._stop.is_set():
            self.peak = max(self.peak, self.proc.memory_info().rss)
            time.sleep(0.05)

    def __enter__(self) -> PeakRSS:
        self.peak = self.proc.memory_info().rss
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()


def timed(results: list[dict[str, Any]], name: str, fn: Callable[[], Any], **extra: Any) -> Any:
    with PeakRSS() as mem:
        began = time.perf_counter()
        out = fn()
        seconds = time.perf_counter() - began
    results.append({"stage": name, "seconds": round(seconds, 2), "peak_rss_mb": round(mem.peak / 2**20, 1), **extra})
    print(f"  {name:<28} {seconds:8.2f} s   peak {mem.peak / 2**20:8.1f} MB", flush=True)
    return out


def _env(root: Path, server: Any) -> dict[str, str]:
    return {
        "RETAILPULSE_DATA_DIR": str(root / "data"),
        "RETAILPULSE_WAREHOUSE_PATH": str(root / "warehouse" / "retailpulse.duckdb"),
        "RETAILPULSE_SERVING_DIR": str(root / "warehouse" / "serving"),
        **server.env(),
    }


def run(size: str, seed: int, skip_dag: bool, workdir: Path) -> dict[str, Any]:
    from ingestion.connectors import SOURCES, is_configured
    from ingestion.interval import Interval
    from retailpulse import airflow_setup, pipeline
    from retailpulse.settings import load_settings
    from sandbox.server import SandboxServer
    from sandbox.world import World, ensure_world

    stages: list[dict[str, Any]] = []
    base = load_settings()
    world_path = timed(stages, "world generation", lambda: Path(ensure_world(base.sandbox_path, size, seed)))
    meta = World.load(world_path).meta
    start, end = dt.date.fromisoformat(meta["start"]), dt.date.fromisoformat(meta["end"])
    server = timed(stages, "sandbox start", lambda: SandboxServer(world_path, ga4_export_dir=workdir / "ga4").start())
    server.set_clock(dt.datetime.combine(end, dt.time(0), tzinfo=dt.timezone.utc))
    if hasattr(server, "wait_ga4"):
        timed(stages, "ga4 export files", server.wait_ga4)
    saved = dict(os.environ)
    try:
        os.environ.update(_env(workdir / "direct", server))
        settings = load_settings()
        full = Interval.for_dates(start, end - dt.timedelta(days=1))
        pipeline.init_warehouse(settings)
        direct_began = time.perf_counter()
        for source in SOURCES:
            if is_configured(source, settings):
                timed(stages, f"extract {source}", lambda s=source: pipeline.stage_extract(settings, s, full))
        for source in SOURCES:
            if is_configured(source, settings):
                timed(stages, f"validate+load {source}", lambda s=source: pipeline.stage_load(settings, s, full))
        timed(stages, "dbt build (full refresh)", lambda: pipeline.stage_dbt(settings, full_refresh=True))
        if hasattr(pipeline, "stage_ml"):
            timed(stages, "ml scoring", lambda: pipeline.stage_ml(settings, full))
        timed(stages, "publish", lambda: pipeline.stage_publish(settings))
        direct_seconds = time.perf_counter() - direct_began

        # one incremental day after the full refresh: the clock moves one day
        server.set_clock(dt.datetime.combine(end + dt.timedelta(days=1), dt.time(0), tzinfo=dt.timezone.utc))
        if hasattr(server, "wait_ga4"):
            server.wait_ga4()
        day = Interval.for_dates(end, end)
        incr_began = time.perf_counter()
        for source in SOURCES:
            if is_configured(source, settings):
                pipeline.stage_extract(settings, source, day)
                pipeline.stage_load(settings, source, day)
        pipeline.stage_dbt(settings)
        if hasattr(pipeline, "stage_ml"):
            pipeline.stage_ml(settings, day)
        pipeline.stage_publish(settings)
        incremental_seconds = time.perf_counter() - incr_began
        print(f"  {'incremental day (all)':<28} {incremental_seconds:8.2f} s", flush=True)

        dag_seconds = None
        if not skip_dag:
            server.set_clock(dt.datetime.combine(end, dt.time(0), tzinfo=dt.timezone.utc))
            if hasattr(server, "wait_ga4"):
                server.wait_ga4()
            os.environ.update(_env(workdir / "dag", server))
            dag_settings = load_settings()
            airflow_setup.init(dag_settings)
            began = time.perf_counter()
            airflow_setup.run_daily(dag_settings, start, end - dt.timedelta(days=1))
            dag_seconds = time.perf_counter() - began
            print(f"  {'same period through the DAG':<28} {dag_seconds:8.2f} s", flush=True)
        counts = pipeline.gold_counts(settings)
    finally:
        os.environ.clear()
        os.environ.update(saved)
        server.stop()
    return {
        "benchmark": "pipeline",
        "size": size,
        "seed": seed,
        "recorded_at": dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"),
        "machine": {"cpus": os.cpu_count(), "python": platform.python_version(),
                    "memory_gb": round(psutil.virtual_memory().total / 2**30, 1)},
        "world": meta.get("counts", {}),
        "stages": stages,
        "direct_pipeline_seconds": round(direct_seconds, 2),
        "incremental_day_seconds": round(incremental_seconds, 2),
        "incremental_share_of_full": round(incremental_seconds / direct_seconds, 3),
        "dag_seconds": round(dag_seconds, 2) if dag_seconds else None,
        "orchestration_overhead_seconds": round(dag_seconds - direct_seconds, 2) if dag_seconds else None,
        "gold_rows": counts,
    }


def write_markdown() -> Path:
    rows = []
    for path in sorted(RESULTS.glob("pipeline_*.json")):
        r = json.loads(path.read_text())
        for s in r["stages"]:
            rows.append(f"| {r['size']} | {s['stage']} | {s['seconds']:.2f} | {s['peak_rss_mb']:.0f} |")
        rows.append(f"| {r['size']} | **direct pipeline total** | {r['direct_pipeline_seconds']:.2f} | |")
        rows.append(f"| {r['size']} | incremental day | {r['incremental_day_seconds']:.2f} "
                    f"({100 * r['incremental_share_of_full']:.0f}% of full) | |")
        if r.get("dag_seconds"):
            rows.append(f"| {r['size']} | same period through the DAG | {r['dag_seconds']:.2f} "
                        f"(overhead {r['orchestration_overhead_seconds']:+.2f}) | |")
    extra = []
    for name in ("world_generation", "ml_fit"):
        p = RESULTS / f"{name}.json"
        if p.exists():
            extra.append(f"- `{p.name}`: see the JSON for details.")
    md = RESULTS.parent / "RESULTS.md"
    md.write_text(
        "# Benchmark results\n\nRecorded by `make bench` (`python -m bench.run`) on a 2-core, 24 GB machine; "
        "raw numbers in `bench/results/*.json`.\n\n"
        "| size | stage | seconds | peak RSS MB |\n| --- | --- | --- | --- |\n" + "\n".join(rows) + "\n\n"
        "The direct stages run first in a fresh process and pay one-time imports (Great Expectations, "
        "dbt, xgboost: 10-20 s); the DAG run that follows has them warm, so a negative overhead means "
        "the orchestration cost is below that noise. Peak RSS is the whole benchmark process.\n\n"
        + ("Other benchmarks:\n" + "\n".join(extra) + "\n" if extra else "")
    )
    return md


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m bench.run")
    ap.add_argument("--size", choices=["small", "medium", "large"], default="small")
    ap.add_argument("--seed", type=int, default=42)
    ap.add_argument("--skip-dag", action="store_true", help="do not measure the DAG run (orchestration overhead)")
    args = ap.parse_args(argv)
    from retailpulse.airflow_setup import apply_env
    from retailpulse.settings import load_settings

    apply_env(load_settings())
    print(f"benchmark: {args.size} world, seed {args.seed}", flush=True)
    with tempfile.TemporaryDirectory(prefix=f"rp-bench-{args.size}-") as tmp:
        result = run(args.size, args.seed, args.skip_dag, Path(tmp))
    RESULTS.mkdir(exist_ok=True)
    out = RESULTS / f"pipeline_{args.size}.json"
    out.write_text(json.dumps(result, indent=2))
    md = write_markdown()
    print(f"wrote {out} and {md}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
