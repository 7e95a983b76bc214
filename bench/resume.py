"""Finish a pipeline benchmark whose process died after its loads (``bench.run --workdir`` kept them).

The large run's first attempt was OOM-killed in the dbt build (DuckDB's default memory limit, 80%
of the machine, beside the sandbox and the load workers). Its extract and load stages had
finished into ``<workdir>/<size>/direct``; this runs the remaining stages on that warehouse (dbt
full refresh, ML, publish, then the incremental day, as ``bench.run`` does) and writes
``bench/results/pipeline_<size>.json`` with both parts: the stage lines the killed run printed
(parsed from its output, ``--log``) and the stages measured here. The JSON says which is which
(``resumed``); nothing is typed by hand.

    python -m bench.resume --size large --workdir /tmp/bench --log /tmp/bench_large.log
"""

from __future__ import annotations

import argparse
import datetime as dt
import os
import platform
import re
from pathlib import Path
from typing import Any

import psutil

from bench._common import machine_calibration, write_result
from bench.run import DbtStage, _env, build_stages, incremental_day, machine_info, timed, worker_pool, write_markdown

_STAGE = re.compile(r"^\s{2}(?P<stage>[a-z0-9_+ ()]+?)\s+(?P<s>\d+\.\d+) s\s+peak\s+(?P<mb>\d+\.\d+) MB"
                    r"(?: \(worker (?P<w>\d+)\))?\s*$")


def stages_from_log(text: str) -> list[dict[str, Any]]:
    """The stage lines ``bench.run`` printed (``  <stage>  <s> s   peak <mb> MB [(worker N)]``)."""
    out = []
    for line in text.splitlines():
        m = _STAGE.match(line)
        if m:
            st = {"stage": m["stage"].strip(), "seconds": float(m["s"]), "peak_rss_mb": float(m["mb"])}
            if m["w"]:
                st["worker_pid"] = int(m["w"])
            out.append(st)
    return out


def ingest_critical_path(stages: list[dict[str, Any]]) -> tuple[float, list[str]]:
    """The longest chain of the concurrent ingest as bench.run schedules it: a source's extract then its
    load; loads one at a time in the order they finished (so a load waits for the one before it)."""
    ext = {s["stage"].removeprefix("extract "): s["seconds"] for s in stages if s["stage"].startswith("extract ")}
    loads = [(s["stage"].removeprefix("validate+load "), s["seconds"]) for s in stages
             if s["stage"].startswith("validate+load ")]
    free_at, chain, chain_at = 0.0, [], {}
    for src, secs in loads:  # printed in the order they finished
        start = max(ext.get(src, 0.0), free_at)
        if start == ext.get(src, 0.0):
            chain_at[src] = [f"extract {src}", f"validate+load {src}"]
        else:
            prev = loads[[x for x, _ in loads].index(src) - 1][0]
            chain_at[src] = [*chain_at[prev], f"validate+load {src}"]
        free_at = start + secs
        chain = chain_at[src]
    return round(free_at, 2), chain


def _result(a: argparse.Namespace, meta: dict[str, Any], before: list[dict[str, Any]], after: list[dict[str, Any]],
            incr: list[dict[str, Any]], incremental: float | None, failures: list, excluded: list,
            counts: dict[str, int], bronze: dict[str, int], sandbox_mb: float | None, machine: dict[str, Any],
            extra: dict[str, Any]) -> dict[str, Any]:
    ingest_seconds, chain = ingest_critical_path(before)
    after_loads = round(sum(s["seconds"] for s in after if not s["stage"].endswith("(resume)")), 2)
    total = ingest_seconds + after_loads
    return {
        "benchmark": "pipeline",
        "size": a.size,
        "seed": a.seed,
        "recorded_at": dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"),
        "machine": machine,
        "world_was_cached": True,
        "schedule": "concurrent",
        "sandbox": "own process",
        "sandbox_peak_rss_mb": sandbox_mb,
        "world": meta.get("counts", {}),
        "resumed": {
            "reason": a.reason,
            "log": str(a.log),
            "stages_from_log": [s["stage"] for s in before],
            "ingest_seconds_critical_path": ingest_seconds,
            "ingest_critical_chain": chain,
            "after_loads_seconds": after_loads,
            "bronze_rows": bronze,
            "note": "direct_pipeline_seconds = the ingest's critical chain (stage times of the killed run: "
                    "extracts overlap, loads one at a time) + dbt, ML and publish of the resume, one after another; "
                    "not one uninterrupted run",
            **extra,
        },
        "stages": before + after,
        "direct_pipeline_seconds": round(total, 2),
        "dbt_failures": failures,
        "dbt_excluded_nodes": excluded,
        "incremental_day_seconds": round(incremental, 2) if incremental is not None else None,
        "incremental_stages": incr,
        "incremental_share_of_full": round(incremental / total, 3) if incremental is not None else None,
        "dag_seconds": None,
        "orchestration_overhead_seconds": None,
        "gold_rows": counts,
    }


def record_from_logs(a: argparse.Namespace) -> int:
    """The JSON of a resume that died too: both outputs' stage lines, the warehouse's row counts."""
    from retailpulse.warehouse import get_warehouse
    from retailpulse.settings import load_settings
    from sandbox.world import World

    before = stages_from_log(a.log.read_text(errors="replace"))
    resumed = stages_from_log(a.resumed_log.read_text(errors="replace"))
    after = [s for s in resumed if not s["stage"].startswith("incr ")]
    incr = [s for s in resumed if s["stage"].startswith("incr ")]
    if not any(s["stage"] == "publish" for s in after):
        raise SystemExit(f"{a.resumed_log}: the resume did not finish its full refresh (no publish line)")
    meta = World.load(Path(load_settings().sandbox_path) / f"{a.size}-{a.seed}").meta
    root = a.workdir / a.size / "direct"
    os.environ["RETAILPULSE_WAREHOUSE_PATH"] = str(root / "warehouse" / "retailpulse.duckdb")
    os.environ["RETAILPULSE_DATA_DIR"] = str(root / "data")
    wh = get_warehouse(load_settings())
    bronze = {t: wh.row_count("bronze", t) for t in wh.list_tables("bronze")}
    counts = {t: wh.row_count("gold", t) for t in wh.list_tables("gold")}
    machine = {"cpus": os.cpu_count(), "python": platform.python_version(),
               "memory_gb": round(psutil.virtual_memory().total / 2**30, 1),
               "calibration": machine_calibration()}
    done = [s["stage"] for s in incr]
    extra = {"resumed_log": str(a.resumed_log), "resumed_death": a.resumed_death,
             "incremental_completed_stages": done,
             "recorded_from_logs": "nothing was run for this JSON: stage lines parsed from both outputs, row counts "
                                   "read from the kept warehouse (gold as the dead resume left it)"}
    result = _result(a, meta, before, after, incr, None, [], [], counts, bronze, None, machine, extra)
    print(write_result(f"pipeline_{a.size}", result))
    print(write_markdown())
    return 0


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m bench.resume", description=__doc__.splitlines()[0])
    ap.add_argument("--size", required=True, choices=["small", "medium", "large"])
    ap.add_argument("--seed", type=int, default=42)
    ap.add_argument("--workdir", type=Path, required=True, help="the killed run's --workdir")
    ap.add_argument("--log", type=Path, required=True, help="the killed run's output")
    ap.add_argument("--reason", default="the benchmark process was killed after its loads")
    ap.add_argument("--resumed-log", type=Path, help="record a resume that itself died: its output (the stage lines "
                    "it printed); nothing is run, the JSON is built from both outputs and the kept warehouse")
    ap.add_argument("--resumed-death", default="", help="with --resumed-log: how the resume died")
    a = ap.parse_args(argv)
    if a.resumed_log:
        return record_from_logs(a)

    from ingestion.connectors import SOURCES, is_configured
    from ingestion.interval import Interval
    from retailpulse import pipeline
    from retailpulse.settings import load_settings
    from bench.sandbox_process import SandboxProcess
    from sandbox.world import World

    before = stages_from_log(a.log.read_text(errors="replace"))
    done = {s["stage"] for s in before}
    if not any(s.startswith("validate+load ") for s in done) or any(s.startswith("dbt build") for s in done):
        raise SystemExit(f"{a.log}: not a run that died after its loads and before its dbt build")
    root = a.workdir / a.size
    if not (root / "direct" / "warehouse" / "retailpulse.duckdb").exists():
        raise SystemExit(f"no kept warehouse under {root}/direct: run bench.run with --workdir")
    base = load_settings()
    world_path = Path(base.sandbox_path) / f"{a.size}-{a.seed}"
    meta = World.load(world_path).meta
    start, end = dt.date.fromisoformat(meta["start"]), dt.date.fromisoformat(meta["end"])
    load_at_start = [round(x, 2) for x in os.getloadavg()]
    calibration = machine_calibration()
    stages: list[dict[str, Any]] = []
    server = timed(stages, "sandbox start (resume)", lambda: SandboxProcess(a.size, a.seed, root / "ga4").start())
    timed(stages, "ga4 export files (resume)", lambda: (
        server.wait_ga4(), server.set_clock(dt.datetime.combine(end, dt.time(0), tzinfo=dt.timezone.utc))))
    saved = dict(os.environ)
    pool = None
    try:
        os.environ.update(_env(root / "direct", server))
        settings = load_settings()
        full = Interval.for_dates(start, end - dt.timedelta(days=1))
        bronze = {t: pipeline.get_warehouse(settings).row_count("bronze", t)
                  for t in pipeline.get_warehouse(settings).list_tables("bronze")}
        dbt = DbtStage()
        build_stages(stages, "", settings, full, dbt, full_refresh=True)
        sources = [s for s in SOURCES if is_configured(s, settings)]
        pool = worker_pool(len(sources))
        incr, incremental = incremental_day(server, settings, sources, end, pool, dbt)
        counts = pipeline.gold_counts(settings)
    finally:
        if pool is not None:
            pool.shutdown()
        os.environ.clear()
        os.environ.update(saved)
        server.stop()
    result = _result(a, meta, before, stages, incr, incremental, dbt.failures, dbt.exclude, counts, bronze,
                     round(server.peak_rss / 2**20, 1), machine_info(load_at_start, calibration), {})
    print(write_result(f"pipeline_{a.size}", result))
    print(write_markdown())
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
