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
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import psutil

from bench._common import LOAD_WORKER, Peak, machine_calibration

RESULTS = Path(__file__).resolve().parent / "results"
# focused benches run by --others (each a module in bench/ with main(argv) writing bench/results/<name>.json)
OTHER_BENCHES = ("dbt_duckdb_vs_postgres", "sessionization", "ingestion_clients")


def timed(results: list[dict[str, Any]], name: str, fn: Callable[[], Any], **extra: Any) -> Any:
    with Peak(children=LOAD_WORKER) as mem:  # not the sandbox process nor the idle task workers
        began = time.perf_counter()
        out = fn()
        seconds = time.perf_counter() - began
    results.append({"stage": name, "seconds": round(seconds, 2), "peak_rss_mb": round(mem.peak / 2**20, 1),
                    "load_avg_1m_after": round(os.getloadavg()[0], 2), **extra})
    print(f"  {name:<28} {seconds:8.2f} s   peak {mem.peak / 2**20:8.1f} MB", flush=True)
    return out


def generate_world_apart(stages: list[dict[str, Any]], sandbox_path: Path, size: str, seed: int) -> Path:
    """The world (generated when missing, see sandbox.world.ensure_world) in a child process:
    its peak memory is the generator's own, and none of it stays in this process for the
    stages after (generating the large world in-process left 4 GB behind here)."""
    code = ("import sys; from sandbox.world import ensure_world; "
            "print(ensure_world(sys.argv[1], sys.argv[2], int(sys.argv[3])))")
    began = time.perf_counter()
    proc = subprocess.Popen([sys.executable, "-c", code, str(sandbox_path), size, str(seed)],
                            stdout=subprocess.PIPE, text=True)
    with Peak(pid=proc.pid) as mem:
        out, _ = proc.communicate()
    seconds = time.perf_counter() - began
    if proc.returncode != 0:
        raise RuntimeError(f"generating the {size} world failed (exit {proc.returncode}); its error is above")
    stages.append({"stage": "world generation", "seconds": round(seconds, 2), "peak_rss_mb": round(mem.peak / 2**20, 1),
                   "load_avg_1m_after": round(os.getloadavg()[0], 2), "process": "own process"})
    print(f"  {'world generation':<28} {seconds:8.2f} s   peak {mem.peak / 2**20:8.1f} MB (own process)", flush=True)
    return Path(out.strip().splitlines()[-1])


def _env(root: Path, server: Any) -> dict[str, str]:
    return {
        "RETAILPULSE_DATA_DIR": str(root / "data"),
        "RETAILPULSE_WAREHOUSE_PATH": str(root / "warehouse" / "retailpulse.duckdb"),
        "RETAILPULSE_SERVING_DIR": str(root / "warehouse" / "serving"),
        **server.env(),
    }


class DbtStage:
    """dbt build for the bench. When a build fails on data tests (a product bug at this size),
    the failure is recorded (``failures``) and the build is repeated excluding the failed nodes,
    and every later build of the run excludes them too, so the remaining stages are still
    measured; the results JSON and RESULTS.md say so."""

    def __init__(self) -> None:
        self.exclude: list[str] = []
        self.failures: list[dict[str, Any]] = []

    def __call__(self, stages: list[dict[str, Any]], label: str, settings: Any, full_refresh: bool) -> float:
        import re

        from retailpulse import pipeline
        from retailpulse.dbt_runner import DbtError, run_dbt

        if not self.exclude:
            began = time.perf_counter()
            try:
                timed(stages, label, lambda: pipeline.stage_dbt(settings, full_refresh=full_refresh, before_ml=True))
                return 0.0
            except DbtError as exc:
                failed_s = time.perf_counter() - began
                names = re.findall(r"(\w+) \((?:fail|error|runtime error)", str(exc))
                self.failures.append({"stage": label, "seconds": round(failed_s, 2), "error": str(exc),
                                      "failed_nodes": names})
                print(f"  {label} FAILED after {failed_s:.1f} s: {exc}", flush=True)
                if not names:
                    raise
                self.exclude = names
        else:
            failed_s = 0.0
        args = [*pipeline.dbt_build_args(full_refresh, before_ml=True), *self.exclude]
        pipeline.init_warehouse(settings)
        timed(stages, f"{label} excluding {', '.join(self.exclude)}", lambda: run_dbt(settings, args),
              excluded_after_failure=list(self.exclude))
        return failed_s


def worker_pool(n: int) -> Any:
    """``n`` worker processes (spawned, imports done) for the concurrent schedule; they take
    the environment as it is now."""
    import multiprocessing
    from concurrent.futures import ProcessPoolExecutor

    from bench.stage_task import warm

    pool = ProcessPoolExecutor(max_workers=n, mp_context=multiprocessing.get_context("spawn"))
    pids = {f.result() for f in [pool.submit(warm, 2.0) for _ in range(n)]}
    print(f"  {n} warm worker processes ({len(pids)} distinct)", flush=True)
    return pool


def _task(results: list[dict[str, Any]], name: str, pool: Any, stage: str, source: str, interval: Any) -> None:
    """One extract or validate+load run by a warm worker process; the wall time is measured
    here, the peak RSS is the worker's."""
    from bench.stage_task import run_stage

    last = (interval.end - dt.timedelta(microseconds=1)).date()
    began = time.perf_counter()
    out = pool.submit(run_stage, stage, source, interval.start.date().isoformat(), last.isoformat()).result()
    seconds = time.perf_counter() - began
    results.append({"stage": name, "seconds": round(seconds, 2), "peak_rss_mb": out["peak_rss_mb"],
                    "load_avg_1m_after": round(os.getloadavg()[0], 2), "process": "worker"})
    print(f"  {name:<28} {seconds:8.2f} s   peak {out['peak_rss_mb']:8.1f} MB (worker {out['pid']})", flush=True)


def ingest(stages: list[dict[str, Any]], prefix: str, settings: Any, sources: list[str], interval: Any,
           pool: Any = None) -> None:
    """Extract and validate+load every source for ``interval``.

    With a worker ``pool`` (the default schedule, shaped like retailpulse_daily under a
    scheduler): one thread per source submits its extract, then its load, to the warm worker
    processes; extracts overlap (they only write landing files, like the DAG's unpooled
    extract tasks) and loads take one lock (the one-slot warehouse pool), in the order their
    extracts finish. Without: every extract, then every load, one at a time in this process
    (what ``dag.test`` does)."""
    import threading
    from concurrent.futures import ThreadPoolExecutor

    from retailpulse import pipeline

    if pool is None:
        for source in sources:
            timed(stages, f"{prefix}extract {source}", lambda s=source: pipeline.stage_extract(settings, s, interval))
        for source in sources:
            timed(stages, f"{prefix}validate+load {source}", lambda s=source: pipeline.stage_load(settings, s, interval))
        return
    one_slot = threading.Lock()

    def chain(source: str) -> None:
        _task(stages, f"{prefix}extract {source}", pool, "extract", source, interval)
        with one_slot:
            _task(stages, f"{prefix}validate+load {source}", pool, "load", source, interval)

    with ThreadPoolExecutor(max_workers=len(sources) or 1, thread_name_prefix="bench-source") as ex:
        for f in [ex.submit(chain, s) for s in sources]:
            f.result()


def build_stages(stages: list[dict[str, Any]], prefix: str, settings: Any, interval: Any, dbt: DbtStage,
                 full_refresh: bool) -> float:
    """dbt build, ML scoring (as of the interval's last day) and publish, timed; returns the
    seconds lost to a failed dbt attempt (see :class:`DbtStage`), to leave out of the total."""
    from retailpulse import pipeline

    label = "dbt build (full refresh)" if full_refresh else "dbt build"
    failed = dbt(stages, f"{prefix}{label}", settings, full_refresh)
    timed(stages, f"{prefix}ml scoring", lambda: pipeline.stage_ml(settings, interval))
    timed(stages, f"{prefix}publish", lambda: pipeline.stage_publish(settings))
    return failed


def incremental_day(server: Any, settings: Any, sources: list[str], end: dt.date, pool: Any,
                    dbt: DbtStage) -> tuple[list[dict[str, Any]], float]:
    """One incremental day after the full refresh: the sandbox clock moves one day, then the
    day's ingest, dbt build (not a full refresh), ML and publish. Returns its stages and seconds."""
    from ingestion.interval import Interval

    server.set_clock(dt.datetime.combine(end + dt.timedelta(days=1), dt.time(0), tzinfo=dt.timezone.utc))
    day = Interval.for_dates(end, end)
    incr: list[dict[str, Any]] = []
    began = time.perf_counter()
    ingest(incr, "incr ", settings, sources, day, pool)
    failed = build_stages(incr, "incr ", settings, day, dbt, full_refresh=False)
    seconds = time.perf_counter() - began - failed
    print(f"  {'incremental day (all)':<28} {seconds:8.2f} s", flush=True)
    return incr, seconds


STATE_DIRS = ("data", "warehouse")  # what a run changes under the work directory (see _env)


def repeated_incremental_day(root: Path, repeats: int, day: Callable[[], tuple[list[dict[str, Any]], float]],
                             ) -> tuple[list[dict[str, Any]], float, list[dict[str, Any]]]:
    """``day()`` ``repeats`` times from the same state: the warehouse and data directories under
    ``root`` are copied aside before the first run and put back before each further one (outside
    the timed day, then flushed to disk), so every run does the same work. Returns the stages and
    seconds of the median run, and every run's seconds and stages (a single run on a shared 2-core
    VM varies by 10-20%)."""
    import shutil

    saved = root / "before-incremental-day"
    runs: list[dict[str, Any]] = []
    try:
        if repeats > 1:
            shutil.rmtree(saved, ignore_errors=True)
            saved.mkdir()
            for name in STATE_DIRS:
                shutil.copytree(root / name, saved / name, symlinks=True)
        for i in range(repeats):
            if i:
                for name in STATE_DIRS:
                    shutil.rmtree(root / name)
                    shutil.copytree(saved / name, root / name, symlinks=True)
                print(f"  incremental day, run {i + 1} of {repeats} (state restored)", flush=True)
            # the copies (and the full refresh before the first run) leave GBs of dirty pages that
            # the kernel would write back during the timed day: every run starts with them on disk
            os.sync()
            stages, seconds = day()
            runs.append({"seconds": round(seconds, 2), "stages": stages})
    finally:
        shutil.rmtree(saved, ignore_errors=True)
    median = sorted(runs, key=lambda r: r["seconds"])[(len(runs) - 1) // 2]
    return median["stages"], median["seconds"], runs


def machine_info(load_at_start: list[float], calibration: dict[str, Any]) -> dict[str, Any]:
    return {"cpus": os.cpu_count(), "python": platform.python_version(),
            "memory_gb": round(psutil.virtual_memory().total / 2**30, 1),
            "load_avg_at_start": load_at_start, "calibration": calibration,
            "load_avg_at_end": [round(x, 2) for x in os.getloadavg()]}


def run(size: str, seed: int, skip_dag: bool, workdir: Path, concurrent: bool = True,
        incremental_repeats: int = 1) -> dict[str, Any]:
    from ingestion.connectors import SOURCES, is_configured
    from ingestion.interval import Interval
    from retailpulse import airflow_setup, pipeline
    from retailpulse.settings import load_settings
    from bench.sandbox_process import SandboxProcess
    from sandbox.world import World

    stages: list[dict[str, Any]] = []
    base = load_settings()
    load_at_start = [round(x, 2) for x in os.getloadavg()]
    calibration = machine_calibration()
    world_cached = (Path(base.sandbox_path) / f"{size}-{seed}" / "world.json").exists()
    world_path = generate_world_apart(stages, base.sandbox_path, size, seed)
    meta = World.load(world_path).meta
    start, end = dt.date.fromisoformat(meta["start"]), dt.date.fromisoformat(meta["end"])
    # the sources are remote services: the sandbox serves them from its own process (its peak
    # memory is recorded apart); moving its clock writes the GA4 export files up to "now" (sandbox side)
    server = timed(stages, "sandbox start", lambda: SandboxProcess(size, seed, workdir / "ga4").start())
    timed(stages, "ga4 export files", lambda: (
        server.wait_ga4(), server.set_clock(dt.datetime.combine(end, dt.time(0), tzinfo=dt.timezone.utc))))
    saved = dict(os.environ)
    pool = None
    try:
        os.environ.update(_env(workdir / "direct", server))
        settings = load_settings()
        full = Interval.for_dates(start, end - dt.timedelta(days=1))
        pipeline.init_warehouse(settings)
        sources = [s for s in SOURCES if is_configured(s, settings)]
        pool = worker_pool(len(sources)) if concurrent else None
        direct_began = time.perf_counter()
        ingest(stages, "", settings, sources, full, pool)
        dbt = DbtStage()
        failed_attempts = build_stages(stages, "", settings, full, dbt, full_refresh=True)
        direct_seconds = time.perf_counter() - direct_began - failed_attempts
        incr_stages, incremental_seconds, incremental_runs = repeated_incremental_day(
            workdir / "direct", incremental_repeats,
            lambda: incremental_day(server, settings, sources, end, pool, dbt))

        dag_seconds = None
        if not skip_dag:
            server.set_clock(dt.datetime.combine(end, dt.time(0), tzinfo=dt.timezone.utc))
            os.environ.update(_env(workdir / "dag", server))
            dag_settings = load_settings()
            airflow_setup.init(dag_settings)
            began = time.perf_counter()
            airflow_setup.run_daily(dag_settings, start, end - dt.timedelta(days=1))
            dag_seconds = time.perf_counter() - began
            print(f"  {'same period through the DAG':<28} {dag_seconds:8.2f} s", flush=True)
        counts = pipeline.gold_counts(settings)
    finally:
        if pool is not None:
            pool.shutdown()
        os.environ.clear()
        os.environ.update(saved)
        server.stop()
    return {
        "benchmark": "pipeline",
        "size": size,
        "seed": seed,
        "recorded_at": dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"),
        "machine": machine_info(load_at_start, calibration),
        "world_was_cached": world_cached,
        "schedule": "concurrent" if concurrent else "sequential",
        "sandbox": "own process",
        "sandbox_peak_rss_mb": round(server.peak_rss / 2**20, 1),
        "world": meta.get("counts", {}),
        "stages": stages,
        "direct_pipeline_seconds": round(direct_seconds, 2),
        "dbt_failures": dbt.failures,
        "dbt_excluded_nodes": dbt.exclude,
        "incremental_day_seconds": round(incremental_seconds, 2),
        "incremental_stages": incr_stages,
        # every run of the incremental day from the same state; the day above is their median
        "incremental_runs": [{"seconds": r["seconds"], "stages": r["stages"]} for r in incremental_runs],
        "incremental_share_of_full": round(incremental_seconds / direct_seconds, 3),
        "dag_seconds": round(dag_seconds, 2) if dag_seconds else None,
        "orchestration_overhead_seconds": round(dag_seconds - direct_seconds, 2) if dag_seconds else None,
        "gold_rows": counts,
    }


def write_markdown() -> Path:
    from bench.report import write_markdown as write

    return write()


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m bench.run")
    ap.add_argument("--size", action="append", choices=["small", "medium", "large"],
                    help="world size to measure; repeat for several (default: small)")
    ap.add_argument("--sizes", help="comma-separated sizes, e.g. small,medium (added to --size)")
    ap.add_argument("--seed", type=int, default=42)
    ap.add_argument("--skip-dag", action="store_true", help="do not measure the DAG run (orchestration overhead)")
    ap.add_argument("--skip-dag-above", choices=["small", "medium"],
                    help="measure the DAG run only up to this size (e.g. small: DAG at small, not at medium)")
    ap.add_argument("--others", action="store_true",
                    help="also run the focused benches (dbt DuckDB vs Postgres, sessionization, ingestion clients)")
    ap.add_argument("--sequential", action="store_true",
                    help="extract and load the sources one after another (default: extracts overlap, loads one "
                         "at a time, as the DAG runs under a scheduler)")
    ap.add_argument("--workdir", type=Path, help="keep the run's warehouse/landing under DIR/<size> (default: a temp dir)")
    ap.add_argument("--incremental-repeats", type=int, default=1, metavar="N",
                    help="run the incremental day N times from the same state and report the median (default 1; "
                         "the copy of the state takes disk space: about 3 GB at medium)")
    ap.add_argument("--markdown-only", action="store_true", help="only regenerate bench/RESULTS.md from the JSON")
    args = ap.parse_args(argv)
    order = ["small", "medium", "large"]
    sizes = list(args.size or [])
    for s in (args.sizes or "").split(","):
        if s.strip():
            if s.strip() not in order:
                ap.error(f"unknown size {s.strip()!r}")
            sizes.append(s.strip())
    sizes = sorted(set(sizes or ([] if args.markdown_only or args.others else ["small"])), key=order.index)
    if args.markdown_only:
        print(f"wrote {write_markdown()}")
        return 0
    from retailpulse.airflow_setup import apply_env
    from retailpulse.settings import load_settings

    apply_env(load_settings())
    RESULTS.mkdir(exist_ok=True)
    for size in sizes:
        skip_dag = args.skip_dag or (args.skip_dag_above is not None
                                     and order.index(size) > order.index(args.skip_dag_above))
        print(f"benchmark: {size} world, seed {args.seed}{' (no DAG run)' if skip_dag else ''}", flush=True)
        if args.workdir:
            wd = args.workdir.resolve() / size
            if wd.exists():
                import shutil

                shutil.rmtree(wd)
            wd.mkdir(parents=True)
            result = run(size, args.seed, skip_dag, wd, not args.sequential, args.incremental_repeats)
        else:
            with tempfile.TemporaryDirectory(prefix=f"rp-bench-{size}-") as tmp:
                result = run(size, args.seed, skip_dag, Path(tmp), not args.sequential, args.incremental_repeats)
        out = RESULTS / f"pipeline_{size}.json"
        out.write_text(json.dumps(result, indent=2) + "\n")
        print(f"wrote {out}", flush=True)
        write_markdown()
    if args.others:
        import importlib
        for mod in OTHER_BENCHES:
            print(f"benchmark: {mod}", flush=True)
            importlib.import_module(f"bench.{mod}").main([])
    md = write_markdown()
    print(f"wrote {md}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
