"""Helpers shared by the focused benches: machine description (with the load average, since
this 2-core machine runs other work while benchmarks record), timing, results JSON, and a
warehouse with the bronze of a sandbox world (shaped like the loader's, from
``tests/dbt_fixtures.py``) for benches that start at dbt."""

from __future__ import annotations

import datetime as dt
import json
import os
import platform
import threading
import time
from pathlib import Path
from typing import Any

import psutil

REPO = Path(__file__).resolve().parent.parent
RESULTS = Path(__file__).resolve().parent / "results"


def machine() -> dict[str, Any]:
    return {"cpus": os.cpu_count(), "python": platform.python_version(),
            "memory_gb": round(psutil.virtual_memory().total / 2**30, 1),
            "load_avg": [round(x, 2) for x in os.getloadavg()]}


def now() -> str:
    return dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds")


def write_result(name: str, result: dict[str, Any]) -> Path:
    RESULTS.mkdir(exist_ok=True)
    out = RESULTS / f"{name}.json"
    out.write_text(json.dumps(result, indent=2, default=str) + "\n")
    print(f"wrote {out}", flush=True)
    return out


LOAD_WORKER = "ingestion.load_workers"  # in the command line of the loader's worker processes


class Peak:
    """Peak resident memory of this process (or of process ``pid``) while the block runs
    (sampled every 50 ms); with ``children``, of the process and its child processes together
    (True: every child; a string: the children whose command line contains it, e.g. the loader's
    worker processes and not the benchmark's sandbox process)."""

    def __init__(self, pid: int | None = None, children: bool | str = False) -> None:
        self.proc = psutil.Process(pid)
        self.children = children
        self.peak = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _rss(self) -> int:
        rss = self.proc.memory_info().rss
        if self.children:
            for child in self.proc.children(recursive=True):
                try:
                    if self.children is True or self.children in " ".join(child.cmdline()):
                        rss += child.memory_info().rss
                except psutil.Error:  # exited between the listing and the reading
                    pass
        return rss

    def _run(self) -> None:
        while not self._stop.is_set():
            try:
                self.peak = max(self.peak, self._rss())
            except psutil.Error:  # a watched child has exited
                return
            time.sleep(0.05)

    def __enter__(self) -> Peak:
        try:
            self.peak = self._rss()
        except psutil.Error:
            self.peak = 0
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()

    @property
    def mb(self) -> float:
        return round(self.peak / 2**20, 1)


def timed(fn, *args, **kwargs) -> tuple[Any, float, float]:
    """(result, seconds, peak RSS MB) of one call; the memory counts the loader's worker
    processes the call starts."""
    with Peak(children=LOAD_WORKER) as mem:
        began = time.perf_counter()
        out = fn(*args, **kwargs)
        seconds = time.perf_counter() - began
    return out, round(seconds, 3), mem.mb


def settings_for(root: Path, target: str = "duckdb", **overrides: Any):
    """Settings for a private warehouse under ``root`` (DuckDB, or Postgres with a schema prefix)."""
    from retailpulse.settings import Settings

    base = dict(home=REPO, data_dir=root / "data", warehouse_path=root / "warehouse" / "retailpulse.duckdb",
                serving_dir=root / "warehouse" / "serving", target=target, _env_file=None)
    base.update(overrides)
    return Settings(**base)


def world_bronze(size: str, seed: int) -> tuple[Path, dict]:
    """The world's path and its bronze frames as of the world's end (every table dbt reads)."""
    from retailpulse.settings import load_settings
    from sandbox.world import ensure_world
    from tests.dbt_fixtures import WorldBronze

    world = Path(ensure_world(load_settings().sandbox_path, size, seed))
    bronze = WorldBronze(world)
    return world, bronze.as_of(bronze.end)


def postgres_dsn() -> str:
    return os.environ.get("RETAILPULSE_TEST_POSTGRES_DSN", "postgresql://postgres@127.0.0.1:5432/test")


def drop_pg_schemas(dsn: str, prefix: str) -> None:
    import psycopg2

    con = psycopg2.connect(dsn)
    con.autocommit = True
    cur = con.cursor()
    cur.execute("select schema_name from information_schema.schemata where schema_name like %s", [prefix + "%"])
    for (name,) in cur.fetchall():
        cur.execute(f'drop schema "{name}" cascade')
    con.close()


def machine_calibration() -> dict[str, float]:
    """Seconds for two fixed workloads (pure-Python arithmetic, a numpy sort), so that runs
    recorded on different days can be compared with the machine's speed at the time (this
    shared VM's speed varies from day to day)."""
    import numpy as np

    began = time.perf_counter()
    total = 0
    for i in range(3_000_000):
        total += i * i % 7
    python_s = time.perf_counter() - began
    values = np.random.default_rng(0).random(5_000_000)
    began = time.perf_counter()
    np.sort(values, kind="stable")
    return {"python_loop_s": round(python_s, 3), "numpy_sort_s": round(time.perf_counter() - began, 3)}
