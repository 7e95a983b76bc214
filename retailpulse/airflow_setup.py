"""A project-local Airflow: SQLite metadata under .airflow/, the project's DAGs, one pool.

``airflow_env`` is the environment every Airflow command of the project runs with; ``init``
migrates the metadata database and creates the one-slot warehouse pool (skipped when done for
this Airflow version); ``run_daily`` runs retailpulse_daily in-process with ``dag.test``.
"""

from __future__ import annotations

import datetime as dt
import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

from retailpulse.settings import Settings

POOL = "retailpulse_warehouse"
DAG_ID = "retailpulse_daily"


class AirflowError(RuntimeError):
    pass


def airflow_env(settings: Settings) -> dict[str, str]:
    home = settings.airflow_home
    env = {
        "AIRFLOW_HOME": str(home),
        "AIRFLOW__CORE__DAGS_FOLDER": str(settings.home / "dags"),
        "AIRFLOW__CORE__LOAD_EXAMPLES": "False",
        "AIRFLOW__DATABASE__SQL_ALCHEMY_CONN": f"sqlite:///{home / 'airflow.db'}",
        "AIRFLOW__CORE__EXECUTOR": "LocalExecutor",
        "AIRFLOW__API__HOST": "127.0.0.1",
        "AIRFLOW__API__PORT": os.environ.get("AIRFLOW__API__PORT", "8080"),
        "AIRFLOW__CORE__DAGS_ARE_PAUSED_AT_CREATION": "True",
        "AIRFLOW__LOGGING__COLORED_CONSOLE_LOG": "False",
        "RETAILPULSE_HOME": str(settings.home),
        "GX_ANALYTICS_ENABLED": "False",
        "DBT_SEND_ANONYMOUS_USAGE_STATS": "False",
    }
    return env


def apply_env(settings: Settings) -> None:
    """Set the Airflow environment in this process (before airflow is imported)."""
    for k, v in airflow_env(settings).items():
        os.environ.setdefault(k, v) if k == "AIRFLOW__API__PORT" else os.environ.__setitem__(k, v)


def _airflow(settings: Settings, *args: str) -> subprocess.CompletedProcess[str]:
    exe = Path(sys.executable).with_name("airflow")
    env = {**os.environ, **airflow_env(settings)}
    proc = subprocess.run([str(exe), *args], env=env, capture_output=True, text=True)
    if proc.returncode != 0:
        tail = (proc.stderr or proc.stdout).strip().splitlines()[-3:]
        raise AirflowError(f"airflow {' '.join(args)} failed: {' | '.join(tail)}")
    return proc


def ensure_dbt_manifest(settings: Settings) -> bool:
    """``dbt parse`` (in-process) when dbt/target/manifest.json is missing: retailpulse_daily renders
    one task per dbt model from it. Returns True when it parsed."""
    manifest = settings.dbt_project_dir / "target" / "manifest.json"
    if manifest.exists():
        return False
    from retailpulse.dbt_runner import run_dbt

    run_dbt(settings, ["parse"])
    return True


def init(settings: Settings) -> bool:
    """Parse the dbt manifest if missing, migrate the metadata DB and create the pool; returns
    False when the Airflow part was already done."""
    from importlib.metadata import version

    ensure_dbt_manifest(settings)
    home = settings.airflow_home
    home.mkdir(parents=True, exist_ok=True)
    stamp = home / ".retailpulse-initialised"
    want = json.dumps({"airflow": version("apache-airflow"), "pool": POOL})
    if stamp.exists() and stamp.read_text() == want and (home / "airflow.db").exists():
        return False
    _airflow(settings, "db", "migrate")
    _airflow(settings, "pools", "set", POOL, "1", "One writer at a time for the DuckDB warehouse")
    stamp.write_text(want)
    return True


def load_dag(settings: Settings, dag_id: str = DAG_ID) -> Any:
    apply_env(settings)
    from airflow.dag_processing.dagbag import DagBag

    bag = DagBag(dag_folder=str(settings.home / "dags"))
    if bag.import_errors:
        first = next(iter(bag.import_errors.items()))
        raise AirflowError(f"DAG import error in {first[0]}: {str(first[1]).strip().splitlines()[-1]}")
    if dag_id not in bag.dags:
        raise AirflowError(f"DAG {dag_id} not found in {settings.home / 'dags'}")
    return bag.dags[dag_id]


def _check_run(settings: Settings, dr: Any, what: str) -> str:
    state = str(getattr(dr, "state", "unknown"))
    if "success" not in state:
        failed = []
        try:
            failed = [ti.task_id for ti in dr.get_task_instances() if str(ti.state) in ("failed", "upstream_failed", "TaskInstanceState.FAILED")]
        except Exception:
            pass
        alerts = settings.data_path / "alerts.log"
        hint = f"; see {alerts}" if alerts.exists() else ""
        raise AirflowError(f"retailpulse_daily {what} ended {state}" + (f" (failed: {', '.join(failed)})" if failed else "") + hint)
    return state


def run_daily(settings: Settings, start: dt.date, end: dt.date, conf: dict[str, Any] | None = None) -> str:
    """Run retailpulse_daily once, in-process, for the inclusive dates start..end.

    Returns the final run state; raises AirflowError if the run did not succeed.
    """
    dag = load_dag(settings)
    run_conf = {"start": start.isoformat(), "end": end.isoformat(), **(conf or {})}
    # the conf carries the dates; a unique logical date keeps every run in Airflow's history
    # (dag.test replaces an existing run with the same logical date)
    logical = dt.datetime.now(dt.timezone.utc)
    dr = dag.test(logical_date=logical, run_conf=run_conf)
    return _check_run(settings, dr, f"{start}..{end}")


def run_scheduled_day(settings: Settings, day: dt.date) -> tuple[str, dt.datetime, dt.datetime]:
    """Run retailpulse_daily in-process as the scheduler would for ``day``: no conf, the dates
    come from the timetable's data interval (midnight to midnight UTC).

    Returns (state, data_interval_start, data_interval_end); raises AirflowError on failure.
    """
    dag = load_dag(settings)
    # a daily cron data-interval timetable gives a run at ``day + 1`` 00:00 the interval of ``day``
    run_after = dt.datetime.combine(day + dt.timedelta(days=1), dt.time(0), tzinfo=dt.timezone.utc)
    dr = dag.test(logical_date=run_after)
    state = _check_run(settings, dr, f"scheduled run for {day}")
    return state, dr.data_interval_start, dr.data_interval_end
