"""retailpulse_gold_consumers: runs whenever gold is published (the Asset ``retailpulse://warehouse/gold``).

Wiring only; the check is :func:`retailpulse.dag_support.check_serving_copy`. Every green
retailpulse_daily run ends with ``publish``, whose outlet event carries the row count of every
gold table it published. This DAG is scheduled on that Asset: it opens the read-only serving
copy the dashboard, the API and the BI tools read, checks that it holds exactly what was
announced (every table, every row count) and how fresh the data is (last order day, last
data-health batch), and writes ``<data>/serving_freshness.json``; a mismatch fails the task,
which writes the alert line. It only reads the serving copy: no warehouse pool.
"""

from __future__ import annotations

import datetime as dt

from airflow.sdk import Asset, dag, get_current_context, task

from retailpulse.dag_support import GOLD_ASSET_URI, default_args, task_settings

GOLD_ASSET = Asset(GOLD_ASSET_URI)
DEFAULTS = default_args("retailpulse_gold_consumers", timeout=dt.timedelta(minutes=10),
                        retry_delay=dt.timedelta(seconds=30))


@dag(
    dag_id="retailpulse_gold_consumers",
    schedule=[GOLD_ASSET],
    start_date=dt.datetime(2024, 1, 1, tzinfo=dt.timezone.utc),
    catchup=False,
    max_active_runs=1,
    default_args=DEFAULTS,
    tags=["retailpulse", "serving"],
    doc_md=__doc__,
)
def retailpulse_gold_consumers():
    @task(inlets=[GOLD_ASSET])
    def check_serving_copy() -> dict:
        from retailpulse.dag_support import check_serving_copy as check

        ctx = get_current_context()
        events = (ctx.get("triggering_asset_events") or {}).get(GOLD_ASSET) or []
        announced = dict(events[-1].extra or {}) if events else {}
        return check(task_settings(), announced.get("tables"))

    check_serving_copy()


retailpulse_gold_consumers()
