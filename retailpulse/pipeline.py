"""The stages of the daily pipeline, callable from Airflow tasks, the CLI and tests.

Every stage takes a :class:`Settings` and explicit dates, returns a small JSON-able summary and
keeps no global state. Extract stages only write landing files (they may run in parallel);
every other stage writes the warehouse and runs in the one-slot pool.
"""

from __future__ import annotations

import datetime as dt
import logging
import time
from dataclasses import asdict
from pathlib import Path
from typing import Any

from ingestion.interval import Interval
from retailpulse.dbt_graph import ML_FED_SELECTOR
from retailpulse.settings import Settings
from retailpulse.warehouse import SCHEMAS, get_warehouse

log = logging.getLogger(__name__)

# ML_FED_SELECTOR: the models that read the ML stage's tables (dbt source ``ml``: customer scores,
# segments, data-driven attribution) and everything below them: dim_customers, fct_attribution,
# channel_performance_daily, their tests and exposures. The daily run builds the rest before ML
# (``stage_dbt(..., before_ml=True)``) and these once after it (:func:`ml.jobs.rebuild_ml_marts`),
# so that no model is built twice in a run and every test runs once.


def configured_sources(settings: Settings) -> list[str]:
    """Sources whose credentials are configured (settings or Airflow connections)."""
    from ingestion.connectors import SOURCES, is_configured

    return [s for s in SOURCES if is_configured(s, settings)]


def resolve_interval(
    data_interval_start: dt.datetime | None,
    data_interval_end: dt.datetime | None,
    conf: dict[str, Any] | None = None,
) -> Interval:
    """The run's interval: ``conf`` start/end (inclusive dates) win over Airflow's data interval."""
    conf = conf or {}
    if conf.get("start") and conf.get("end"):
        return Interval.for_dates(dt.date.fromisoformat(str(conf["start"])), dt.date.fromisoformat(str(conf["end"])))
    if data_interval_start is None or data_interval_end is None:
        raise ValueError("no data interval: pass start and end (YYYY-MM-DD) in the run conf")
    return Interval(data_interval_start, data_interval_end)


def init_warehouse(settings: Settings) -> None:
    """Schemas, plus an empty bronze table for every declared source object, so that dbt
    always finds its sources (a source that is not configured simply stays empty)."""
    from ingestion.bronze import ensure_bronze_tables

    wh = get_warehouse(settings)
    wh.ensure_schemas(SCHEMAS)
    ensure_bronze_tables(wh)


def stage_extract(settings: Settings, source: str, interval: Interval) -> dict[str, Any]:
    from ingestion.runner import extract_source

    manifests = extract_source(settings, source, interval)
    return {m.object: m.record_count for m in manifests}


def stage_load(settings: Settings, source: str, interval: Interval) -> list[dict[str, Any]]:
    from ingestion.runner import load_source

    with get_warehouse(settings).kept_open():  # one open of the database for the load's many steps
        init_warehouse(settings)
        return [asdict(r) for r in load_source(settings, source, interval)]


def dbt_build_args(full_refresh: bool = False, select: str | None = None, before_ml: bool = False) -> list[str]:
    """``dbt build`` arguments; ``before_ml`` leaves out the models fed by the ML stage
    (:data:`ML_FED_SELECTOR`), which the ML stage builds once it has written its tables."""
    args = ["build"]
    if full_refresh:
        args.append("--full-refresh")
    if select:
        args += ["--select", select]
    if before_ml:
        args += ["--exclude", ML_FED_SELECTOR]
    return args


def stage_dbt(settings: Settings, full_refresh: bool = False, select: str | None = None,
              before_ml: bool = False) -> dict[str, Any]:
    """``dbt build`` (every model, seed, snapshot and test; with ``before_ml``, as the daily run
    does, all but the ML-fed marts, which :func:`stage_ml` builds after scoring, and the unit
    tests only when the project changed since they last passed: see :func:`run_dbt`'s
    ``unit_tests``)."""
    from retailpulse.dbt_runner import run_dbt

    init_warehouse(settings)
    args = dbt_build_args(full_refresh, select, before_ml)
    began = time.monotonic()
    result = run_dbt(settings, args, unit_tests="when_changed" if before_ml else "always")
    kinds: dict[str, int] = {}
    for n in result.nodes:
        kinds[n["resource_type"]] = kinds.get(n["resource_type"], 0) + 1
    return {"seconds": round(time.monotonic() - began, 1), "nodes": kinds}


def stage_ml(settings: Settings, interval: Interval, dbt_run_results: Path | None = None) -> dict[str, Any]:
    """Score every customer as of the interval's last day with the champion models (training
    one first when none exists), write gold.customer_scores and the data-driven attribution,
    and build the marts that show them (:data:`ML_FED_SELECTOR`: dim_customers, fct_attribution,
    ...), with their tests; ``dbt_run_results``: where that build's run_results.json goes."""
    from ml.jobs import score_daily

    last_day = (interval.end - dt.timedelta(microseconds=1)).date()
    return score_daily(settings, last_day, dbt_run_results=dbt_run_results)


def refresh_data_health(settings: Settings) -> dict[str, int]:
    """Publish the load audit into gold for the data-health page and the weekly report.

    gold.data_health: one row per landed batch (counts, status, critical failures);
    gold.data_health_rejections: rejected records per batch and rule. Aggregates only: the
    rejected records themselves (raw source data with PII) stay in bronze.
    """
    wh = get_warehouse(settings)
    gold, ops, bronze = (wh.schema_name(s) for s in ("gold", "ops", "bronze"))
    if not wh.table_exists("ops", "load_audit"):
        return {}
    statements = [
        f'drop table if exists "{gold}"."data_health"',
        f'create table "{gold}"."data_health" as select source, object, interval_key, batch_id, status, '
        f'extracted, loaded, rejected, duplicates, drift_columns, critical_failures, loaded_at '
        f'from "{ops}"."load_audit"',
        f'drop table if exists "{gold}"."data_health_rejections"',
        f'create table "{gold}"."data_health_rejections" as select source, object, interval_key, rule, '
        f'count(*) as rejected_records, max(rejected_at) as last_rejected_at '
        f'from "{bronze}"."rejected_records" group by source, object, interval_key, rule',
    ]
    with wh.connect() as con:
        wh._exec(con, f'create schema if not exists "{gold}"')
        for sql in statements:
            wh._exec(con, sql)
    return {t: wh.row_count("gold", t) for t in ("data_health", "data_health_rejections")}


def stage_publish(settings: Settings) -> dict[str, Any]:
    """Publish the load audit into gold, then copy gold into a read-only serving DuckDB file,
    swapped in atomically, plus Parquet (and, on Postgres, refresh the BI role). See
    :mod:`retailpulse.publish`."""
    from retailpulse.publish import publish_gold

    with get_warehouse(settings).kept_open():
        init_warehouse(settings)
        refresh_data_health(settings)
        return publish_gold(settings)


def gold_counts(settings: Settings) -> dict[str, int]:
    wh = get_warehouse(settings)
    return {t: wh.row_count("gold", t) for t in wh.list_tables("gold")}


def write_alert(settings: Settings, message: str) -> Path:
    path = settings.data_path / "alerts.log"
    path.parent.mkdir(parents=True, exist_ok=True)
    stamp = dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds")
    with path.open("a") as fh:
        fh.write(f"{stamp} {message}\n")
    return path
