"""retailpulse_daily: sources -> landing -> validate + bronze -> dbt silver/gold -> ML scores -> publish.

Wiring only; every step is a function in retailpulse.pipeline. A run covers its data interval,
or the inclusive dates ``{"start": "YYYY-MM-DD", "end": "YYYY-MM-DD"}`` given in the run conf
(backfills and the demo use that). Extract tasks write landing files only and run in
parallel; every task that writes the warehouse takes the one slot of the
``retailpulse_warehouse`` pool (DuckDB allows one writing process).
"""

from __future__ import annotations

import datetime as dt

from airflow.sdk import Asset, dag, get_current_context, task
from airflow.sdk.exceptions import AirflowSkipException

from ingestion.connectors import SOURCES
from retailpulse.dag_support import WAREHOUSE_POOL, default_args, task_settings

GOLD_ASSET = Asset("retailpulse://warehouse/gold")


DEFAULTS = default_args("retailpulse_daily", timeout=dt.timedelta(hours=2))


def _interval():
    from retailpulse.pipeline import resolve_interval

    ctx = get_current_context()
    dag_run = ctx.get("dag_run")
    conf = (getattr(dag_run, "conf", None) or {}) if dag_run else {}
    return resolve_interval(ctx.get("data_interval_start"), ctx.get("data_interval_end"), conf)


_settings = task_settings


@dag(
    dag_id="retailpulse_daily",
    schedule="@daily",
    start_date=dt.datetime(2024, 1, 1, tzinfo=dt.timezone.utc),
    catchup=False,
    max_active_runs=1,
    default_args=DEFAULTS,
    tags=["retailpulse"],
    doc_md=__doc__,
)
def retailpulse_daily():
    @task
    def extract(source: str) -> dict:
        from ingestion.connectors import is_configured
        from retailpulse.pipeline import stage_extract

        settings = _settings()
        if not is_configured(source, settings):
            raise AirflowSkipException(f"{source} is not configured (no credentials or location); skipped")
        return stage_extract(settings, source, _interval())

    @task(pool=WAREHOUSE_POOL)
    def load(source: str) -> list:
        from retailpulse.pipeline import stage_load

        return stage_load(_settings(), source, _interval())

    @task(pool=WAREHOUSE_POOL, trigger_rule="none_failed")
    def dbt_build() -> dict:
        from retailpulse.pipeline import stage_dbt

        return stage_dbt(_settings())

    @task(pool=WAREHOUSE_POOL)
    def ml_score() -> dict:
        from retailpulse.pipeline import stage_ml

        return stage_ml(_settings(), _interval())

    @task(pool=WAREHOUSE_POOL, outlets=[GOLD_ASSET])
    def publish() -> dict:
        from retailpulse.pipeline import stage_publish

        return stage_publish(_settings())

    loads = []
    for source in SOURCES:
        extracted = extract.override(task_id=f"extract_{source}")(source)
        loaded = load.override(task_id=f"load_{source}")(source)
        extracted >> loaded
        loads.append(loaded)
    built = dbt_build()
    loads >> built
    built >> ml_score() >> publish()


retailpulse_daily()
