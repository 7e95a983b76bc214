"""Why the GA4 load's memory grows with the range loaded: DuckDB keeps every DataFrame registered
with ``con.register`` alive until the transaction commits, even after ``con.unregister``.

``Warehouse.replace_rows`` on DuckDB inserts through ``con.register("__rp_frame", df)`` /
``unregister`` (retailpulse/warehouse.py ``DuckDBWarehouse._insert_df``), and ``load_batches``
writes every group of a range inside ONE transaction; so each group's frame stays in memory
until the end. This inserts ``--groups`` frames of ``--rows`` rows (~0.5 KB each) into a table in
one transaction, (a) through register/unregister, (b) through a replacement scan of a local
variable (``insert ... select * from __rp_frame`` with ``__rp_frame = df``), counting live
DataFrames and RSS after each group and after the commit.

    python -m bench.duckdb_register_retention [--groups 8] [--rows 200000]
"""

from __future__ import annotations

import argparse
import gc
import json
import os
import subprocess
import sys
import tempfile
from typing import Any

import numpy as np
import pandas as pd
import psutil

from bench._common import machine, now, write_result


def _arrow_mb() -> float:
    import pyarrow as pa

    return round(pa.total_allocated_bytes() / 2**20, 1)


def _alive() -> int:
    return sum(isinstance(o, pd.DataFrame) for o in gc.get_objects())


def run_mode(mode: str, groups: int, rows: int, strings: str) -> dict[str, Any]:
    import duckdb

    proc = psutil.Process()
    rss = lambda: round(proc.memory_info().rss / 2**20, 1)  # noqa: E731
    out: list[dict[str, Any]] = []
    with tempfile.TemporaryDirectory(prefix="rp-bench-reg-") as tmp:
        con = duckdb.connect(os.path.join(tmp, "x.duckdb"))
        con.execute("create table t (k varchar, v varchar, n bigint)")
        con.execute("begin transaction")
        start = rss()
        for i in range(groups):
            df = pd.DataFrame({"k": [f"key-{i}-{j}" for j in range(rows)],
                               "v": ["x" * 400 + str(j) for j in range(rows)], "n": np.arange(rows)})
            if strings == "arrow":  # pyarrow-backed strings, like the GA4 load's typed frames
                df = df.astype({"k": "string[pyarrow]", "v": "string[pyarrow]"})
            if mode == "register":
                con.register("__rp_frame", df)
                con.execute("insert into t by name select * from __rp_frame")
                con.unregister("__rp_frame")
            else:
                __rp_frame = df  # noqa: F841  (read by DuckDB's replacement scan)
                con.execute("insert into t by name select * from __rp_frame")
                del __rp_frame
            del df
            gc.collect()
            out.append({"group": i, "rss_mb": rss(), "dataframes_alive": _alive(), "arrow_pool_mb": _arrow_mb()})
        con.execute("commit")
        gc.collect()
        after = {"rss_mb": rss(), "dataframes_alive": _alive()}
        con.close()
    import pyarrow as pa

    return {"mode": mode, "strings": strings, "arrow_pool_mb_after_commit": round(pa.total_allocated_bytes() / 2**20, 1),
            "rss_at_start_mb": start, "groups": out, "after_commit": after,
            "rss_growth_mb_per_group": round((out[-1]["rss_mb"] - out[0]["rss_mb"]) / max(len(out) - 1, 1), 1)}


def main(argv: list[str] | None = None) -> int:
    import duckdb

    ap = argparse.ArgumentParser(prog="python -m bench.duckdb_register_retention")
    ap.add_argument("--groups", type=int, default=8)
    ap.add_argument("--rows", type=int, default=200_000)
    ap.add_argument("--one", nargs=2, metavar=("MODE", "STRINGS"), help=argparse.SUPPRESS)
    args = ap.parse_args(argv)
    if args.one:  # one mode in this (fresh) process, JSON on stdout
        print(json.dumps(run_mode(args.one[0], args.groups, args.rows, args.one[1])))
        return 0
    modes = []
    for st in ("object", "arrow"):
        for m in ("register", "replacement_scan"):  # each in a fresh interpreter: RSS not shared between modes
            cp = subprocess.run([sys.executable, "-m", "bench.duckdb_register_retention", "--groups", str(args.groups),
                                 "--rows", str(args.rows), "--one", m, st], capture_output=True, text=True, check=True)
            modes.append(json.loads(cp.stdout.strip().splitlines()[-1]))
    for m in modes:
        print(f"  {m['mode']:<17} {m['strings']:<7} +{m['rss_growth_mb_per_group']} MB/group, DataFrames alive before commit "
              f"{m['groups'][-1]['dataframes_alive']}, after {m['after_commit']['dataframes_alive']}", flush=True)
    write_result("duckdb_register_retention", {
        "benchmark": "duckdb_register_retention", "recorded_at": now(), "machine": machine(),
        "duckdb": duckdb.__version__, "groups": args.groups, "rows_per_group": args.rows, "modes": modes})
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
