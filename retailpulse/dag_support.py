"""What every RetailPulse DAG shares: default task arguments, the failure alert, settings.

Kept free of heavy imports: DAG files import it at parse time.
"""

from __future__ import annotations

import datetime as dt
from typing import Any

WAREHOUSE_POOL = "retailpulse_warehouse"


def failure_alert(dag_id: str):  # type: ignore[no-untyped-def]
    """An on_failure_callback that appends one clear line to <data>/alerts.log."""

    def _alert(context: Any) -> None:
        from retailpulse.pipeline import write_alert
        from retailpulse.settings import load_settings

        ti = context.get("task_instance")
        err = context.get("exception")
        write_alert(load_settings(), f"{dag_id} task {getattr(ti, 'task_id', '?')} failed for run "
                                     f"{context.get('run_id')}: {type(err).__name__ if err else 'error'}: {err}")

    return _alert


def default_args(dag_id: str, *, timeout: dt.timedelta, retry_delay: dt.timedelta = dt.timedelta(seconds=30),
                 retries: int = 2) -> dict[str, Any]:
    """Retries with exponential backoff, a timeout and the failure alert on every task."""
    return {
        "owner": "retailpulse",
        "retries": retries,
        "retry_delay": retry_delay,
        "retry_exponential_backoff": True,
        "max_retry_delay": dt.timedelta(minutes=15),
        "execution_timeout": timeout,
        "on_failure_callback": failure_alert(dag_id),
    }


def task_settings():  # type: ignore[no-untyped-def]
    """Fresh settings for a task, with every configured secret registered for redaction."""
    from retailpulse.logging_setup import install_redaction
    from retailpulse.settings import load_settings

    settings = load_settings()
    install_redaction(settings)
    return settings


def dbt_build_for_run(settings, run_id: str) -> dict[str, Any]:  # type: ignore[no-untyped-def]
    """``dbt build`` once for the daily run ``run_id``, in-process, of every node but the ML-fed
    marts (``ml_score`` builds those after scoring) and of the unit tests when they passed on this
    very project before (``run_dbt(unit_tests="when_changed")``); dbt's run_results.json goes to
    :func:`retailpulse.dbt_graph.run_results_path` (even when the build fails) for the per-model tasks."""
    import time

    from retailpulse.dbt_graph import prune_run_results, run_results_path
    from retailpulse.dbt_runner import run_dbt
    from retailpulse.pipeline import dbt_build_args, init_warehouse

    init_warehouse(settings)
    path = run_results_path(settings.data_path, run_id)
    path.unlink(missing_ok=True)  # a retry must not leave an earlier attempt's results behind
    run_results_path(settings.data_path, run_id, "ml").unlink(missing_ok=True)  # nor a later stage's
    began = time.monotonic()
    result = run_dbt(settings, dbt_build_args(before_ml=True), run_results_path=path, unit_tests="when_changed")
    prune_run_results(settings.data_path)
    kinds: dict[str, int] = {}
    for n in result.nodes:
        kinds[n["resource_type"]] = kinds.get(n["resource_type"], 0) + 1
    return {"seconds": round(time.monotonic() - began, 1), "nodes": kinds, "run_results": str(path)}


def ml_score_for_run(settings, run_id: str, interval) -> dict[str, Any]:  # type: ignore[no-untyped-def]
    """The daily run's ML stage (:func:`retailpulse.pipeline.stage_ml`); the dbt build of the
    ML-fed marts that ends it writes its run_results.json to
    ``run_results_path(..., run_id, "ml")`` (even when it fails) for those marts' per-model tasks."""
    from retailpulse.dbt_graph import run_results_path
    from retailpulse.pipeline import stage_ml

    path = run_results_path(settings.data_path, run_id, "ml")
    path.unlink(missing_ok=True)  # a retry must not leave an earlier attempt's results behind
    return stage_ml(settings, interval, dbt_run_results=path)


GOLD_ASSET_URI = "retailpulse://warehouse/gold"


def check_serving_copy(settings, announced: dict[str, int] | None) -> dict[str, Any]:  # type: ignore[no-untyped-def]
    """Check the published serving copy against what ``publish`` announced and report freshness.

    ``announced`` is ``{gold table: rows}`` from the gold Asset event (None: nothing announced,
    the copy is only read and described). Raises RuntimeError naming every missing table and
    every row count that differs. Writes ``<data>/serving_freshness.json``.
    """
    import json

    from retailpulse.serving import connect, published_at, serving_file

    path = serving_file(settings)
    con = connect(path)
    try:
        tables = {r[0]: 0 for r in con.execute(
            "select table_name from information_schema.tables where table_schema = 'gold'").fetchall()}
        for t in tables:
            tables[t] = int(con.execute(f'select count(*) from gold."{t}"').fetchone()[0])
        last_order = con.execute("select max(cast(ordered_at as date)) from gold.fct_orders").fetchone()[0] \
            if "fct_orders" in tables else None
        last_batch = con.execute("select max(loaded_at) from gold.data_health").fetchone()[0] \
            if "data_health" in tables else None
    finally:
        con.close()
    problems = []
    for t, rows in sorted((announced or {}).items()):
        if t not in tables:
            problems.append(f"{t} missing")
        elif tables[t] != rows:
            problems.append(f"{t} has {tables[t]} rows, publish announced {rows}")
    published = published_at(path)
    report = {
        "serving_file": str(path),
        "published_at": published.isoformat() if published else None,
        "tables": len(tables),
        "checked_against_event": announced is not None,
        "last_order_date": str(last_order) if last_order else None,
        "last_load_at": str(last_batch) if last_batch else None,
        "problems": problems,
    }
    out = settings.data_path / "serving_freshness.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(report, indent=1))
    if problems:
        raise RuntimeError(f"serving copy {path} differs from what publish announced: {'; '.join(problems[:10])}")
    return report
