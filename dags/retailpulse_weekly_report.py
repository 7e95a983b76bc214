"""retailpulse_weekly_report: render the weekly HTML report from the serving copy and e-mail it.

Wiring only; the work is in retailpulse.report. Runs every Monday 07:00 UTC for the week that
ended the day before (Monday-Sunday). A manual run reports the week ending ``conf.week_end``
(``{"week_end": "YYYY-MM-DD"}``), else the last day with data. It only reads the published
serving copy, never the warehouse file, so it needs no slot of the warehouse pool. The e-mail
goes through the Airflow SMTP connection ``smtp_default`` to RETAILPULSE_REPORT_EMAIL_TO and is
skipped (with a log line) when either is missing.
"""

from __future__ import annotations

import datetime as dt

from airflow.sdk import dag, get_current_context, task

from retailpulse.dag_support import default_args, task_settings

DEFAULTS = default_args("retailpulse_weekly_report", timeout=dt.timedelta(minutes=15),
                        retry_delay=dt.timedelta(minutes=2))
_settings = task_settings


def _week_end() -> str | None:
    ctx = get_current_context()
    dag_run = ctx.get("dag_run")
    conf = (getattr(dag_run, "conf", None) or {}) if dag_run else {}
    if conf.get("week_end"):
        return str(dt.date.fromisoformat(str(conf["week_end"])))
    run_type = str(getattr(dag_run, "run_type", "") or "")
    end = ctx.get("data_interval_end")
    if end is not None and ("scheduled" in run_type or "backfill" in run_type):
        return str(end.date() - dt.timedelta(days=1))
    return None  # manual run without conf: the last day with data


@dag(
    dag_id="retailpulse_weekly_report",
    schedule="0 7 * * 1",
    start_date=dt.datetime(2024, 1, 1, tzinfo=dt.timezone.utc),
    catchup=False,
    max_active_runs=1,
    default_args=DEFAULTS,
    tags=["retailpulse", "report"],
    doc_md=__doc__,
)
def retailpulse_weekly_report():
    @task
    def render_report() -> str:
        from retailpulse.report import render_weekly_report

        week_end = _week_end()
        return str(render_weekly_report(_settings(), dt.date.fromisoformat(week_end) if week_end else None))

    @task
    def email_report(path: str) -> bool:
        from pathlib import Path

        from retailpulse.report import email_report as send

        return send(_settings(), Path(path))

    email_report(render_report())


retailpulse_weekly_report()
