"""The daily publish against the length of the score history.

The ML stage appends a full scoring to gold.customer_scores and gold.customer_segments every day
(history kept). Before the history tables were published by date, every publish copied the
whole history into the new serving file and Parquet: the daily publish grew by a scoring a day.
This builds a warehouse with ``--customers`` scored customers over N days (default 30, 180, 365)
and a fixed 1M-row table beside them, then times

* a fresh publish (``keep_previous=False``: what every daily publish did before), and
* the next day's publish (one new scoring date appended, the previous copy reused).

    python -m bench.publish_history [--days 30,180,365] [--customers 98400]
"""

from __future__ import annotations

import argparse
import os
import tempfile
import time
from pathlib import Path
from typing import Any

from bench._common import machine, now, write_result


def _warehouse(root: Path, days: int, customers: int) -> Any:
    from retailpulse.settings import Settings
    from retailpulse.warehouse import get_warehouse

    settings = Settings(home=Path(__file__).resolve().parent.parent, data_dir=root / "data",
                        warehouse_path=root / "warehouse" / "retailpulse.duckdb",
                        serving_dir=root / "warehouse" / "serving", target="duckdb", _env_file=None)
    wh = get_warehouse(settings)
    wh.ensure_schemas()
    with wh.connect() as con:
        con.execute("create table gold.fct_orders as select 'ord_' || lpad(cast(i as varchar), 8, '0') as order_id, "
                    "md5(cast(i % 98400 as varchar)) as customer_id, i * 0.37 as net_revenue, "
                    "timestamp '2025-01-01' + to_seconds(i * 20) as ordered_at from range(1000000) t(i)")
        con.execute(_scores_sql(days, customers, "create table gold.customer_scores as"))
        con.execute(_segments_sql(days, customers, "create table gold.customer_segments as"))
    return settings, wh


def _scores_sql(days: int, customers: int, into: str, first_day: int = 0) -> str:
    return (f"{into} select md5(cast(c as varchar)) as customer_id, "
            f"cast(date '2025-01-01' + to_days(cast(d as integer)) as date) as as_of_date, 'v1' as model_version, "
            "((c * 7 + d) % 1000) / 1000.0 as p_alive, ((c * 13 + d) % 1000) / 1000.0 as churn_probability, "
            "(c % 50) / 10.0 as expected_purchases_90d, (c % 90) / 10.0 as expected_purchases_365d, "
            "(c % 977) * 1.5 + d as predicted_clv_12m, "
            "case when c % 3 = 0 then 'high' when c % 3 = 1 then 'medium' else 'low' end as value_tier, "
            "case when (c + d) % 3 = 0 then 'high' else 'low' end as churn_risk_band "
            f"from range({first_day}, {first_day + days}) dd(d), range({customers}) cc(c)")


def _segments_sql(days: int, customers: int, into: str, first_day: int = 0) -> str:
    return (f"{into} select md5(cast(c as varchar)) as customer_id, "
            f"cast(date '2025-01-01' + to_days(cast(d as integer)) as date) as as_of_date, 'seg-v1' as segmentation_version, "
            "cast((c + d) % 5 as integer) as segment_id, 'segment ' || ((c + d) % 5) as segment_name "
            f"from range({first_day}, {first_day + days}) dd(d), range({customers}) cc(c)")


def measure(days: int, customers: int) -> dict[str, Any]:
    from retailpulse.publish import publish_gold

    with tempfile.TemporaryDirectory(prefix="rp-bench-publish-") as tmp:
        settings, wh = _warehouse(Path(tmp), days, customers)
        began = time.perf_counter()
        publish_gold(settings, keep_previous=False)
        fresh = time.perf_counter() - began
        with wh.connect() as con:  # the next day: one more scoring
            con.execute(_scores_sql(1, customers, "insert into gold.customer_scores", first_day=days))
            con.execute(_segments_sql(1, customers, "insert into gold.customer_segments", first_day=days))
        began = time.perf_counter()
        result = publish_gold(settings)
        next_day = time.perf_counter() - began
        serving = Path(result["serving_file"])
        out = {"days": days, "customers": customers, "history_rows": result["tables"]["customer_scores"],
               "fresh_publish_s": round(fresh, 2), "next_day_publish_s": round(next_day, 2),
               "serving_file_mb": round(os.path.getsize(serving) / 2**20, 1)}
        print(f"  {days:4d} days ({out['history_rows']:,} score rows): fresh publish {fresh:6.2f} s, "
              f"next day {next_day:6.2f} s", flush=True)
        return out


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m bench.publish_history")
    ap.add_argument("--days", default="30,180,365", help="history lengths to measure, comma-separated")
    ap.add_argument("--customers", type=int, default=98_400, help="customers scored a day (medium world: 98,400)")
    args = ap.parse_args(argv)
    started = machine()
    runs = [measure(int(d), args.customers) for d in args.days.split(",") if d.strip()]
    write_result("publish_history", {"benchmark": "publish_history", "recorded_at": now(), "machine": started,
                                     "load_avg_at_end": [round(x, 2) for x in os.getloadavg()], "runs": runs})
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
