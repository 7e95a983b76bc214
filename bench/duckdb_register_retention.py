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
import os
import tempfile
from typing import Any

import numpy as np
import pandas as pd
import psutil

from bench._common import machine, now, write_result


def _alive() -> int:
    return sum(isinstance(o, pd.DataFrame) for o in gc.get_objects())


def run_mode(mode: str, groups: int, rows: int) -> dict[str, Any]:
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
            out.append({"group": i, "rss_mb": rss(), "dataframes_alive": _alive()})
        con.execute("commit")
        gc.collect()
        after = {"rss_mb": rss(), "dataframes_alive": _alive()}
        con.close()
    return {"mode": mode, "rss_at_start_mb": start, "groups": out, "after_commit": after,
            "rss_growth_mb_per_group": round((out[-1]["rss_mb"] - out[0]["rss_mb"]) / max(len(out) - 1, 1), 1)}


def main(argv: list[str] | None = None) -> int:
    import duckdb

    ap = argparse.ArgumentParser(prog="python -m bench.duckdb_register_retention")
    ap.add_argument("--groups", type=int, default=8)
    ap.add_argument("--rows", type=int, default=200_000)
    args = ap.parse_args(argv)
    modes = [run_mode(m, args.groups, args.rows) for m in ("register", "replacement_scan")]
    for m in modes:
        print(f"  {m['mode']:<17} +{m['rss_growth_mb_per_group']} MB/group, DataFrames alive before commit "
              f"{m['groups'][-1]['dataframes_alive']}, after {m['after_commit']['dataframes_alive']}", flush=True)
    write_result("duckdb_register_retention", {
        "benchmark": "duckdb_register_retention", "recorded_at": now(), "machine": machine(),
        "duckdb": duckdb.__version__, "groups": args.groups, "rows_per_group": args.rows, "modes": modes})
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
